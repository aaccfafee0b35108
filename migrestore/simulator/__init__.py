"""A stand-in for the `pynvml` module over a simulated host.

The package: `__init__` (this: the pynvml call surface), `handles` (handles and the structs it
fills), `rules` (the MIG rules, pure), `state` (the shared JSON state file), `host` (what
`migrestore simulate` does to a host; the latency model), `procfs` (the fake /proc) and
`command` (the `migrestore simulate` verb).

`Simulator(state_path)` has pynvml's function names and argument conventions, returns what
pynvml returns (its ctypes structs, handles and friendly objects) and raises its exceptions
(`pynvml.NVMLError_*`). Constants, struct types and error classes are pynvml's own, reached
through `__getattr__`; a pynvml function the simulator does not model raises
NVMLError_FunctionNotFound instead of reaching a real driver.

Each call is counted, may sleep (latency model), may fail (injected fault), and needs nvmlInit.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import inspect
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pynvml

from migrestore.errors import MigrestoreError
from migrestore.model import Architecture, GiProfile, Placement
from migrestore.simulator import rules as simrules
from migrestore.simulator import state as simstate
from migrestore.simulator.handles import (
    MIB,
    PROCESS_BYTES,
    RESERVED_BYTES,
    HandleKey,
    Handles,
    ci_profile_info,
    fill_array,
    gi_profile_info,
    memory_info,
    pci_info,
    placement_arg,
    process_info,
    put_handle,
    put_placement,
    text,
)
from migrestore.simulator.host import (
    DEFAULT_DRIVER,
    DEFAULT_LATENCY,
    HGX_NVSWITCHES,
    NVML_FUNCTIONS,
    ModelSummary,
    ResetRefused,
    attach,
    canonical_bus_id,
    counters,
    detach,
    init_host,
    inject_fault,
    load_driver,
    lose_gpu,
    models,
    models_text,
    reboot,
    remove_gpu,
    replace_gpu,
    reset_counters,
    reset_gpus,
    set_fabric_manager,
    set_latency,
    set_persistence,
    set_subsystem_id,
    unload_driver,
)
from migrestore.simulator.rules import (
    NvmlFailure,
    Ret,
    SimComputeInstance,
    SimGpu,
    SimGpuInstance,
    mig_uuid,
)
from migrestore.simulator.state import FaultAction

__all__ = [
    "DEFAULT_DRIVER",
    "DEFAULT_LATENCY",
    "HGX_NVSWITCHES",
    "NVML_FUNCTIONS",
    "ModelSummary",
    "ResetRefused",
    "Simulator",
    "attach",
    "counters",
    "detach",
    "init_host",
    "inject_fault",
    "load_driver",
    "lose_gpu",
    "models",
    "models_text",
    "reboot",
    "remove_gpu",
    "replace_gpu",
    "reset_counters",
    "reset_gpus",
    "set_fabric_manager",
    "set_latency",
    "set_persistence",
    "set_subsystem_id",
    "unload_driver",
]

if TYPE_CHECKING:  # typing has them from Python 3.10 on
    from typing_extensions import Concatenate, ParamSpec

    P = ParamSpec("P")
R = TypeVar("R")
COMPUTE_CAPABILITY: Final = {
    Architecture.AMPERE: (8, 0),
    Architecture.HOPPER: (9, 0),
    Architecture.BLACKWELL: (10, 0),
}
# NVLinks per GPU: an A100 SXM has 12, an H100/H200/B200 SXM 18 (on a baseboard, all to NVSwitches).
NVLINKS: Final = {Architecture.AMPERE: 12, Architecture.HOPPER: 18, Architecture.BLACKWELL: 18}
PYNVML_HELPERS: Final = frozenset(
    {"nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct", "nvmlExceptionClass"}
)
_NEEDS_NO_INIT: Final = frozenset({"nvmlInit", "nvmlInitWithFlags"})
MigDevice = tuple[SimGpuInstance, SimComputeInstance]


def _kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _nvml(
    method: Callable[Concatenate[Simulator, P], R],
) -> Callable[Concatenate[Simulator, P], R]:
    """Count, delay, inject faults, require nvmlInit, and raise NVMLError like pynvml."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: Simulator, /, *args: P.args, **kwargs: P.kwargs) -> R:
        kill_after = self._enter(name)
        try:
            return method(self, *args, **kwargs)
        except NvmlFailure as failure:
            raise pynvml.NVMLError(int(failure.code)) from None
        finally:
            if kill_after:
                _kill_this_process()

    return call


