"""A simulated GPU host: what `migrestore simulate` does to it, and the latency model.

The state lives in a JSON file (state.py) that every process using the host shares.
Importing this module does not import pynvml.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final

from migrestore.errors import ConfigError, MigrestoreError
from migrestore.model import Architecture
from migrestore.profiles import ModelInfo, catalogue, find_model
from migrestore.selection import normalise_pci
from migrestore.simulator.rules import SimClient, SimGpu, after_reboot, after_reset
from migrestore.simulator.state import (
    Driver,
    Fault,
    FaultAction,
    Host,
    HostStore,
    Latency,
    live_sessions,
)

DEFAULT_DRIVER: Final = "580.159.04"
# `simulate init --driver 535.x` (or `535`, `R535`): a version of that branch that NVIDIA
# released (each is quoted in docs/nvml-mig-semantics.md). R580's is the real H200's.
DRIVER_BRANCHES: Final = MappingProxyType(
    {"535": "535.161.07", "550": "550.90.07", "570": "570.133.20", "580": DEFAULT_DRIVER}
)
DGX_BUSES: Final = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)  # DGX A100/H100 GPU buses
HGX_NVSWITCHES: Final = 6  # an HGX A100 8-GPU baseboard: 8 GPUs, 6 second-generation NVSwitches
FAKE_PID_BASE: Final = 40000  # pids given to attached clients when the caller names none
_GPU_UUID_NAMESPACE: Final = uuid.UUID("1b671a64-40d5-491e-99b0-da01ff1f3341")

# Seconds per call of the latency model (off until `set_latency`). "measured": the real H200
# (driver 580.159.04, persistence on),
# tests/fixtures/simulator/h200-driver-580/nvml-call-timings.txt, median of the successful
# calls. "estimate": not measurable there (MIG may not be changed).
DEFAULT_LATENCY: Final[Mapping[str, float]] = MappingProxyType(
    {
        "nvmlInit": 0.009042,  # measured: init_ms 9.042
        "nvmlInitWithFlags": 0.009042,  # the call nvmlInit makes
        "nvmlShutdown": 0.001,  # estimate: teardown, not timed
        "nvmlSystemGetDriverVersion": 0.000061,  # measured
        "nvmlSystemGetNVMLVersion": 0.000013,  # measured
        "nvmlSystemGetProcessName": 0.00005,  # estimate: a string read like GetName
        "nvmlDeviceGetCount": 0.000005,  # measured
        "nvmlDeviceGetHandleByIndex": 0.00671,  # measured: the first attach to the GPU
        "nvmlDeviceGetHandleByUUID": 0.00671,  # estimate: the same attach
        "nvmlDeviceGetHandleByPciBusId": 0.00671,  # estimate: the same attach
        "nvmlDeviceGetName": 0.00004,  # measured
        "nvmlDeviceGetUUID": 0.000017,  # measured
        "nvmlDeviceGetPciInfo": 0.000022,  # measured
        "nvmlDeviceGetMinorNumber": 0.000008,  # measured
        "nvmlDeviceGetIndex": 0.000004,  # measured
        "nvmlDeviceGetArchitecture": 0.000007,  # measured
        "nvmlDeviceGetCudaComputeCapability": 0.000008,  # measured
        "nvmlDeviceGetMemoryInfo": 0.000016,  # measured
        "nvmlDeviceGetPersistenceMode": 0.000015,  # measured
        # estimate: off, the last client gone, the GPU state is torn down; on, it is set up again
        # ("1-3 s" per GPU with ECC scrubbing, docs.nvidia.com/deploy/driver-persistence)
        "nvmlDeviceSetPersistenceMode": 1.0,
        "nvmlDeviceGetMigMode": 0.000416,  # measured
        "nvmlDeviceGetMaxMigDeviceCount": 0.000266,  # measured
        "nvmlDeviceGetComputeRunningProcesses": 0.000121,  # measured
        "nvmlDeviceIsMigDeviceHandle": 0.000005,  # measured
        "nvmlDeviceGetGpuInstanceProfileInfo": 0.000499,  # measured: median of 7
        "nvmlDeviceGetGpuInstanceProfileInfoById": 0.000499,  # estimate: as by index
        "nvmlDeviceGetGpuInstanceRemainingCapacity": 0.000199,  # measured: median of 7
        "nvmlDeviceGetGpuInstancePossiblePlacements": 0.0002,  # estimate: like the capacity
        "nvmlDeviceGetGpuInstances": 0.0002,  # estimate: like the capacity
        "nvmlDeviceGetGpuInstanceById": 0.0002,  # estimate: like the capacity
        "nvmlGpuInstanceGetInfo": 0.00005,  # estimate: cached in RM
        "nvmlGpuInstanceGetComputeInstanceProfileInfo": 0.0005,  # estimate: as for GIs
        "nvmlGpuInstanceGetComputeInstancePossiblePlacements": 0.0002,  # estimate
        "nvmlGpuInstanceGetComputeInstanceRemainingCapacity": 0.0002,  # estimate
        "nvmlGpuInstanceGetComputeInstances": 0.0002,  # estimate
        "nvmlGpuInstanceGetComputeInstanceById": 0.0002,  # estimate
        "nvmlComputeInstanceGetInfo": 0.00005,  # estimate: cached in RM
        "nvmlDeviceGetMigDeviceHandleByIndex": 0.0002,  # estimate
        "nvmlDeviceGetGpuInstanceId": 0.000005,  # estimate: like IsMigDeviceHandle
        "nvmlDeviceGetComputeInstanceId": 0.000005,  # estimate: like IsMigDeviceHandle
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle": 0.000005,  # estimate: likewise
        "nvmlDeviceGetNvLinkState": 0.00002,  # estimate: a cached link state, like GetPciInfo
        "nvmlDeviceGetNvLinkRemoteDeviceType": 0.00002,  # estimate: likewise
        "nvmlDeviceSetMigMode": 1.0,  # estimate: A100 answered within ~1 s (gpu-operator#1606)
        "nvmlDeviceCreateGpuInstance": 0.3,  # estimate: RM carves and scrubs memory
        "nvmlDeviceCreateGpuInstanceWithPlacement": 0.3,  # estimate: likewise
        "nvmlGpuInstanceCreateComputeInstance": 0.15,  # estimate: no memory to scrub
        "nvmlGpuInstanceCreateComputeInstanceWithPlacement": 0.15,  # estimate: likewise
        "nvmlGpuInstanceDestroy": 0.1,  # estimate
        "nvmlComputeInstanceDestroy": 0.1,  # estimate
        "reset_gpus": 8.0,  # estimate: an A100 reset attempt took ~8 s (gpu-operator#1606)
    }
)
NVML_FUNCTIONS: Final = frozenset(DEFAULT_LATENCY) - {"reset_gpus"}


class ResetRefused(MigrestoreError):
    """`nvidia-smi -r` refused: a GPU has clients, or an NVML session is still open."""


# ---- the `migrestore simulate` operations ----


@dataclass(frozen=True)
class ModelSummary:
    """One GPU model the simulator can stand up."""

    name: str
    architecture: str
    slices: int
    memory_mb: int
    profiles: tuple[str, ...]


def models() -> list[ModelSummary]:
    """Every catalogue model, for `migrestore simulate models`."""
    return [
        ModelSummary(
            name=m.name,
            architecture=m.architecture.value,
            slices=max(p.slices for p in m.table.gi),
            memory_mb=m.memory_mb,
            profiles=tuple(p.short_name for p in sorted(m.table.gi, key=lambda p: p.slices)),
        )
        for m in catalogue()
    ]


def models_text() -> list[str]:
    """`simulate models` output, one line per model, names in a column as wide as the longest."""
    listed = models()
    width = max(len(m.name) for m in listed)
    return [
        f"{m.name:<{width}} {m.architecture:<9} {m.slices} slices {m.memory_mb:>7} MiB  "
        + " ".join(m.profiles)
        for m in listed
    ]


def canonical_bus_id(text: str) -> str | None:
    """`0000:07:00.0`, `00000000:07:00.0` or `07:00.0` as NVML writes it, else None."""
    return normalise_pci(text)


def _identities(
    path: Path, count: int, given: list[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    if given is None:
        return [
            (
                f"GPU-{uuid.uuid5(_GPU_UUID_NAMESPACE, f'{path.resolve()}#{i}')}",
                f"{i // len(DGX_BUSES):08X}:{DGX_BUSES[i % len(DGX_BUSES)]:02X}:00.0",
            )
            for i in range(count)
        ]
    if len(given) != count:
        raise ConfigError(f"{len(given)} identities given for {count} GPUs")
    canonical = [(gpu_uuid, canonical_bus_id(bus)) for gpu_uuid, bus in given]
    bad = [bus for (_, bus), (_, ok) in zip(given, canonical) if ok is None]
    if bad:
        raise ConfigError(f"not a PCI bus id: {bad[0]!r}")
    return [(gpu_uuid, bus) for gpu_uuid, bus in canonical if bus is not None]


def _models(gpus: list[tuple[str | ModelInfo, int]]) -> list[tuple[str, ModelInfo | None]]:
    """Each GPU's model name, and its own model if the catalogue does not know it."""
    found: list[tuple[str, ModelInfo | None]] = []
    for wanted, count in gpus:
        own = wanted if isinstance(wanted, ModelInfo) else None
        model = own or find_model(str(wanted))
        if model is None:
            known = ", ".join(m.name for m in catalogue())
            raise ConfigError(f"unknown GPU model {wanted!r}; known: {known}")
        if count < 1:
            raise ConfigError(f"GPU count for {model.name!r} must be at least 1, not {count}")
        found += [(model.name, own)] * count
    own_models: dict[str, ModelInfo] = {}
    for name, own in found:
        if own is not None and own_models.setdefault(name, own) != own:
            raise ConfigError(f"two different GPU profile tables are named {name!r}")
    return found


