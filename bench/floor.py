"""The floor: the driver calls a verb cannot avoid in a scenario, and what they cost.

Counted per NVML function from the scenario's own description (bench.layouts), never from
migrestore's plan. bench/README.md states the definition; in short:

- every run: nvmlInit, nvmlDeviceGetCount, nvmlShutdown; per GPU a handle (by index), its UUID and
  name (to select its layout entry) and its MIG mode;
- per distinct model that is read: its GPU-instance profile table once (profile info for each
  index until INVALID_ARGUMENT, one possible-placements call per supported profile);
- per GPU with MIG on whose instances matter: one instance list per GPU-instance profile, one
  info per GPU instance, one compute-instance list per compute profile of each GPU instance,
  one info per compute instance;
- apply, additionally: one SetMigMode per GPU whose mode is wrong (Ampere: re-read its mode); one
  reset per batch of pending Ampere GPUs (bus id read before, NVML shut down and initialised
  around it, then a handle by UUID for every changed GPU, and the mode of each GPU reset);
  persistence mode off and on again for each GPU reset, and read back (the simulated hosts have
  it on, as DGX hosts do, and it blocks a reset); one process list per GPU that loses instances; one
  destroy per surplus compute or GPU instance, one create per missing one; and the read-back
  the design requires of every changed GPU (mode and instances).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.catalogue import ModelData, first_invalid_gi_index
from bench.layouts import Compute, Gpu, GpuLayout, Instance

SET_MODE = "nvmlDeviceSetMigMode"
RESET = "reset_gpus"
SET_PERSISTENCE = "nvmlDeviceSetPersistenceMode"
CREATE_GI = "nvmlDeviceCreateGpuInstanceWithPlacement"
CREATE_CI = "nvmlGpuInstanceCreateComputeInstanceWithPlacement"
DESTROY_GI = "nvmlGpuInstanceDestroy"
DESTROY_CI = "nvmlComputeInstanceDestroy"

# Every call that changes the GPUs, by kind (the placement-less creates count as creates too).
MUTATING: Mapping[str, str] = {
    SET_MODE: "mode",
    RESET: "reset",
    SET_PERSISTENCE: "persistence",
    "nvmlDeviceCreateGpuInstance": "create GI",
    CREATE_GI: "create GI",
    "nvmlGpuInstanceCreateComputeInstance": "create CI",
    CREATE_CI: "create CI",
    DESTROY_GI: "destroy GI",
    DESTROY_CI: "destroy CI",
}
READ_ONLY_VERBS = frozenset({"verify", "plan", "status", "export"})
WHOLE_HOST_VERBS = frozenset({"status", "export"})  # they describe every GPU, selected or not


def is_mutating(function: str) -> bool:
    """True for calls that change a GPU (mode, reset, persistence, create, destroy)."""
    return function in MUTATING


def split(calls: Mapping[str, int]) -> tuple[int, int]:
    """(mutating, read) call totals."""
    mutating = sum(n for f, n in calls.items() if is_mutating(f))
    return mutating, sum(calls.values()) - mutating


def seconds(calls: Mapping[str, int], latency: Mapping[str, float], scale: float) -> float:
    """What `calls` cost under the latency model."""
    return sum(n * latency.get(f, 0.0) for f, n in calls.items()) * scale


# ---- reads ----


def _table(model: ModelData, driver: str) -> Counter[str]:
    return Counter(
        {
            "nvmlDeviceGetGpuInstanceProfileInfo": first_invalid_gi_index(driver) + 1,
            "nvmlDeviceGetGpuInstancePossiblePlacements": len(model.gi),
        }
    )


def _instances(model: ModelData, instances: Iterable[Instance]) -> Counter[str]:
    calls = Counter({"nvmlDeviceGetGpuInstances": len(model.gi)})
    for inst in instances:
        kind = model.gi_kind(inst.profile)
        calls["nvmlGpuInstanceGetInfo"] += 1
        calls["nvmlGpuInstanceGetComputeInstances"] += len(kind.ci_names)
        calls["nvmlComputeInstanceGetInfo"] += len(inst.compute)
    return calls


def reads(gpus: tuple[Gpu, ...], read: tuple[bool, ...], driver: str) -> Counter[str]:
    """Identify every GPU; table and instances of those in `read` (per GPU)."""
    if len(read) != len(gpus):
        raise ValueError(f"{len(read)} read flags for {len(gpus)} GPUs")
    calls = Counter({"nvmlInit": 1, "nvmlDeviceGetCount": 1, "nvmlShutdown": 1})
    per_gpu = ("nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID", "nvmlDeviceGetName")
    for name in (*per_gpu, "nvmlDeviceGetMigMode"):
        calls[name] += len(gpus)
    tables: set[str] = set()
    for gpu, wanted in zip(gpus, read):
        if not wanted:
            continue
        if gpu.model.name not in tables:
            tables.add(gpu.model.name)
            calls += _table(gpu.model, driver)
        if gpu.state.mig:
            calls += _instances(gpu.model, gpu.state.instances)
    return calls


# ---- apply ----


@dataclass(frozen=True)
class _Diff:
    destroy: tuple[Instance, ...]
    create: tuple[Instance, ...]
    destroy_ci: tuple[Compute, ...]
    create_ci: tuple[Compute, ...]


def _take(items: list[Compute], wanted: Compute) -> bool:
    if wanted in items:
        items.remove(wanted)
        return True
    return False


def _pair(start: list[Instance], wanted: Instance, exact: bool) -> Instance | None:
    for inst in start:
        same_place = inst.placement == wanted.placement or not exact
        if inst.profile == wanted.profile and same_place:
            start.remove(inst)
            return inst
    return None


def _diff(start: tuple[Instance, ...], target: tuple[Instance, ...]) -> _Diff:
    """Keep every GPU instance whose profile and placement are wanted; adjust its CIs only.

    A wanted instance without a placement keeps any surplus one of its profile.
    """
    left = list(start)
    pairs: list[tuple[Instance, Instance]] = []
    unmatched: list[Instance] = []
    placed = [w for w in target if w.placement is not None]
    floating = [w for w in target if w.placement is None]
    for exact, todo in ((True, placed), (False, floating)):
        for wanted in todo:
            found = _pair(left, wanted, exact)
            if found is None:
                unmatched.append(wanted)
            else:
                pairs.append((found, wanted))
    destroy_ci: list[Compute] = []
    create_ci: list[Compute] = []
    for have, wanted in pairs:
        present = list(have.compute)
        create_ci += [c for c in wanted.compute if not _take(present, c)]
        destroy_ci += present
    return _Diff(tuple(left), tuple(unmatched), tuple(destroy_ci), tuple(create_ci))


def _changes(gpu: Gpu, target: GpuLayout) -> Counter[str]:
    """The mutating calls one GPU needs (its reset is counted per batch by the caller)."""
    calls: Counter[str] = Counter()
    start = gpu.state.instances if gpu.state.mig else ()
    wanted = target.instances if target.mig else ()
    diff = _diff(start, wanted)
    calls[DESTROY_CI] += len(diff.destroy_ci) + sum(len(i.compute) for i in diff.destroy)
    calls[DESTROY_GI] += len(diff.destroy)
    calls[CREATE_GI] += len(diff.create)
    calls[CREATE_CI] += len(diff.create_ci) + sum(len(i.compute) for i in diff.create)
    calls[SET_MODE] += int(gpu.state.mig != target.mig)
    return +calls


def _gpu_apply(gpu: Gpu, target: GpuLayout) -> Counter[str]:
    """Mutating calls plus the reads that go with them, for one GPU (reset batch excluded)."""
    calls = _changes(gpu, target)
    if not calls:
        return calls
    if calls[DESTROY_GI] or calls[DESTROY_CI]:
        calls["nvmlDeviceGetComputeRunningProcesses"] += 1  # busy instances are not destroyed
    if calls[SET_MODE] and gpu.model.mode_needs_reset:
        calls["nvmlDeviceGetMigMode"] += 1  # pending or current? pynvml does not raise
        calls["nvmlDeviceGetPciInfo"] += 1  # the bus id nvidia-smi -r takes
        calls["nvmlDeviceGetMigMode"] += 1  # after the reset
        calls[SET_PERSISTENCE] += 2  # off for the reset (it blocks one), then on again
        calls["nvmlDeviceGetPersistenceMode"] += 1  # on again? (issue 11)
    calls["nvmlDeviceGetMigMode"] += 1  # the read-back
    return calls + _instances(gpu.model, target.instances if target.mig else ())


def apply(
    gpus: tuple[Gpu, ...], targets: tuple[GpuLayout | None, ...], driver: str
) -> Counter[str]:
    """The minimum calls of `apply` taking `gpus` to `targets`."""
    if len(targets) != len(gpus):
        raise ValueError(f"{len(targets)} targets for {len(gpus)} GPUs")
    calls = reads(gpus, tuple(t is not None for t in targets), driver)
    resets = changed = 0
    for gpu, target in zip(gpus, targets):
        if target is None:
            continue
        one = _gpu_apply(gpu, target)
        resets += int(bool(one[SET_MODE]) and gpu.model.mode_needs_reset)
        changed += int(bool(one))
        calls += one
    if resets:
        # NVML is shut down around the reset: every GPU still to be worked on or read back
        # needs its handle again (by UUID)
        calls += Counter({RESET: 1, "nvmlShutdown": 1, "nvmlInit": 1})
        calls["nvmlDeviceGetHandleByUUID"] += changed
    return calls


def minimum(
    verb: str, gpus: tuple[Gpu, ...], targets: tuple[GpuLayout | None, ...], driver: str
) -> Counter[str]:
    """The unavoidable calls of `verb` on a host in state `gpus` with layout `targets`."""
    if verb in WHOLE_HOST_VERBS:
        return reads(gpus, tuple(bool(g.model.gi) for g in gpus), driver)
    if verb in READ_ONLY_VERBS:
        return reads(gpus, tuple(t is not None for t in targets), driver)
    if verb == "apply":
        return apply(gpus, targets, driver)
    raise ValueError(f"no floor defined for {verb!r}")