def _reachable(gpu: SimGpu) -> SimGpu:
    """The GPU, unless it fell off the bus: then every call about it is GPU_IS_LOST."""
    if gpu.lost:
        raise NvmlFailure(Ret.GPU_IS_LOST)
    return gpu


def _nvml_version(driver: str) -> str:
    """`13.580.159.04`: the CUDA major the driver ships with, then the driver version."""
    major = int(driver.split(".", 1)[0]) if driver[:1].isdigit() else 0
    return f"{13 if major >= 580 else 12 if major >= 525 else 11}.{driver}"


class Simulator:
    """The pynvml module, as far as migrestore uses it, over the simulated host in `state_path`."""

    SIMULATED: Final = True

    def __init__(self, state_path: str | os.PathLike[str]) -> None:
        self.state_path = Path(state_path)
        self._store = simstate.HostStore(self.state_path)
        self._host = self._store.read()  # a missing or malformed file is a ConfigError now
        self._handles = Handles()
        self._sessions = 0
        self._counts: Counter[str] = Counter()
        atexit.register(self._flush_counts)

    def __getattr__(self, name: str) -> Any:
        value = getattr(pynvml, name)
        if name.startswith("nvml") and inspect.isfunction(value) and name not in PYNVML_HELPERS:
            return functools.partial(self._unmodelled, name)
        return value

    def _unmodelled(self, name: str, *args: object, **kwargs: object) -> None:
        self._counts[name] += 1
        raise pynvml.NVMLError(int(Ret.FUNCTION_NOT_FOUND))

    def reset_gpus(self, pci_bus_ids: Iterable[str]) -> None:
        """`nvidia-smi -r -i BUS,...` on this host (see `simhost.reset_gpus`)."""
        reset_gpus(self.state_path, pci_bus_ids)

    # ---- plumbing ----

    def _enter(self, name: str) -> bool:
        """Before a call: count it, sleep, fire a fault, check nvmlInit. True: kill afterwards."""
        self._counts[name] += 1
        host = self._store.read()
        if host.latency is not None and host.latency.delay(name) > 0:
            time.sleep(host.latency.delay(name))
            host = self._store.read()
        self._host = host  # what this call sees (one stat per call)
        fault = None
        if any(f.function == name for f in host.faults):
            fault = simstate.take_fault(self._store, name)
        if fault is not None and fault.action == FaultAction.KILL_BEFORE:
            _kill_this_process()
        if fault is not None and fault.action == FaultAction.RAISE:
            raise pynvml.NVMLError(fault.error)
        if fault is not None and fault.action == FaultAction.LOSE:
            self._host = lose_gpu(self.state_path, fault.gpu)
        if name not in _NEEDS_NO_INIT and self._sessions == 0:
            raise pynvml.NVMLError(int(Ret.UNINITIALIZED))
        return fault is not None and fault.action == FaultAction.KILL_AFTER

    def _take_counts(self) -> dict[str, int]:
        counts, self._counts = dict(self._counts), Counter()
        return counts

    def _flush_counts(self) -> None:
        if self._counts:
            with contextlib.suppress(OSError, MigrestoreError):
                simstate.merge_counters(self._store, self._take_counts())

    def _gpu_by_uuid(self, gpu_uuid: str) -> SimGpu:
        gpu = self._host.gpu(gpu_uuid)
        if gpu is None:
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        return _reachable(gpu)

    def _gpu(self, handle: Any) -> SimGpu:
        return self._gpu_by_uuid(self._handles.key(handle, "gpu").uuid)

    def _device(self, handle: Any) -> tuple[SimGpu, MigDevice | None]:
        """A parent or a MIG device handle."""
        if self._handles.key(handle, "gpu", "mig").kind == "gpu":
            return self._gpu(handle), None
        return self._mig(handle)

    def _mig(self, handle: Any) -> tuple[SimGpu, MigDevice]:
        """A MIG device handle: its GPU, GPU instance and compute instance."""
        key = self._handles.key(handle, "mig")
        gpu = self._gpu_by_uuid(key.uuid)
        gi = simrules.existing_gi(gpu, key.gi)
        return gpu, (gi, simrules.existing_ci(gi, key.ci))

    def _gi(self, handle: Any) -> tuple[SimGpu, SimGpuInstance]:
        key = self._handles.key(handle, "gi")
        gpu = self._gpu_by_uuid(key.uuid)
        return gpu, simrules.existing_gi(gpu, key.gi)

    def _ci(self, handle: Any) -> tuple[SimGpu, SimGpuInstance, SimComputeInstance]:
        key = self._handles.key(handle, "ci")
        gpu = self._gpu_by_uuid(key.uuid)
        gi = simrules.existing_gi(gpu, key.gi)
        return gpu, gi, simrules.existing_ci(gi, key.ci)

    def _profiled_gpu(self, handle: Any) -> SimGpu:
        """A GPU whose profile table this driver shows now (R535: only with MIG enabled)."""
        gpu = self._gpu(handle)
        simrules.check_profiles_readable(gpu, self._host.driver.version)
        return gpu

    def _handle(self, kind: str, gpu: SimGpu, gi: int = -1, ci: int = -1) -> Any:
        return self._handles.handle(HandleKey(kind, gpu.uuid, gi, ci))

    # ---- init and system ----

    def _open_session(self) -> None:
        simstate.open_session(self._store, os.getpid())
        self._sessions += 1

    @_nvml
    def nvmlInit(self) -> None:
        self._open_session()

    @_nvml
    def nvmlInitWithFlags(self, flags: int) -> None:
        self._open_session()

    @_nvml
    def nvmlShutdown(self) -> None:
        self._sessions -= 1
        simstate.close_session(self._store, os.getpid(), self._take_counts())

    @_nvml
    def nvmlSystemGetDriverVersion(self) -> str:
        return self._host.driver.version

    @_nvml
    def nvmlSystemGetNVMLVersion(self) -> str:
        return _nvml_version(self._host.driver.version)

    @_nvml
    def nvmlSystemGetProcessName(self, pid: int) -> str:
        clients = (c for g in self._host.gpus for c in g.clients if c.pid == pid)
        found = next(clients, None)
        if found is None:
            raise NvmlFailure(Ret.NOT_FOUND)
        return found.name

    # ---- finding devices ----

    @_nvml
    def nvmlDeviceGetCount(self) -> int:
        return len(self._host.gpus)

    @_nvml
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        gpus = self._host.gpus
        if not 0 <= index < len(gpus):
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        return self._handle("gpu", _reachable(gpus[index]))

    @_nvml
    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Any:
        wanted = text(uuid)
        for gpu in self._host.gpus:
            if gpu.uuid == wanted:
                return self._handle("gpu", _reachable(gpu))
            for gi, ci in simrules.mig_devices(gpu):
                names = (mig_uuid(gpu.uuid, gi.id, ci.id), f"MIG-{gpu.uuid}/{gi.id}/{ci.id}")
                if wanted in names:
                    return self._handle("mig", gpu, gi.id, ci.id)
        raise NvmlFailure(Ret.NOT_FOUND)

    @_nvml
    def nvmlDeviceGetHandleByPciBusId(self, pciBusId: str | bytes) -> Any:
        bus = canonical_bus_id(text(pciBusId))
        gpu = next((g for g in self._host.gpus if g.pci_bus_id == bus), None)
        if gpu is None:
            raise NvmlFailure(Ret.NOT_FOUND)
        return self._handle("gpu", _reachable(gpu))

    # ---- device properties ----

    @_nvml
    def nvmlDeviceGetName(self, handle: Any) -> str:
        gpu, mig = self._device(handle)
        if mig is None:
            return gpu.model.name
        profile = simrules.ci_profile_by_id(gpu, mig[0], mig[1].profile_id)
        return (
            f"{gpu.model.name} {simrules.driver_name(gpu, self._host.driver.version, profile.name)}"
        )

    @_nvml
    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        gpu, mig = self._device(handle)
        return gpu.uuid if mig is None else mig_uuid(gpu.uuid, mig[0].id, mig[1].id)

    @_nvml
    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        return pci_info(self._device(handle)[0])

    @_nvml
    def nvmlDeviceGetMinorNumber(self, handle: Any) -> int:
        return self._gpu(handle).minor

    @_nvml
    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self._gpu(handle).index

    @_nvml
    def nvmlDeviceGetArchitecture(self, device: Any) -> int:
        return self._device(device)[0].model.nvml_architecture

    @_nvml
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        model = self._device(handle)[0].model
        if "RTX PRO" in model.name:
            return (12, 0)  # GB202/GB203 are sm_120, unlike the data-centre Blackwells
        return COMPUTE_CAPABILITY.get(model.architecture, (0, 0))

    @_nvml
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        gpu, mig = self._device(handle)
        if mig is None:
            used = PROCESS_BYTES * len(simrules.processes(gpu))
            return memory_info(gpu.model.memory_mb * MIB, RESERVED_BYTES, used, version)
        gi_profile = simrules.gi_profile_by_id(gpu, mig[0].profile_id)
        used = PROCESS_BYTES * len(simrules.processes(gpu, mig[0].id, mig[1].id))
        return memory_info(gi_profile.memory_mb * MIB, 0, used, version)

    @_nvml
    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        return self._gpu(handle).serial_number

    @_nvml
    def nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        enabled = self._gpu(handle).persistence
        return int(pynvml.NVML_FEATURE_ENABLED if enabled else pynvml.NVML_FEATURE_DISABLED)

    @_nvml
    def nvmlDeviceSetPersistenceMode(self, handle: Any, mode: int) -> int:
        gpu = self._gpu(handle)
        if mode not in (pynvml.NVML_FEATURE_DISABLED, pynvml.NVML_FEATURE_ENABLED):
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        simstate.update_gpu(
            self._store, gpu.uuid, lambda g: (replace(g, persistence=bool(mode)), None)
        )
        return int(pynvml.NVML_SUCCESS)

    # ---- NVLink ----

    def _nvlink(self, handle: Any, link: int) -> SimGpu:
        """A GPU's NVLink `link`: none without NVSwitches (NOT_SUPPORTED, as on a PCIe card)."""
        gpu = self._gpu(handle)
        if not self._host.nvswitches:
            raise NvmlFailure(Ret.NOT_SUPPORTED)
        if not 0 <= link < NVLINKS.get(gpu.model.architecture, 0):
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        return gpu

    @_nvml
    def nvmlDeviceGetNvLinkState(self, handle: Any, link: int) -> int:
        self._nvlink(handle, link)
        return int(pynvml.NVML_FEATURE_ENABLED)

    @_nvml
    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: Any, link: int) -> int:
        self._nvlink(handle, link)
        return int(pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH)

    # ---- MIG mode ----

    @_nvml
    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        mig = self._gpu(device).mig
        return [int(mig.current), int(mig.pending)]

    @_nvml
    def nvmlDeviceSetMigMode(self, device: Any, mode: int) -> int:
        gpu = self._gpu(device)
        if mode not in (pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_ENABLE):
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        status = simstate.update_gpu(
            self._store, gpu.uuid, lambda g: simrules.set_mig_mode(g, bool(mode))
        )
        return int(status)

    # ---- GPU instances ----

    @_nvml
    def nvmlDeviceGetGpuInstanceProfileInfo(
        self, device: Any, profile: int, version: int = 2
    ) -> Any:
        if version not in (1, 2):
            raise NvmlFailure(Ret.FUNCTION_NOT_FOUND)
        gpu = self._profiled_gpu(device)
        first_invalid = simrules.first_invalid_gi_index(self._host.driver.version)
        found = simrules.gi_profile_by_index(gpu, profile, first_invalid)
        return gi_profile_info(self._named(gpu, found), version)

    @_nvml
    def nvmlDeviceGetGpuInstanceProfileInfoById(self, device: Any, profileId: int) -> Any:
        gpu = self._profiled_gpu(device)
        return gi_profile_info(self._named(gpu, simrules.gi_profile_by_id(gpu, profileId)), 2)

    def _named(self, gpu: SimGpu, profile: GiProfile) -> GiProfile:
        return replace(profile, name=self._name(gpu, profile.name))

    def _name(self, gpu: SimGpu, name: str) -> str:
        """A profile name as this host's driver spells it."""
        return simrules.driver_name(gpu, self._host.driver.version, name)

    @_nvml
    def nvmlDeviceGetGpuInstancePossiblePlacements(
        self, device: Any, profileId: int, placementsRef: Any, countRef: Any
    ) -> int:
        profile = simrules.gi_profile_by_id(self._profiled_gpu(device), profileId)
        fill_array(placementsRef, countRef, sorted(profile.placements), put_placement)
        return int(pynvml.NVML_SUCCESS)

    @_nvml
    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, device: Any, profileId: int) -> int:
        gpu = self._profiled_gpu(device)
        return simrules.gi_capacity(gpu, simrules.gi_profile_by_id(gpu, profileId))

    def _create_gi(self, device: Any, profile_id: int, placement: Placement | None) -> Any:
        gpu = self._gpu(device)
        gi = simstate.update_gpu(
            self._store,
            gpu.uuid,
            lambda g: simrules.create_gpu_instance(g, profile_id, placement),
        )
        return self._handle("gi", gpu, gi.id)

    @_nvml
    def nvmlDeviceCreateGpuInstance(self, device: Any, profileId: int) -> Any:
        return self._create_gi(device, profileId, None)

    @_nvml
    def nvmlDeviceCreateGpuInstanceWithPlacement(
        self, device: Any, profileId: int, placement: Any
    ) -> Any:
        return self._create_gi(device, profileId, placement_arg(placement))

    @_nvml
    def nvmlDeviceGetGpuInstances(
        self, device: Any, profileId: int, gpuInstancesRef: Any, countRef: Any
    ) -> int:
        gpu = self._gpu(device)
        profile = simrules.gi_profile_by_id(gpu, profileId)
        found = [self._handle("gi", gpu, g.id) for g in gpu.instances if g.profile_id == profile.id]
        fill_array(gpuInstancesRef, countRef, found, put_handle)
        return int(pynvml.NVML_SUCCESS)

    @_nvml
    def nvmlDeviceGetGpuInstanceById(self, device: Any, gpuInstanceId: int) -> Any:
        gpu = self._gpu(device)
        if gpu.gi(gpuInstanceId) is None:
            raise NvmlFailure(Ret.NOT_FOUND)
        return self._handle("gi", gpu, gpuInstanceId)

    @_nvml
    def nvmlGpuInstanceGetInfo(self, gpuInstance: Any) -> Any:
        gpu, gi = self._gi(gpuInstance)
        info = pynvml.c_nvmlGpuInstanceInfo_t()
        info.device, info.id, info.profileId = self._handle("gpu", gpu), gi.id, gi.profile_id
        info.placement.start, info.placement.size = gi.placement.start, gi.placement.size
        return info

    @_nvml
    def nvmlGpuInstanceDestroy(self, gpuInstance: Any) -> int:
        gpu, gi = self._gi(gpuInstance)
        simstate.update_gpu(
            self._store, gpu.uuid, lambda g: (simrules.destroy_gpu_instance(g, gi.id), None)
        )
        return int(pynvml.NVML_SUCCESS)

    # ---- compute instances ----

    @_nvml
    def nvmlGpuInstanceGetComputeInstanceProfileInfo(
        self, device: Any, profile: int, engProfile: int, version: int = 2
    ) -> Any:
        if version not in (1, 2):
            raise NvmlFailure(Ret.FUNCTION_NOT_FOUND)
        gpu, gi = self._gi(device)
        found = simrules.ci_profile_by_index(gpu, gi, profile, engProfile)
        named = replace(
            found, name=simrules.driver_name(gpu, self._host.driver.version, found.name)
        )
        return ci_profile_info(simrules.gi_profile_by_id(gpu, gi.profile_id), named, version)

    @_nvml
    def nvmlGpuInstanceGetComputeInstancePossiblePlacements(
        self, gpuInstance: Any, profileId: int, placementsRef: Any, countRef: Any
    ) -> int:
        gpu, gi = self._gi(gpuInstance)
        profile = simrules.ci_profile_by_id(gpu, gi, profileId)
        fill_array(placementsRef, countRef, sorted(profile.placements), put_placement)
        return int(pynvml.NVML_SUCCESS)

    @_nvml
    def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(
        self, gpuInstance: Any, profileId: int
    ) -> int:
        gpu, gi = self._gi(gpuInstance)
        return simrules.ci_capacity(gi, simrules.ci_profile_by_id(gpu, gi, profileId))

    def _create_ci(self, gpu_instance: Any, profile_id: int, placement: Placement | None) -> Any:
        gpu, gi = self._gi(gpu_instance)
        ci = simstate.update_gpu(
            self._store,
            gpu.uuid,
            lambda g: simrules.create_compute_instance(g, gi.id, profile_id, placement),
        )
        return self._handle("ci", gpu, gi.id, ci.id)

    @_nvml
    def nvmlGpuInstanceCreateComputeInstance(self, gpuInstance: Any, profileId: int) -> Any:
        return self._create_ci(gpuInstance, profileId, None)

    @_nvml
    def nvmlGpuInstanceCreateComputeInstanceWithPlacement(
        self, gpuInstance: Any, profileId: int, placement: Any
    ) -> Any:
        return self._create_ci(gpuInstance, profileId, placement_arg(placement))

    @_nvml
    def nvmlGpuInstanceGetComputeInstances(
        self, gpuInstance: Any, profileId: int, computeInstancesRef: Any, countRef: Any
    ) -> int:
        gpu, gi = self._gi(gpuInstance)
        profile = simrules.ci_profile_by_id(gpu, gi, profileId)
        found = [
            self._handle("ci", gpu, gi.id, c.id) for c in gi.compute if c.profile_id == profile.id
        ]
        fill_array(computeInstancesRef, countRef, found, put_handle)
        return int(pynvml.NVML_SUCCESS)

    @_nvml
    def nvmlGpuInstanceGetComputeInstanceById(
        self, gpuInstance: Any, computeInstanceId: int
    ) -> Any:
        gpu, gi = self._gi(gpuInstance)
        if gi.ci(computeInstanceId) is None:
            raise NvmlFailure(Ret.NOT_FOUND)
        return self._handle("ci", gpu, gi.id, computeInstanceId)

    @_nvml
    def nvmlComputeInstanceGetInfo(self, computeInstance: Any) -> Any:
        gpu, gi, ci = self._ci(computeInstance)
        info = pynvml.c_nvmlComputeInstanceInfo_t()
        info.device, info.gpuInstance = self._handle("gpu", gpu), self._handle("gi", gpu, gi.id)
        info.id, info.profileId = ci.id, ci.profile_id
        info.placement.start, info.placement.size = ci.placement.start, ci.placement.size
        return info

    @_nvml
    def nvmlComputeInstanceDestroy(self, computeInstance: Any) -> int:
        gpu, gi, ci = self._ci(computeInstance)
        simstate.update_gpu(
            self._store,
            gpu.uuid,
            lambda g: (simrules.destroy_compute_instance(g, gi.id, ci.id), None),
        )
        return int(pynvml.NVML_SUCCESS)

    # ---- MIG devices ----

    @_nvml
    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        return simrules.max_mig_devices(self._gpu(device))

    @_nvml
    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> Any:
        gpu = self._gpu(device)
        devices = simrules.mig_devices(gpu)
        if not 0 <= index < len(devices):
            raise NvmlFailure(Ret.NOT_FOUND)
        gi, ci = devices[index]
        return self._handle("mig", gpu, gi.id, ci.id)

    @_nvml
    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> ctypes.c_uint:
        return ctypes.c_uint(int(self._handles.key(device, "gpu", "mig").kind == "mig"))

    @_nvml
    def nvmlDeviceGetGpuInstanceId(self, device: Any) -> int:
        return self._mig(device)[1][0].id

    @_nvml
    def nvmlDeviceGetComputeInstanceId(self, device: Any) -> int:
        return self._mig(device)[1][1].id

    @_nvml
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:
        return self._handle("gpu", self._mig(migDevice)[0])

    @_nvml
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu, mig = self._device(handle)
        running = (
            simrules.processes(gpu)
            if mig is None
            else simrules.processes(gpu, mig[0].id, mig[1].id)
        )
        return [process_info(c) for c in running]

    # pynvml's aliases and versioned names for the same calls
    nvmlDeviceGetGpuInstanceProfileInfoV = nvmlDeviceGetGpuInstanceProfileInfo
    nvmlGpuInstanceGetComputeInstanceProfileInfoV = nvmlGpuInstanceGetComputeInstanceProfileInfo
    nvmlComputeInstanceGetInfo_v2 = nvmlComputeInstanceGetInfo
    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses
    nvmlDeviceGetPciInfo_v3 = nvmlDeviceGetPciInfo