def driver_version(text: str) -> str:
    """A full driver version from `580.159.04`, or from a branch: `535.x`, `535`, `R535`."""
    wanted = text.strip()
    branch = wanted.upper().removeprefix("R").removesuffix(".X")
    if branch in DRIVER_BRANCHES:
        return DRIVER_BRANCHES[branch]
    parts = wanted.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        known = ", ".join(f"{b}.x" for b in DRIVER_BRANCHES)
        raise ConfigError(f"--driver {text!r}: expected a version like 580.159.04 or {known}")
    return wanted


def init_host(
    path: str | os.PathLike[str],
    gpus: list[tuple[str | ModelInfo, int]],
    *,
    driver: str = DEFAULT_DRIVER,
    identities: list[tuple[str, str]] | None = None,
    sysroot: Path | None = None,
    nvswitches: int = 0,
) -> None:
    """Create (or replace) a simulated host with these GPU models and counts, MIG disabled: a
    model by catalogue name, or a `ModelInfo` of its own (a GPU the catalogue does not know);
    with `nvswitches`, an HGX baseboard whose GPUs all link through them, Fabric Manager on."""
    state = Path(path)
    models = _models(gpus)
    if not models:
        raise ConfigError("a simulated host needs at least one GPU")
    ids = _identities(state, len(models), identities)
    host = Host(
        driver=Driver(driver_version(driver)),
        gpus=tuple(
            SimGpu(index, name, gpu_uuid, bus, minor=index, custom_model=own)
            for index, ((name, own), (gpu_uuid, bus)) in enumerate(zip(models, ids))
        ),
        sysroot=str(sysroot.resolve()) if sysroot else None,
        nvswitches=nvswitches,
    )
    if nvswitches < 0:
        raise ConfigError(f"NVSwitch count must not be negative, not {nvswitches}")
    HostStore(state).create(host)


