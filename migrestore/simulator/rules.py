"""The simulated driver's MIG rules: pure functions over one simulated GPU (no I/O, no pynvml).

Sources for every rule: docs/nvml-mig-semantics.md and the real H200 readings in
tests/fixtures/simulator/h200-driver-580/. A rule that breaks raises `NvmlFailure` with the NVML
return code the real driver gives; the pynvml surface (`simulator/__init__.py`) turns it into
`pynvml.NVMLError`.
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

from migrestore.model import CiProfile, GiProfile, MigMode, Placement
from migrestore.profiles import ModelInfo, find_model, fits

MAX_COMPUTE_INSTANCES = 8  # ci0..ci7 per GPU instance (mig-minors; KMIGMGR_MAX_COMPUTE_INSTANCES)
FIRST_INVALID_CI_INDEX = 9  # NVML_COMPUTE_INSTANCE_PROFILE_COUNT
ENGINE_PROFILE_SHARED = 0  # NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, the only engine profile
MIG_DISABLED = MigMode(current=False, pending=False)
_MIG_UUID_NAMESPACE = uuid.UUID("6f0b5d3e-3c43-5b8e-9a43-1d6c0e0a7f21")


class Ret(enum.IntEnum):
    """The `nvmlReturn_t` codes the simulated driver answers with (values as in nvml.h)."""

    SUCCESS = 0
    UNINITIALIZED = 1
    INVALID_ARGUMENT = 2
    NOT_SUPPORTED = 3
    NOT_FOUND = 6
    INSUFFICIENT_SIZE = 7
    DRIVER_NOT_LOADED = 9
    FUNCTION_NOT_FOUND = 13
    IN_USE = 19
    GPU_IS_LOST = 15
    INSUFFICIENT_RESOURCES = 23


class NvmlFailure(Exception):
    """A simulated NVML call returns `code` instead of NVML_SUCCESS."""

    def __init__(self, code: Ret) -> None:
        super().__init__(code.name)
        self.code = code


@dataclass(frozen=True)
class SimComputeInstance:
    """A compute instance: id, profile id and placement in compute slices of its GPU instance."""

    id: int
    profile_id: int
    placement: Placement


@dataclass(frozen=True)
class SimGpuInstance:
    """A GPU instance: id (swizzId), profile id, placement in memory slices, compute instances."""

    id: int
    profile_id: int
    placement: Placement
    compute: tuple[SimComputeInstance, ...] = ()

    def ci(self, ci_id: int) -> SimComputeInstance | None:
        """The compute instance with this id."""
        return next((c for c in self.compute if c.id == ci_id), None)


@dataclass(frozen=True)
class SimClient:
    """A driver client (`gi_id` None) or a process running on a GPU or compute instance."""

    name: str
    pid: int
    gi_id: int | None = None
    ci_id: int | None = None

    @property
    def on_instance(self) -> bool:
        """A process on a MIG instance (listed by GetComputeRunningProcesses)."""
        return self.gi_id is not None

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


@dataclass(frozen=True)
class SimGpu:
    """One simulated physical GPU."""

    index: int
    model_name: str
    uuid: str
    pci_bus_id: str
    minor: int
    mig: MigMode = MIG_DISABLED
    instances: tuple[SimGpuInstance, ...] = ()
    clients: tuple[SimClient, ...] = ()
    lost: bool = False  # fallen off the bus: every call about it answers GPU_IS_LOST
    # Persistence mode, on as read on the real H200 (nvidia-persistenced runs on such hosts). It
    # holds the GPU like a client: it blocks a reset (and Ampere's own reset in SetMigMode), but
    # not a Hopper mode change (NVIDIA's mig-parted toggles Hopper MIG with it on).
    persistence: bool = True
    # The board's PCI subsystem id (`0x16C110DE`); None: as the model's boards read (handles.py).
    pci_subsystem_id: int | None = None
    # A GPU the catalogue does not know (`simulate init --gpu-table`): its own model and table.
    custom_model: ModelInfo | None = None

    @property
    def model(self) -> ModelInfo:
        """The model this GPU is: its own, or the catalogue's."""
        return self.custom_model or model_named(self.model_name)

    def gi(self, gi_id: int) -> SimGpuInstance | None:
        """The GPU instance with this id."""
        return next((g for g in self.instances if g.id == gi_id), None)


@functools.cache
def model_named(name: str) -> ModelInfo:
    """A catalogue model by name (the state file was validated, so it exists)."""
    found = find_model(name)
    if found is None:
        raise KeyError(name)
    return found


