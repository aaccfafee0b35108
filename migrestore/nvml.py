"""The one NVML adapter: the only place that talks to pynvml (or the simulator standing in for it).

The pynvml module is a constructor parameter, so `--simulate` runs exercise exactly this code.
NVML structs, handles and error classes never leave this module: callers see model objects and
GpuError/DriverError with the NVML error named.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrestore import profiles
from migrestore.errors import DriverError, GpuError
from migrestore.model import (
    Architecture,
    CiProfile,
    ComputeInstance,
    GiProfile,
    GpuInstance,
    GpuState,
    MigMode,
    ModeChange,
    NodeState,
    Placement,
    Process,
    ProfileTable,
    UnreadableGpu,
)

if TYPE_CHECKING:  # annotations only
    from migrestore.interfaces import Detail

# NVML_GPU_INSTANCE_PROFILE_COUNT has grown with every driver; enumerate until INVALID_ARGUMENT.
MAX_PROFILE_INDEX = 32
MAX_CI_PROFILE_INDEX = 16
# More than any GPU's placement grid has: one call instead of count-then-fill.
MAX_PLACEMENTS = 32
NOT_SUPPORTED = 3
INVALID_ARGUMENT = 2
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
SUCCESS = 0

ResetRunner = Callable[[tuple[str, ...]], None]


def error_name(exc: BaseException) -> str:
    """`InUse` for `pynvml.NVMLError_InUse`; the class name otherwise."""
    return type(exc).__name__.removeprefix("NVMLError_")


def error_code(exc: BaseException) -> int:
    """The NVML return code carried by an NVMLError (-1 for anything else)."""
    value = getattr(exc, "value", -1)
    return value if isinstance(value, int) else -1


VENDOR_DIR = "/usr/lib/migrestore/vendor"
VENDOR_DIR_VARIABLE = "MIGRESTORE_VENDOR_DIR"  # another vendor directory (tests)


def vendor_dir() -> Path:
    """The packages' private library directory (`MIGRESTORE_VENDOR_DIR` overrides it)."""
    return Path(os.environ.get(VENDOR_DIR_VARIABLE) or VENDOR_DIR)


def _packaged_copy() -> Path | None:
    found = vendor_dir() / "pynvml.py"
    return found if found.is_file() else None


def load_pynvml() -> Any:
    """pynvml: the packaged, pinned copy whenever one is installed, else a system-wide one.

    Debian's python3-pynvml is another upstream and nvidia-ml-py3 (2017) has no MIG calls, so a
    system-wide module must never win over the copy the packages carry (and were tested with).
    """
    packaged = _packaged_copy()
    if packaged is not None:
        return _import_from(packaged.parent)
    try:
        import pynvml
    except ImportError as exc:
        raise DriverError(
            "the Python NVML bindings (nvidia-ml-py, module pynvml) are not installed"
        ) from exc
    return pynvml