def _store(path: str | os.PathLike[str]) -> HostStore:
    return HostStore(Path(path))


def _after_power_cycle(host: Host) -> Host:
    return replace(host, gpus=tuple(after_reboot(g) for g in host.gpus), sessions=())


def reboot(path: str | os.PathLike[str]) -> None:
    """Reboot: no instances, clients or sessions; Hopper+ MIG off; Ampere keeps (pending) mode."""
    _store(path).update(lambda host: (_after_power_cycle(host), None))


def unload_driver(path: str | os.PathLike[str], *, reload_after: float | None = None) -> None:
    """Unload the driver (the GPUs lose what a reboot loses); it returns after `reload_after` s."""
    reload_at = None if reload_after is None else time.time() + reload_after

    def change(host: Host) -> tuple[Host, None]:
        driver = Driver(host.driver.version, loaded=False, reload_at=reload_at)
        return replace(_after_power_cycle(host), driver=driver), None

    _store(path).update(change)


def load_driver(path: str | os.PathLike[str]) -> None:
    """Load the kernel driver now."""
    _store(path).update(lambda host: (replace(host, driver=Driver(host.driver.version)), None))


def _gpu_at(host: Host, index: int) -> SimGpu:
    if not 0 <= index < len(host.gpus):
        raise ConfigError(f"no GPU {index} on the simulated host (it has {len(host.gpus)})")
    return host.gpus[index]