def driver_branch(driver_version: str) -> int:
    """The driver branch: 535 for `535.161.07` (0 for anything unparsable)."""
    head = driver_version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def first_invalid_gi_index(driver_version: str) -> int:
    """GI profile indices from here answer INVALID_ARGUMENT: 17 up to R580, 18 from R595 on."""
    return 18 if driver_branch(driver_version) >= 595 else 17


# NVML's 550 change log added the GPU-instance profile queries with MIG disabled; mig-parted
# (commit 219e780d) notes that R535 does not answer them. That R535 answers NOT_SUPPORTED is an
# ASSUMPTION (no R535 reading exists here): mig-parted only says the query fails.
PROFILES_WITH_MIG_OFF_FROM = 550


def check_profiles_readable(gpu: SimGpu, driver_version: str) -> None:
    """R535 and older: the GPU-instance profile queries answer NOT_SUPPORTED while MIG is off."""
    if not gpu.mig.current and driver_branch(driver_version) < PROFILES_WITH_MIG_OFF_FROM:
        raise NvmlFailure(Ret.NOT_SUPPORTED)


# Profile names that differ between driver branches, as (model, first branch, last branch,
# catalogue name, the name those drivers give). A100-80GB: some R535/R545 drivers call 3g.40gb
# "3g.39gb" (NVIDIA/mig-parted#31, slurmd then dropped the GRES); which releases exactly is not
# known here, so the simulator renames it on every R535 and R545 driver.
RENAMES = (("NVIDIA A100-SXM4-80GB", 535, 549, "3g.40gb", "3g.39gb"),)


def driver_name(gpu: SimGpu, driver_version: str, name: str) -> str:
    """A profile name (GPU- or compute-instance, `MIG 1c.3g.40gb`) as this driver spells it."""
    branch = driver_branch(driver_version)
    for model, first, last, old, new in RENAMES:
        if gpu.model_name == model and first <= branch <= last:
            name = name.replace(old, new)
    return name


# ---- GPU-instance profiles, ids and placements ----


def gi_profile_by_index(gpu: SimGpu, index: int, first_invalid: int) -> GiProfile:
    """`nvmlDeviceGetGpuInstanceProfileInfo`'s lookup: the index must be known to the driver."""
    if not 0 <= index < first_invalid:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    found = next((p for p in gpu.model.table.gi if p.index == index), None)
    if found is None:
        raise NvmlFailure(Ret.NOT_SUPPORTED)
    return found


def gi_profile_by_id(gpu: SimGpu, profile_id: int) -> GiProfile:
    """The profile that placement, capacity, create and list calls name by id."""
    found = gpu.model.table.gi_by_id(profile_id)
    if found is None:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    return found


def gi_id_for(model: ModelInfo, placement: Placement) -> int:
    """The swizzId: base 0, 1, 3, 7 for a whole, half, quarter, eighth, plus start / size."""
    parts, rest = divmod(model.placement_units, placement.size)
    if rest or parts not in (1, 2, 4, 8):
        raise ValueError(f"{model.name}: placement {placement} is no power-of-two fraction")
    return parts - 1 + placement.start // placement.size


def _max_disjoint(placements: Iterable[Placement]) -> int:
    """How many equal-size placements fit side by side (greedy by start is optimal)."""
    count, end = 0, -1
    for placement in sorted(placements):
        if placement.start >= end:
            count, end = count + 1, placement.end
    return count


def _media_conflict(profile: GiProfile, existing: list[GiProfile]) -> bool:
    """At most one `+me` GI per GPU; a `+me.all` GI coexists only with `-me` GIs (nvml.h)."""
    if profile.is_media_extension and any(p.is_media_extension for p in existing):
        return True
    if profile.takes_all_media and not all(p.has_no_media for p in existing):
        return True
    return any(p.takes_all_media for p in existing) and not profile.has_no_media


def _gi_limit_reached(gpu: SimGpu, profile: GiProfile) -> bool:
    same = sum(1 for g in gpu.instances if g.profile_id == profile.id)
    existing = [gi_profile_by_id(gpu, g.profile_id) for g in gpu.instances]
    return same >= profile.instances or _media_conflict(profile, existing)


def _taken(gpu: SimGpu) -> list[Placement]:
    return [g.placement for g in gpu.instances]


def gi_capacity(gpu: SimGpu, profile: GiProfile) -> int:
    """`RemainingCapacity`: the full instance count on an empty GPU, even with MIG disabled."""
    if _gi_limit_reached(gpu, profile):
        return 0
    same = sum(1 for g in gpu.instances if g.profile_id == profile.id)
    free = [p for p in profile.placements if fits(p, _taken(gpu))]
    return min(profile.instances - same, _max_disjoint(free))