def _import_from(directory: Path) -> Any:
    """Import pynvml from `directory`, even if another pynvml was found or imported before."""
    loaded = sys.modules.get("pynvml")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").parent == directory:
        return loaded
    sys.modules.pop("pynvml", None)
    sys.path[:] = [str(directory), *(p for p in sys.path if p != str(directory))]
    return importlib.import_module("pynvml")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlGpus:
    """`interfaces.Gpus` over pynvml. Use as a context manager: NVML is initialised once."""

    def __init__(self, nvml: Any, reset_runner: ResetRunner, *, simulated: bool = False) -> None:
        self._nvml = nvml
        self._reset_runner = reset_runner
        self._simulated = simulated
        # NVML handles of this session (invalid after nvmlShutdown, a reset or a destroy).
        self._handles: dict[str, Any] = {}
        self._by_index: dict[int, Any] = {}
        self._gi_handles: dict[tuple[str, int], Any] = {}
        self._ci_handles: dict[tuple[str, int, int], Any] = {}
        self._tables: dict[str, ProfileTable] = {}
        self._open = False

    # ---- session ----

    def __enter__(self) -> NvmlGpus:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """nvmlInit, with the driver's failures named."""
        try:
            self._nvml.nvmlInit()
        except Exception as exc:
            raise self._init_error(exc) from exc
        self._open = True

    def close(self) -> None:
        """nvmlShutdown (errors at shutdown are not interesting)."""
        if self._open:
            self._open = False
            for cache in (self._handles, self._by_index, self._gi_handles, self._ci_handles):
                cache.clear()
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # nothing useful to do at shutdown
                return

    def wait_for_driver(self, timeout: float, on_wait: Callable[[float], None]) -> None:
        """Open NVML, retrying while the driver is not loaded yet, for at most `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.open()
                return
            except DriverError as exc:
                left = deadline - time.monotonic()
                if exc.hint != "retry":
                    raise
                if left <= 0:
                    raise DriverError(f"{exc.message} (waited {timeout:.0f} s)") from exc
                on_wait(left)
                time.sleep(min(0.5, left))

    @staticmethod
    def _init_error(exc: Exception) -> DriverError:
        code = error_code(exc)
        if code == DRIVER_NOT_LOADED:
            return DriverError("the NVIDIA kernel driver is not loaded", hint="retry")
        if code == LIBRARY_NOT_FOUND:
            return DriverError("libnvidia-ml.so.1 not found: is the NVIDIA driver installed?")
        return DriverError(f"NVML could not be initialised: {error_name(exc)} ({exc})")

    # ---- reading ----

    def read_state(self, *, details: Detail = "full") -> NodeState:
        """Every GPU: identity, MIG mode, profile table, GPU and compute instances.

        `details` says what else to read: "full" (status, apply) adds the processes on each
        instance, MIG device UUIDs, device minor and memory; "processes" (plan) only the
        processes; "layout" (verify, export) nothing more.
        """
        with self._nvml_errors("count the GPUs"):
            count = self._nvml.nvmlDeviceGetCount()
            driver = _text(self._nvml.nvmlSystemGetDriverVersion())
        read = [self._read_isolated(index, details) for index in range(count)]
        return NodeState(
            gpus=tuple(g for g in read if isinstance(g, GpuState)),
            driver_version=driver,
            simulated=self._simulated,
            unreadable=tuple(g for g in read if isinstance(g, UnreadableGpu)),
        )

    def reread(self, before: NodeState, changed: set[str]) -> NodeState:
        """The state after changes to the `changed` GPUs (UUIDs); the others as read before. A
        changed GPU that can no longer be read joins the unreadable ones."""
        read = [
            self._read_isolated(gpu.index, "full", gpu) if gpu.uuid in changed else gpu
            for gpu in before.gpus
        ]
        return replace(
            before,
            gpus=tuple(g for g in read if isinstance(g, GpuState)),
            unreadable=(*before.unreadable, *(g for g in read if isinstance(g, UnreadableGpu))),
        )

    def _read_isolated(
        self, index: int, details: Detail, known: GpuState | None = None
    ) -> GpuState | UnreadableGpu:
        """One GPU, or why it cannot be read: one lost GPU must not cost the others theirs."""
        label = known.label if known else f"GPU {index}"
        try:
            with self._nvml_errors(f"read {label}"):
                return self._read_gpu(index, details)
        except GpuError as exc:
            self._forget(index, known)
            if known is None:
                return UnreadableGpu(index, str(exc), exc.nvml_error)
            return UnreadableGpu(index, str(exc), exc.nvml_error, known.uuid, known.name, known.pci)

    def _forget(self, index: int, known: GpuState | None) -> None:
        """Drop the handles of a GPU that could not be read (they may be stale)."""
        self._by_index.pop(index, None)
        if known is not None:
            self._handles.pop(known.uuid, None)

    def _handle_by_index(self, index: int) -> Any:
        if index not in self._by_index:
            self._by_index[index] = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return self._by_index[index]

    def _read_gpu(self, index: int, details: Detail) -> GpuState:
        nvml = self._nvml
        dev = self._handle_by_index(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(dev))
        self._handles[uuid] = dev
        name = _text(nvml.nvmlDeviceGetName(dev))
        pci = nvml.nvmlDeviceGetPciInfo(dev)
        mode = self._read_mig_mode(dev)
        mig = mode or MigMode(False, False)
        known = profiles.find_model(name) or profiles.find_model_by_pci_id(pci.pciDeviceId)
        capable = mode is not None or known is not None
        code = known.nvml_architecture if known else nvml.nvmlDeviceGetArchitecture(dev)
        table = self._table(dev, name) if capable else ProfileTable(gi=())
        full = details == "full"
        arch = Architecture.from_nvml(code)
        return GpuState(
            index=index,
            uuid=uuid,
            pci=_text(pci.busId),
            name=name,
            minor=nvml.nvmlDeviceGetMinorNumber(dev) if full else -1,
            architecture=arch,
            memory_mb=nvml.nvmlDeviceGetMemoryInfo(dev).total // (1024 * 1024) if full else 0,
            mig=mig,
            profiles=table,
            instances=self._read_instances(dev, uuid, table, details) if mig.current else (),
            pci_device_id=pci.pciDeviceId,
            pci_subsystem_id=pci.pciSubSystemId,
            persistence=self._persistence(dev) if full and arch.mode_change_needs_reset else None,
            mig_capable=capable,
            serial=self._serial(dev) if full else "",
        )

    def _read_mig_mode(self, dev: Any) -> MigMode | None:
        """The MIG mode; None on a GPU without MIG (NVML answers NOT_SUPPORTED there)."""
        try:
            current, pending = self._nvml.nvmlDeviceGetMigMode(dev)
        except self._nvml.NVMLError as exc:
            if error_code(exc) == NOT_SUPPORTED:
                return None
            raise
        return MigMode(bool(current), bool(pending))

    def _serial(self, dev: Any) -> str:
        """The board's serial number for the run record ("" where NVML reports none)."""
        try:
            return _text(self._nvml.nvmlDeviceGetSerial(dev))
        except self._nvml.NVMLError:
            return ""

    def _persistence(self, dev: Any) -> bool | None:
        """Persistence mode: it counts as a client, so it blocks the reset only Ampere needs."""
        try:
            return bool(self._nvml.nvmlDeviceGetPersistenceMode(dev))
        except self._nvml.NVMLError:
            return None

    def _table(self, dev: Any, name: str) -> ProfileTable:
        """The GPU's profile table; GPUs of one model on one driver share it, so read it once.

        An empty table is not kept: R535 shows it only once MIG is enabled (`profiles_unread`).
        """
        if name not in self._tables:
            gis = self._read_gi_profiles(dev)
            known = profiles.find_model(name)
            cis = known.table.ci if known else profiles.derive_ci_table(gis)
            if not gis:
                return ProfileTable(gi=())
            self._tables[name] = ProfileTable(gi=gis, ci=cis)
        return self._tables[name]

    def _read_gi_profiles(self, dev: Any) -> tuple[GiProfile, ...]:
        found: list[GiProfile] = []
        for index in range(MAX_PROFILE_INDEX):
            try:
                info = self._nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, index)
            except self._nvml.NVMLError as exc:
                if error_code(exc) == NOT_SUPPORTED:
                    continue
                if error_code(exc) == INVALID_ARGUMENT:
                    break
                raise
            found.append(self._gi_profile(dev, index, info))
        return tuple(found)

    def _gi_profile(self, dev: Any, index: int, info: Any) -> GiProfile:
        return GiProfile(
            index=index,
            id=info.id,
            name=_text(info.name),
            slices=info.sliceCount,
            instances=info.instanceCount,
            memory_mb=info.memorySizeMB,
            sms=info.multiprocessorCount,
            placements=self._gi_placements(dev, info.id),
            copy_engines=info.copyEngineCount,
            decoders=info.decoderCount,
            encoders=info.encoderCount,
            jpegs=info.jpegCount,
            ofas=info.ofaCount,
        )

    def _gi_placements(self, dev: Any, profile_id: int) -> tuple[Placement, ...]:
        nvml = self._nvml
        count = ctypes.c_uint(MAX_PLACEMENTS)
        array = (nvml.c_nvmlGpuInstancePlacement_t * MAX_PLACEMENTS)()
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(
            dev, profile_id, array, ctypes.pointer(count)
        )
        return tuple(Placement(p.start, p.size) for p in array[: count.value])

    def _read_instances(
        self, dev: Any, uuid: str, table: ProfileTable, details: Detail
    ) -> tuple[GpuInstance, ...]:
        processes = self._processes(dev) if details != "layout" else {}
        instances: list[GpuInstance] = []
        for profile in table.gi:
            for gi in self._gpu_instances(dev, profile):
                instances.append(self._gpu_instance(uuid, gi, table, processes))
        if details == "full":
            uuids = self._mig_uuids(dev, sum(len(gi.compute) for gi in instances))
            instances = [self._with_uuids(gi, uuids) for gi in instances]
        return tuple(sorted(instances, key=lambda g: g.placement))

    @staticmethod
    def _with_uuids(gi: GpuInstance, uuids: dict[tuple[int, int], str]) -> GpuInstance:
        compute = tuple(replace(ci, uuid=uuids.get((gi.id, ci.id), "")) for ci in gi.compute)
        return replace(gi, compute=compute)

    def _gpu_instances(self, dev: Any, profile: GiProfile) -> list[Any]:
        nvml = self._nvml
        count = ctypes.c_uint(0)
        array = (nvml.c_nvmlGpuInstance_t * max(profile.instances, 1))()
        nvml.nvmlDeviceGetGpuInstances(dev, profile.id, array, ctypes.pointer(count))
        return list(array[: count.value])

    def _gpu_instance(
        self,
        uuid: str,
        gi: Any,
        table: ProfileTable,
        processes: dict[tuple[int, int], tuple[Process, ...]],
    ) -> GpuInstance:
        info = self._nvml.nvmlGpuInstanceGetInfo(gi)
        self._gi_handles[(uuid, info.id)] = gi
        compute = [
            self._compute_instance(uuid, info.id, ci, processes)
            for profile in table.ci_for(info.profileId)
            for ci in self._compute_instances(gi, profile)
        ]
        return GpuInstance(
            id=info.id,
            profile_id=info.profileId,
            placement=Placement(info.placement.start, info.placement.size),
            compute=tuple(sorted(compute, key=lambda c: c.placement)),
        )

    def _compute_instances(self, gi: Any, profile: CiProfile) -> list[Any]:
        nvml = self._nvml
        count = ctypes.c_uint(0)
        array = (nvml.c_nvmlComputeInstance_t * max(profile.instances, 1))()
        try:
            nvml.nvmlGpuInstanceGetComputeInstances(gi, profile.id, array, ctypes.pointer(count))
        except nvml.NVMLError as exc:
            if error_code(exc) in (NOT_SUPPORTED, INVALID_ARGUMENT):
                return []
            raise
        return list(array[: count.value])

    def _compute_instance(
        self,
        uuid: str,
        gi_id: int,
        ci: Any,
        processes: dict[tuple[int, int], tuple[Process, ...]],
    ) -> ComputeInstance:
        info = self._nvml.nvmlComputeInstanceGetInfo(ci)
        self._ci_handles[(uuid, gi_id, info.id)] = ci
        return ComputeInstance(
            id=info.id,
            profile_id=info.profileId,
            placement=Placement(info.placement.start, info.placement.size),
            processes=processes.get((gi_id, info.id), ()),
        )

    def _mig_uuids(self, dev: Any, expected: int) -> dict[tuple[int, int], str]:
        """MIG device UUID per (GI id, CI id), from the MIG device handles (one per CI).

        Slots may be sparse, so scan until every compute instance has been seen.
        """
        nvml = self._nvml
        found: dict[tuple[int, int], str] = {}
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(dev) if expected else 0):
            if len(found) >= expected:
                break
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, slot)
            except nvml.NVMLError as exc:
                if error_code(exc) == NOT_FOUND:
                    continue
                raise
            key = (nvml.nvmlDeviceGetGpuInstanceId(mig), nvml.nvmlDeviceGetComputeInstanceId(mig))
            found[key] = _text(nvml.nvmlDeviceGetUUID(mig))
        return found

    def _processes(self, dev: Any) -> dict[tuple[int, int], tuple[Process, ...]]:
        """Processes per (GI id, CI id) on a MIG-enabled GPU."""
        nvml = self._nvml
        by_instance: dict[tuple[int, int], list[Process]] = {}
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(dev):
            key = (proc.gpuInstanceId, proc.computeInstanceId)
            by_instance.setdefault(key, []).append(Process(proc.pid, self._process_name(proc.pid)))
        return {k: tuple(v) for k, v in by_instance.items()}

    def _process_name(self, pid: int) -> str:
        try:
            return _text(self._nvml.nvmlSystemGetProcessName(pid))
        except self._nvml.NVMLError:
            return "?"

    # ---- changing ----

    def _device(self, uuid: str) -> Any:
        if uuid not in self._handles:
            self._handles[uuid] = self._nvml.nvmlDeviceGetHandleByUUID(uuid)
        return self._handles[uuid]

    def _gpu_instance_handle(self, uuid: str, gi_id: int) -> Any:
        key = (uuid, gi_id)
        if key not in self._gi_handles:
            self._gi_handles[key] = self._nvml.nvmlDeviceGetGpuInstanceById(
                self._device(uuid), gi_id
            )
        return self._gi_handles[key]

    @contextmanager
    def _nvml_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except self._nvml.NVMLError as exc:
            name, code = error_name(exc), error_code(exc)
            raise GpuError(
                f"could not {action}: NVML {name} (error {code})", nvml_error=name
            ) from exc

    def mig_mode(self, uuid: str) -> MigMode:
        """Current and pending MIG mode of one GPU."""
        with self._nvml_errors("read the MIG mode"):
            current, pending = self._nvml.nvmlDeviceGetMigMode(self._device(uuid))
        return MigMode(bool(current), bool(pending))

    def set_mig_mode(self, uuid: str, enabled: bool) -> ModeChange:
        """Ask for MIG on or off; returns the mode afterwards and the activation status."""
        nvml = self._nvml
        mode = nvml.NVML_DEVICE_MIG_ENABLE if enabled else nvml.NVML_DEVICE_MIG_DISABLE
        with self._nvml_errors(f"{'enable' if enabled else 'disable'} MIG mode"):
            status = nvml.nvmlDeviceSetMigMode(self._device(uuid), mode)
        activation = "" if status == SUCCESS else error_name(nvml.NVMLError(status))
        return ModeChange(self.mig_mode(uuid), activation)

    def reset(self, pci_ids: tuple[str, ...]) -> None:
        """Reset GPUs with NVML shut down around it; handles are re-acquired by UUID afterwards."""
        self.close()
        try:
            self._reset_runner(pci_ids)
        finally:
            self.open()

    def nvswitch_attached(self, uuid: str) -> bool:
        """Whether an active NVLink of this GPU goes to an NVSwitch. Links are asked in turn until
        INVALID_ARGUMENT (past the GPU's last link) or NOT_SUPPORTED (no NVLink); a link that
        answers another error is passed over. What cannot be told is False."""
        nvml = self._nvml
        try:
            device = self._device(uuid)
        except nvml.NVMLError:
            return False
        for link in range(int(nvml.NVML_NVLINK_MAX_LINKS)):
            try:
                if nvml.nvmlDeviceGetNvLinkState(device, link) != nvml.NVML_FEATURE_ENABLED:
                    continue
                kind = nvml.nvmlDeviceGetNvLinkRemoteDeviceType(device, link)
            except nvml.NVMLError as exc:
                if error_code(exc) in (INVALID_ARGUMENT, NOT_SUPPORTED):
                    return False
                continue
            if kind == nvml.NVML_NVLINK_DEVICE_TYPE_SWITCH:
                return True
        return False

    def persistence(self, uuid: str) -> bool:
        """Whether persistence mode is on."""
        with self._nvml_errors("read the persistence mode"):
            return bool(self._nvml.nvmlDeviceGetPersistenceMode(self._device(uuid)))

    def set_persistence(self, uuid: str, enabled: bool) -> None:
        """Persistence mode on or off for this GPU alone (what `nvidia-smi -i N -pm 0|1` does)."""
        nvml = self._nvml
        mode = nvml.NVML_FEATURE_ENABLED if enabled else nvml.NVML_FEATURE_DISABLED
        with self._nvml_errors(f"turn persistence mode {'on' if enabled else 'off'}"):
            nvml.nvmlDeviceSetPersistenceMode(self._device(uuid), mode)

    def destroy_compute_instance(self, uuid: str, gi_id: int, ci_id: int) -> None:
        """Destroy one compute instance."""
        nvml = self._nvml
        with self._nvml_errors(f"destroy compute instance {ci_id} of GPU instance {gi_id}"):
            ci = self._ci_handles.pop((uuid, gi_id, ci_id), None)
            if ci is None:
                ci = nvml.nvmlGpuInstanceGetComputeInstanceById(
                    self._gpu_instance_handle(uuid, gi_id), ci_id
                )
            nvml.nvmlComputeInstanceDestroy(ci)

    def destroy_gpu_instance(self, uuid: str, gi_id: int) -> None:
        """Destroy one GPU instance."""
        nvml = self._nvml
        with self._nvml_errors(f"destroy GPU instance {gi_id}"):
            nvml.nvmlGpuInstanceDestroy(self._gpu_instance_handle(uuid, gi_id))
            del self._gi_handles[(uuid, gi_id)]

    def create_gpu_instance(self, uuid: str, profile_id: int, placement: Placement) -> int:
        """Create a GPU instance at an exact placement; returns its id."""
        nvml = self._nvml
        where = nvml.c_nvmlGpuInstancePlacement_t()
        where.start, where.size = placement.start, placement.size
        with self._nvml_errors(f"create GPU instance profile {profile_id} at {placement.start}"):
            gi = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(
                self._device(uuid), profile_id, ctypes.pointer(where)
            )
            gi_id: int = nvml.nvmlGpuInstanceGetInfo(gi).id
        self._gi_handles[(uuid, gi_id)] = gi
        return gi_id

    def create_compute_instance(
        self, uuid: str, gi_id: int, profile_id: int, placement: Placement
    ) -> int:
        """Create a compute instance at an exact placement in GI `gi_id`; return its id."""
        nvml = self._nvml
        where = nvml.c_nvmlComputeInstancePlacement_t()
        where.start, where.size = placement.start, placement.size
        action = f"create compute instance profile {profile_id} in GPU instance {gi_id}"
        with self._nvml_errors(action):
            gi = self._gpu_instance_handle(uuid, gi_id)
            ci = nvml.nvmlGpuInstanceCreateComputeInstanceWithPlacement(
                gi, profile_id, ctypes.pointer(where)
            )
            ci_id: int = nvml.nvmlComputeInstanceGetInfo(ci).id
        return ci_id