def _check_instance(gpu: SimGpu, gi_id: int | None, ci_id: int | None) -> None:
    if gi_id is None and ci_id is not None:
        raise ConfigError("a compute instance needs its GPU instance")
    gi = gpu.gi(gi_id) if gi_id is not None else None
    if gi_id is not None and gi is None:
        raise ConfigError(f"GPU {gpu.index} has no GPU instance {gi_id}")
    if gi is not None and ci_id is not None and gi.ci(ci_id) is None:
        raise ConfigError(
            f"GPU instance {gi_id} of GPU {gpu.index} has no compute instance {ci_id}"
        )


def attach(
    path: str | os.PathLike[str],
    gpu_index: int,
    client: str,
    *,
    gi_id: int | None = None,
    ci_id: int | None = None,
    pid: int | None = None,
) -> int:
    """Attach a driver client to a GPU, or a process to one of its instances; returns its pid."""
    if not client:
        raise ConfigError("a client needs a name")

    def change(host: Host) -> tuple[Host, int]:
        gpu = _gpu_at(host, gpu_index)
        _check_instance(gpu, gi_id, ci_id)
        pids = [c.pid for g in host.gpus for c in g.clients if c.pid >= FAKE_PID_BASE]
        chosen = pid if pid is not None else max(pids, default=FAKE_PID_BASE) + 1
        attached = replace(gpu, clients=(*gpu.clients, SimClient(client, chosen, gi_id, ci_id)))
        return host.with_gpu(attached), chosen

    return _store(path).update(change)


def detach(path: str | os.PathLike[str], gpu_index: int, client: str) -> None:
    """Detach every client or process called `client` from a GPU."""

    def change(host: Host) -> tuple[Host, None]:
        gpu = _gpu_at(host, gpu_index)
        kept = tuple(c for c in gpu.clients if c.name != client)
        if len(kept) == len(gpu.clients):
            raise ConfigError(f"no client {client!r} on GPU {gpu_index}")
        return host.with_gpu(replace(gpu, clients=kept)), None

    _store(path).update(change)


def set_persistence(path: str | os.PathLike[str], gpu_index: int, enabled: bool) -> None:
    """Persistence mode of one GPU on or off (`nvidia-smi -i N -pm 1|0`)."""

    def change(host: Host) -> tuple[Host, None]:
        return host.with_gpu(replace(_gpu_at(host, gpu_index), persistence=enabled)), None

    _store(path).update(change)


