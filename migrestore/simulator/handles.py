"""ctypes marshalling for the simulator: handles, out-parameters and the pynvml structs it fills.

Handles are real ctypes pointers (`ctypes.pointer(pynvml.struct_c_nvmlDevice_t())`, ...) kept
alive in a registry and recognised by the address they point to, so callers can put them into
ctypes arrays exactly as with the real library.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pynvml

from migrestore.model import CiProfile, GiProfile, Placement
from migrestore.simulator.rules import NvmlFailure, Ret, SimClient, SimGpu

MIB: Final = 1024 * 1024
RESERVED_BYTES: Final = 644939776  # "used" on the real H200 with nothing running, MIG disabled
PROCESS_BYTES: Final = 512 * MIB  # what each simulated process has allocated
NOT_AVAILABLE: Final = 0xFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE_uint: no GI/CI (MIG disabled)
PCI_SUBSYSTEM_IDS: Final = {"NVIDIA H200": 0x18BF10DE}  # as read; other models: the device id


@dataclass(frozen=True)
class HandleKey:
    """What a handle stands for: a GPU, a MIG device, a GPU instance or a compute instance."""

    kind: str
    uuid: str
    gi: int = -1
    ci: int = -1


class Handles:
    """Real ctypes handles, kept alive and recognised by the address they point to."""

    STRUCTS: Final = {
        "gpu": pynvml.struct_c_nvmlDevice_t,
        "mig": pynvml.struct_c_nvmlDevice_t,
        "gi": pynvml.struct_c_nvmlGpuInstance_t,
        "ci": pynvml.struct_c_nvmlComputeInstance_t,
    }

    def __init__(self) -> None:
        self._pointers: dict[HandleKey, Any] = {}
        self._keys: dict[int, HandleKey] = {}

    def handle(self, key: HandleKey) -> Any:
        """The one handle for `key`."""
        pointer = self._pointers.get(key)
        if pointer is None:
            pointer = ctypes.pointer(self.STRUCTS[key.kind]())
            self._pointers[key] = pointer
            self._keys[ctypes.addressof(pointer.contents)] = key
        return pointer

    def key(self, handle: Any, *kinds: str) -> HandleKey:
        """What `handle` stands for; INVALID_ARGUMENT if it is none of `kinds`."""
        try:
            key = self._keys.get(ctypes.addressof(handle.contents))
        except (AttributeError, TypeError, ValueError):
            key = None
        if key is None or key.kind not in kinds:
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        return key


def text(value: str | bytes) -> str:
    """A string argument as pynvml's callers pass it (str or bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def out_count(ref: Any) -> Any:
    """The c_uint behind a `ctypes.pointer(count)` (or, leniently, a `ctypes.byref(count)`)."""
    try:
        target = ref.contents
    except (AttributeError, ValueError):
        target = getattr(ref, "_obj", None)
    if not isinstance(getattr(target, "value", None), int):
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    return target


def fill_array(
    array: Any, count_ref: Any, items: Sequence[Any], put: Callable[[Any, int, Any], None]
) -> None:
    """The count-then-array convention: None asks for the count, a short array is refused."""
    count = out_count(count_ref)
    if array is not None and isinstance(array, ctypes.Array) and len(array) < len(items):
        count.value = len(items)
        raise NvmlFailure(Ret.INSUFFICIENT_SIZE)
    if array is not None:
        for index, item in enumerate(items):
            put(array, index, item)
    count.value = len(items)


def put_placement(array: Any, index: int, placement: Placement) -> None:
    """Write one placement struct of a caller's array."""
    array[index].start, array[index].size = placement.start, placement.size


def put_handle(array: Any, index: int, handle: Any) -> None:
    """Write one handle of a caller's array."""
    array[index] = handle


def placement_arg(value: Any) -> Placement:
    """A placement passed as struct, `ctypes.pointer(struct)` or `ctypes.byref(struct)`."""
    try:
        with contextlib.suppress(AttributeError):
            value = value.contents
        value = getattr(value, "_obj", value)
        return Placement(int(value.start), int(value.size))
    except (AttributeError, TypeError, ValueError):
        raise NvmlFailure(Ret.INVALID_ARGUMENT) from None


def gi_profile_info(profile: GiProfile, version: int) -> Any:
    """`c_nvmlGpuInstanceProfileInfo_v2_t` (version 2) or the v1 struct, as NVML fills it."""
    v2 = version == 2
    info = (
        pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
        if v2
        else pynvml.c_nvmlGpuInstanceProfileInfo_t()
    )
    info.id, info.isP2pSupported = profile.id, 0
    info.sliceCount, info.instanceCount = profile.slices, profile.instances
    info.multiprocessorCount, info.copyEngineCount = profile.sms, profile.copy_engines
    info.decoderCount, info.encoderCount = profile.decoders, profile.encoders
    info.jpegCount, info.ofaCount = profile.jpegs, profile.ofas
    info.memorySizeMB = profile.memory_mb
    if v2:
        info.name = profile.name.encode()
    return info


def ci_profile_info(gi: GiProfile, profile: CiProfile, version: int) -> Any:
    """The compute-instance profile struct; the GI's engines are shared by its CIs."""
    v2 = version == 2
    info = (
        pynvml.c_nvmlComputeInstanceProfileInfo_v2_t()
        if v2
        else pynvml.c_nvmlComputeInstanceProfileInfo_t()
    )
    info.id, info.sliceCount, info.instanceCount = profile.id, profile.slices, profile.instances
    info.multiprocessorCount, info.sharedCopyEngineCount = profile.sms, gi.copy_engines
    info.sharedDecoderCount, info.sharedEncoderCount = gi.decoders, gi.encoders
    info.sharedJpegCount, info.sharedOfaCount = gi.jpegs, gi.ofas
    if v2:
        info.name = profile.name.encode()
    return info


def pci_info(gpu: SimGpu) -> Any:
    """`nvmlPciInfo_t`: both bus id spellings, the device id and subsystem id."""
    domain, bus, rest = gpu.pci_bus_id.split(":")
    device, _ = rest.split(".")
    info = pynvml.nvmlPciInfo_t()
    info.busId = gpu.pci_bus_id.encode()
    info.busIdLegacy = f"{int(domain, 16):04X}:{bus}:{rest}".encode()
    info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(device, 16)
    info.pciDeviceId = gpu.model.pci_device_ids[0]
    default = PCI_SUBSYSTEM_IDS.get(gpu.model.name, info.pciDeviceId)
    info.pciSubSystemId = default if gpu.pci_subsystem_id is None else gpu.pci_subsystem_id
    return info


def memory_info(total: int, reserved: int, processes: int, version: int | None) -> Any:
    """`c_nvmlMemory_t` (reserved counts as used) or, given a version, `c_nvmlMemory_v2_t`."""
    if not version:
        memory = pynvml.c_nvmlMemory_t()
        memory.used = reserved + processes
    else:
        memory = pynvml.c_nvmlMemory_v2_t()
        memory.version, memory.reserved, memory.used = version, reserved, processes
    memory.total, memory.free = total, total - reserved - processes
    return memory


def process_info(client: SimClient) -> Any:
    """A running process as pynvml returns it (a friendly object from `c_nvmlProcessInfo_t`)."""
    info = pynvml.c_nvmlProcessInfo_v3_t()
    info.pid, info.usedGpuMemory = client.pid, PROCESS_BYTES
    info.gpuInstanceId = NOT_AVAILABLE if client.gi_id is None else client.gi_id
    info.computeInstanceId = NOT_AVAILABLE if client.ci_id is None else client.ci_id
    return pynvml.nvmlStructToFriendlyObject(info)