def auto_gi_placement(gpu: SimGpu, profile: GiProfile) -> Placement | None:
    """Where the driver puts a GPU instance created without a placement: the highest free start.

    That reproduces the documented order sensitivity (A100: `-cgi 19,19,14,9` fails while
    `9,19,14,19` succeeds) and the user guide's `-cgi 9,9` -> GI ids 2 then 1.
    """
    free = [p for p in sorted(profile.placements) if fits(p, _taken(gpu))]
    return free[-1] if free else None


def create_gpu_instance(
    gpu: SimGpu, profile_id: int, placement: Placement | None
) -> tuple[SimGpu, SimGpuInstance]:
    """`nvmlDeviceCreateGpuInstance[WithPlacement]`."""
    if not gpu.mig.current:
        raise NvmlFailure(Ret.NOT_SUPPORTED)
    profile = gi_profile_by_id(gpu, profile_id)
    if placement is not None and placement not in profile.placements:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    chosen = placement or auto_gi_placement(gpu, profile)
    if chosen is None or _gi_limit_reached(gpu, profile) or not fits(chosen, _taken(gpu)):
        raise NvmlFailure(Ret.INSUFFICIENT_RESOURCES)
    created = SimGpuInstance(gi_id_for(gpu.model, chosen), profile.id, chosen)
    instances = tuple(sorted((*gpu.instances, created), key=lambda g: g.id))
    return replace(gpu, instances=instances), created


def existing_gi(gpu: SimGpu, gi_id: int) -> SimGpuInstance:
    """A GPU instance a handle refers to (a stale handle is an invalid argument)."""
    found = gpu.gi(gi_id)
    if found is None:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    return found


def destroy_gpu_instance(gpu: SimGpu, gi_id: int) -> SimGpu:
    """`nvmlGpuInstanceDestroy`: IN_USE while compute instances or processes exist."""
    gi = existing_gi(gpu, gi_id)
    if gi.compute or any(c.gi_id == gi_id for c in gpu.clients):
        raise NvmlFailure(Ret.IN_USE)
    return replace(gpu, instances=tuple(g for g in gpu.instances if g.id != gi_id))


# ---- compute instances ----


def ci_profile_by_index(gpu: SimGpu, gi: SimGpuInstance, index: int, engine: int) -> CiProfile:
    """`nvmlGpuInstanceGetComputeInstanceProfileInfo`'s lookup."""
    if engine != ENGINE_PROFILE_SHARED or not 0 <= index < FIRST_INVALID_CI_INDEX:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    found = next((c for c in gpu.model.table.ci_for(gi.profile_id) if c.index == index), None)
    if found is None:
        raise NvmlFailure(Ret.NOT_SUPPORTED)
    return found


def ci_profile_by_id(gpu: SimGpu, gi: SimGpuInstance, profile_id: int) -> CiProfile:
    """A compute-instance profile of this GPU instance's profile, by id."""
    found = next((c for c in gpu.model.table.ci_for(gi.profile_id) if c.id == profile_id), None)
    if found is None:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    return found


def ci_capacity(gi: SimGpuInstance, profile: CiProfile) -> int:
    """Compute instances of `profile` that can still be created in `gi`."""
    same = sum(1 for c in gi.compute if c.profile_id == profile.id)
    taken = [c.placement for c in gi.compute]
    free = [p for p in profile.placements if fits(p, taken)]
    return max(0, min(profile.instances - same, _max_disjoint(free)))


def create_compute_instance(
    gpu: SimGpu, gi_id: int, profile_id: int, placement: Placement | None
) -> tuple[SimGpu, SimComputeInstance]:
    """`nvmlGpuInstanceCreateComputeInstance[WithPlacement]`: lowest free CI id, first free slot."""
    gi = existing_gi(gpu, gi_id)
    profile = ci_profile_by_id(gpu, gi, profile_id)
    if placement is not None and placement not in profile.placements:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    taken = [c.placement for c in gi.compute]
    free = [p for p in sorted(profile.placements) if fits(p, taken)]
    chosen = placement or (free[0] if free else None)
    used_ids = {c.id for c in gi.compute}
    ci_id = next((i for i in range(MAX_COMPUTE_INSTANCES) if i not in used_ids), None)
    if chosen is None or ci_id is None or ci_capacity(gi, profile) == 0 or chosen not in free:
        raise NvmlFailure(Ret.INSUFFICIENT_RESOURCES)
    created = SimComputeInstance(ci_id, profile.id, chosen)
    compute = tuple(sorted((*gi.compute, created), key=lambda c: c.id))
    return _with_gi(gpu, replace(gi, compute=compute)), created