def set_fabric_manager(path: str | os.PathLike[str], active: bool) -> None:
    """nvidia-fabricmanager.service started or stopped on an NVSwitch host."""

    def change(host: Host) -> tuple[Host, None]:
        if not host.nvswitches:
            raise ConfigError("the simulated host has no NVSwitch (simulate init --nvswitch)")
        return replace(host, fabric_manager=active), None

    _store(path).update(change)


def set_subsystem_id(path: str | os.PathLike[str], gpu_index: int, subsystem_id: int) -> None:
    """The PCI subsystem id one GPU's board reads (`0x16C110DE`: subsystem device, then vendor);
    boards of one model differ in it, as mig-parted's `device-filter` can tell."""
    if not 0 < subsystem_id <= 0xFFFFFFFF:
        raise ConfigError(f"a PCI subsystem id is 32 bits, not zero, got {subsystem_id:#x}")

    def change(host: Host) -> tuple[Host, None]:
        gpu = replace(_gpu_at(host, gpu_index), pci_subsystem_id=subsystem_id)
        return host.with_gpu(gpu), None

    _store(path).update(change)


def _reset_targets(host: Host, pci_bus_ids: Iterable[str]) -> list[SimGpu]:
    targets: list[SimGpu] = []
    for text in pci_bus_ids:
        bus = canonical_bus_id(text)
        gpu = next((g for g in host.gpus if g.pci_bus_id == bus), None)
        if gpu is None:
            raise ResetRefused(f"GPU reset refused: no GPU with PCI bus id {text}")
        targets.append(gpu)
    return targets


def _check_reset(host: Host, targets: list[SimGpu]) -> None:
    sessions = live_sessions(host)
    if sessions:
        pids = ", ".join(str(s.pid) for s in sessions)
        first = targets[0].pci_bus_id if targets else "-"
        raise ResetRefused(
            f"GPU {first} could not be reset: In use by another client (NVML pid {pids})"
        )
    for gpu in targets:
        if gpu.lost:
            raise ResetRefused(f"GPU {gpu.pci_bus_id} could not be reset: GPU is lost")
        if gpu.clients:
            names = ", ".join(str(c) for c in gpu.clients)
            raise ResetRefused(f"GPU {gpu.pci_bus_id} could not be reset: In use by {names}")
        if gpu.persistence:
            raise ResetRefused(
                f"GPU {gpu.pci_bus_id} could not be reset: In use by another client "
                "(persistence mode is on)"
            )
    alone = _needs_fabric_manager(host, targets)
    if alone is not None:
        # nvidia-smi(1): on Ampere NVSwitch systems Fabric Manager facilitates the reset of one
        # GPU; without it all NVLink peers go in one command. Its wording for this refusal is not
        # documented: this text is made up, and migrestore does not read it.
        raise ResetRefused(
            f"GPU {alone.pci_bus_id} could not be reset: Not Supported "
            "(simulated: NVSwitch peers reset apart without Fabric Manager)"
        )


def _needs_fabric_manager(host: Host, targets: list[SimGpu]) -> SimGpu | None:
    """An Ampere GPU reset without all its NVLink peers (every GPU of the baseboard) while
    Fabric Manager is not running; None if the reset may go ahead."""
    if not host.nvswitches or host.fabric_manager:
        return None
    chosen = {g.pci_bus_id for g in targets}
    if chosen >= {g.pci_bus_id for g in host.gpus}:
        return None
    return next((g for g in targets if g.model.architecture is Architecture.AMPERE), None)