def existing_ci(gi: SimGpuInstance, ci_id: int) -> SimComputeInstance:
    """A compute instance a handle refers to."""
    found = gi.ci(ci_id)
    if found is None:
        raise NvmlFailure(Ret.INVALID_ARGUMENT)
    return found


def destroy_compute_instance(gpu: SimGpu, gi_id: int, ci_id: int) -> SimGpu:
    """`nvmlComputeInstanceDestroy`: IN_USE while processes run on it."""
    gi = existing_gi(gpu, gi_id)
    existing_ci(gi, ci_id)
    if any(c.gi_id == gi_id and c.ci_id == ci_id for c in gpu.clients):
        raise NvmlFailure(Ret.IN_USE)
    return _with_gi(gpu, replace(gi, compute=tuple(c for c in gi.compute if c.id != ci_id)))


def _with_gi(gpu: SimGpu, gi: SimGpuInstance) -> SimGpu:
    return replace(gpu, instances=tuple(gi if g.id == gi.id else g for g in gpu.instances))


# ---- MIG mode, reset, reboot ----


def set_mig_mode(gpu: SimGpu, enabled: bool) -> tuple[SimGpu, Ret]:
    """`nvmlDeviceSetMigMode`: the new state and the activation status pynvml returns.

    Hopper and later apply the mode at once, but refuse (IN_USE, nothing changes) while a client
    or process holds the GPU: unverified on real Hopper, the safe assumption (RM refuses GPU
    instance creation while channels are alive). Ampere keeps the mode pending until a GPU
    reset; with driver clients attached or persistence mode on, the activation status is IN_USE.
    """
    if not enabled and gpu.instances:
        raise NvmlFailure(Ret.IN_USE)
    if not gpu.model.architecture.mode_change_needs_reset:
        if gpu.mig.current != enabled and gpu.clients:
            raise NvmlFailure(Ret.IN_USE)
        return replace(gpu, mig=MigMode(enabled, enabled)), Ret.SUCCESS
    changed = replace(gpu, mig=MigMode(gpu.mig.current, enabled))
    blocked = changed.mig.is_pending and (bool(gpu.clients) or gpu.persistence)
    return changed, Ret.IN_USE if blocked else Ret.SUCCESS


def after_reset(gpu: SimGpu) -> SimGpu:
    """`nvidia-smi -r`: a pending mode takes effect; every instance is gone."""
    return replace(gpu, mig=MigMode(gpu.mig.pending, gpu.mig.pending), instances=())


def after_reboot(gpu: SimGpu) -> SimGpu:
    """A reboot (or driver reload): Ampere keeps its (pending) mode in the InfoROM, Hopper+ not.
    Persistence mode is on again (nvidia-persistenced starts at boot)."""
    mode = gpu.mig.pending and gpu.model.architecture.mode_survives_reboot
    return replace(
        gpu, mig=MigMode(mode, mode), instances=(), clients=(), lost=False, persistence=True
    )


# ---- MIG devices and processes ----


def mig_devices(gpu: SimGpu) -> list[tuple[SimGpuInstance, SimComputeInstance]]:
    """Every MIG device (one per compute instance), in (GI id, CI id) order."""
    pairs = [(gi, ci) for gi in gpu.instances for ci in gi.compute]
    return sorted(pairs, key=lambda pair: (pair[0].id, pair[1].id))


def max_mig_devices(gpu: SimGpu) -> int:
    """`nvmlDeviceGetMaxMigDeviceCount`: 0 with MIG disabled, else the most 1-slice instances."""
    return max(p.instances for p in gpu.model.table.gi) if gpu.mig.current else 0


def mig_uuid(gpu_uuid: str, gi_id: int, ci_id: int) -> str:
    """A stable MIG device UUID (version 5, like the driver's) for a GPU, GI id and CI id."""
    return "MIG-" + str(uuid.uuid5(_MIG_UUID_NAMESPACE, f"{gpu_uuid}/{gi_id}/{ci_id}"))


def processes(gpu: SimGpu, gi_id: int | None = None, ci_id: int | None = None) -> list[SimClient]:
    """Processes on the GPU's instances (all of them, or those of one MIG device)."""
    running = [c for c in gpu.clients if c.on_instance]
    if gi_id is None:
        return running
    return [c for c in running if c.gi_id == gi_id and c.ci_id == ci_id]