def reset_gpus(path: str | os.PathLike[str], pci_bus_ids: Iterable[str]) -> None:
    """`nvidia-smi -r -i BUS,...`: refused while clients or NVML sessions hold the GPUs."""
    store = _store(path)
    wanted = list(pci_bus_ids)
    host = store.read()
    _check_reset(host, _reset_targets(host, wanted))
    if host.latency:
        time.sleep(host.latency.delay("reset_gpus"))

    def change(host: Host) -> tuple[Host, None]:
        targets = _reset_targets(host, wanted)
        _check_reset(host, targets)
        for gpu in targets:
            host = host.with_gpu(after_reset(gpu))
        return host, None

    store.update(change)


def nvml_error_code(error: str | int) -> int:
    """An NVML return code from `19`, `InUse`, `NVMLError_InUse` or `IN_USE`."""
    import pynvml

    codes = {
        name.removeprefix("NVML_ERROR_").replace("_", "").casefold(): value
        for name, value in vars(pynvml).items()
        if name.startswith("NVML_ERROR_") and isinstance(value, int)
    }
    text = str(error).strip()
    if text.isdigit() and int(text) in codes.values():
        return int(text)
    key = text.removeprefix("NVMLError_").replace("_", "").casefold()
    if key not in codes:
        raise ConfigError(f"unknown NVML error {error!r}; e.g. InUse, InsufficientResources, 19")
    return codes[key]


def _known_function(name: str) -> str:
    if name not in NVML_FUNCTIONS:
        raise ConfigError(f"the simulator does not model {name!r}; e.g. nvmlDeviceSetMigMode")
    return name


def inject_fault(
    path: str | os.PathLike[str],
    function: str,
    nth: int,
    error: str | int,
    *,
    action: str = "raise",
    gpu: int = -1,
) -> None:
    """Make the `nth` next call of `function` (in any process) fail with `error`, once; with
    action "lose", GPU `gpu` falls off the bus just before that call instead."""
    if nth < 1:
        raise ConfigError(f"--nth must be at least 1, not {nth}")
    if action not in set(FaultAction):
        known = ", ".join(FaultAction)
        raise ConfigError(f"unknown fault action {action!r}; known: {known}")
    if (action == FaultAction.LOSE) != (gpu >= 0):
        raise ConfigError('a GPU index is needed with the fault action "lose", and only there')
    code = nvml_error_code(error)
    fault = Fault(_known_function(function), nth, code, FaultAction(action), gpu)

    def change(host: Host) -> tuple[Host, None]:
        if gpu >= 0:
            _gpu_at(host, gpu)
        return replace(host, faults=(*host.faults, fault)), None

    _store(path).update(change)


def lose_gpu(path: str | os.PathLike[str], index: int) -> Host:
    """GPU `index` falls off the bus (Xid 79): every NVML call about it answers GpuIsLost, and
    nvidia-smi cannot reset it; a reboot brings it back. Returns the host afterwards."""

    def change(host: Host) -> tuple[Host, Host]:
        lost = host.with_gpu(replace(_gpu_at(host, index), lost=True))
        return lost, lost

    return _store(path).update(change)


def set_latency(
    path: str | os.PathLike[str],
    per_function_seconds: Mapping[str, float] | None,
    *,
    scale: float = 1.0,
) -> None:
    """Turn the latency model on (e.g. `DEFAULT_LATENCY`) or off (None)."""
    latency = None
    if per_function_seconds is not None:
        for name, seconds in per_function_seconds.items():
            if name != "reset_gpus":
                _known_function(name)
            if seconds < 0:
                raise ConfigError(f"latency of {name} must not be negative")
        if scale < 0:
            raise ConfigError(f"latency scale must not be negative, not {scale}")
        latency = Latency(MappingProxyType(dict(per_function_seconds)), scale)
    _store(path).update(lambda host: (replace(host, latency=latency), None))


def counters(path: str | os.PathLike[str]) -> dict[str, int]:
    """Simulated NVML calls per function, as merged at nvmlShutdown and process exit."""
    return dict(_store(path).read().counters)


def reset_counters(path: str | os.PathLike[str]) -> None:
    """Start counting from zero."""
    _store(path).update(lambda host: (replace(host, counters={}), None))
