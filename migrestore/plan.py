"""The pure planner: desired layout vs. current state -> per GPU an ordered tuple of Steps.

Minimal by construction: a GPU instance that already has the wanted profile and placement is kept
(only its compute instances are adjusted), a compute instance with the wanted profile and placement
is kept, and nothing else is touched. Destroys come before creates, compute instances before their
GPU instance; creates go GPU instance first, then its compute instances, in placement order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn, Union

from migrestore import layout, profiles
from migrestore.errors import ConfigError
from migrestore.model import (
    CiProfile,
    ComputeInstance,
    DesiredNode,
    GiProfile,
    GpuInstance,
    GpuSpec,
    GpuState,
    NodeState,
    Placement,
    Process,
    SelectorKind,
    TargetInstance,
    TargetLayout,
    UnreadableGpu,
)
from migrestore.selection import match as selection_of


@dataclass(frozen=True)
class SetMigMode:
    """Turn MIG mode on or off."""

    enabled: bool

    def describe(self) -> str:
        """Human wording."""
        return f"{'enable' if self.enabled else 'disable'} MIG mode"


@dataclass(frozen=True)
class ResetGpu:
    """Reset the GPU so a pending MIG mode takes effect (Ampere)."""

    def describe(self) -> str:
        """Human wording."""
        return "reset the GPU to apply the pending MIG mode"


@dataclass(frozen=True)
class DestroyComputeInstance:
    """Destroy one compute instance."""

    gi_id: int
    ci_id: int
    name: str
    placement: Placement
    processes: tuple[Process, ...] = ()

    def describe(self) -> str:
        """Human wording."""
        ids = f"GI {self.gi_id}, CI {self.ci_id}"
        return f"destroy compute instance {self.name} at {self.placement.start} ({ids})"


@dataclass(frozen=True)
class DestroyGpuInstance:
    """Destroy one GPU instance (its compute instances are destroyed by earlier steps)."""

    gi_id: int
    name: str
    placement: Placement

    def describe(self) -> str:
        """Human wording."""
        return f"destroy GPU instance {self.name} at {self.placement.start} (GI {self.gi_id})"


@dataclass(frozen=True)
class CreateGpuInstance:
    """Create a GPU instance at an exact placement."""

    profile: GiProfile
    placement: Placement

    def describe(self) -> str:
        """Human wording."""
        return f"create {self.profile.short_name} at {self.placement.start}"


@dataclass(frozen=True)
class CreateComputeInstance:
    """Create a compute instance inside the GPU instance at `gi_placement`."""

    gi_profile: GiProfile
    gi_placement: Placement
    profile: CiProfile
    placement: Placement

    def describe(self) -> str:
        """Human wording."""
        where = f"{self.gi_profile.short_name} at {self.gi_placement.start}"
        ci = f"{self.profile.short_name} at {self.placement.start}"
        return f"create compute instance {ci} in {where}"


Step = Union[
    SetMigMode,
    ResetGpu,
    DestroyComputeInstance,
    DestroyGpuInstance,
    CreateGpuInstance,
    CreateComputeInstance,
]


@dataclass(frozen=True)
class GpuPlan:
    """The steps for one GPU, and whether its mode change still waits for a reset."""

    gpu: GpuState
    steps: tuple[Step, ...]
    reset_pending: bool = False

    @property
    def is_empty(self) -> bool:
        """Nothing to do: the GPU is in its layout."""
        return not self.steps

    @property
    def busy(self) -> tuple[DestroyComputeInstance, ...]:
        """Destroy steps that would hit instances with running processes."""
        return tuple(s for s in self.steps if isinstance(s, DestroyComputeInstance) and s.processes)


def plan_gpu(target: TargetLayout, gpu: GpuState) -> GpuPlan:
    """The ordered steps that take `gpu` to `target`."""
    mode = _mode_steps(target.mig, gpu)
    if not target.mig:
        teardown = _teardown(gpu, gpu.instances) if gpu.mig.current else ()
        return GpuPlan(gpu, (*teardown, *mode), _reset_pending(target.mig, gpu))
    existing = gpu.instances if gpu.mig.current else ()
    kept, destroy, create = _diff(gpu, target.instances, existing)
    adjust = _adjust_compute(kept, gpu)
    steps = (*mode, *destroy, *adjust[0], *create, *adjust[1])
    return GpuPlan(gpu, steps, _reset_pending(target.mig, gpu))


def _reset_pending(wanted: bool, gpu: GpuState) -> bool:
    """The wanted mode is already pending but not current: only a reset or reboot is missing."""
    return gpu.mig.current != wanted and gpu.mig.pending == wanted


def _mode_steps(wanted: bool, gpu: GpuState) -> tuple[Step, ...]:
    if gpu.mig.current == wanted and gpu.mig.pending == wanted:
        return ()
    needs_reset = gpu.architecture.mode_change_needs_reset and gpu.mig.current != wanted
    if gpu.mig.pending == wanted:
        return (ResetGpu(),) if needs_reset else ()
    return (SetMigMode(wanted), ResetGpu()) if needs_reset else (SetMigMode(wanted),)


def _teardown(gpu: GpuState, instances: tuple[GpuInstance, ...]) -> tuple[Step, ...]:
    """Each GPU instance's compute instances, then that GPU instance: a failure stays local."""
    steps: list[Step] = []
    for gi in sorted(instances, key=lambda g: g.placement):
        steps.extend(_destroy_ci(gpu, gi, ci) for ci in gi.compute)
        steps.append(_destroy_gi(gpu, gi))
    return tuple(steps)


def _destroy_ci(gpu: GpuState, gi: GpuInstance, ci: ComputeInstance) -> DestroyComputeInstance:
    name = profiles.ci_label(gpu.profiles, gi.profile_id, ci.profile_id)
    return DestroyComputeInstance(gi.id, ci.id, name, ci.placement, ci.processes)


def _destroy_gi(gpu: GpuState, gi: GpuInstance) -> DestroyGpuInstance:
    return DestroyGpuInstance(gi.id, profiles.gi_label(gpu.profiles, gi.profile_id), gi.placement)


def _diff(
    gpu: GpuState, targets: tuple[TargetInstance, ...], existing: tuple[GpuInstance, ...]
) -> tuple[list[tuple[TargetInstance, GpuInstance]], tuple[Step, ...], tuple[Step, ...]]:
    """Pair targets with existing GPU instances of the same profile and placement."""
    by_key = {(g.profile_id, g.placement): g for g in existing}
    kept = [
        (t, by_key[(t.profile.id, t.placement)])
        for t in targets
        if (t.profile.id, t.placement) in by_key
    ]
    kept_ids = {g.id for _, g in kept}
    destroy = _teardown(gpu, tuple(g for g in existing if g.id not in kept_ids))
    create: list[Step] = []
    for t in targets:
        if (t.profile.id, t.placement) not in by_key:
            create.append(CreateGpuInstance(t.profile, t.placement))
            create.extend(
                CreateComputeInstance(t.profile, t.placement, c.profile, c.placement)
                for c in t.compute
            )
    return kept, destroy, tuple(create)


def _adjust_compute(
    kept: list[tuple[TargetInstance, GpuInstance]], gpu: GpuState
) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """Destroy and create steps for compute instances of kept GPU instances."""
    destroy: list[Step] = []
    create: list[Step] = []
    for target, gi in kept:
        wanted = {(c.profile.id, c.placement) for c in target.compute}
        present = {(c.profile_id, c.placement) for c in gi.compute}
        destroy.extend(
            _destroy_ci(gpu, gi, ci)
            for ci in gi.compute
            if (ci.profile_id, ci.placement) not in wanted
        )
        create.extend(
            CreateComputeInstance(target.profile, target.placement, c.profile, c.placement)
            for c in target.compute
            if (c.profile.id, c.placement) not in present
        )
    return tuple(destroy), tuple(create)


@dataclass(frozen=True)
class MismatchedGpu:
    """A GPU named by uuid/pci/index whose model no longer has the profiles its entry names."""

    gpu: GpuState
    problem: str


UNREAD_TABLE = (
    "the driver shows no profile table while MIG is disabled (R535); "
    "apply enables MIG first, then reads the table and places the instances"
)


@dataclass(frozen=True)
class NodePlan:
    """The plan for a whole host."""

    gpus: tuple[GpuPlan, ...]
    unmanaged: tuple[GpuState, ...] = ()
    missing: tuple[GpuSpec, ...] = ()
    mismatched: tuple[MismatchedGpu, ...] = ()
    absent: tuple[GpuSpec, ...] = ()
    """Fleet entries for GPUs this host does not have (a known model or device id, or optional)."""
    unplanned: tuple[GpuState, ...] = ()
    """GPUs whose entry asks for MIG but whose profile table the driver hides until MIG is on:
    their plan holds only the mode change; the instances are planned once the table is read."""
    renamed: tuple[str, ...] = ()
    """Warnings: profile names this driver spells otherwise, resolved by their geometry."""
    unreadable: tuple[UnreadableGpu, ...] = ()
    """GPUs NVML counts but cannot read: failed, the others planned without them."""
    handed_off: tuple[GpuState, ...] = ()
    """GPUs whose entry says `managed = false` (also in `unmanaged`): left to another owner."""

    @property
    def is_empty(self) -> bool:
        """The host is exactly as the file says (and every GPU it names is present)."""
        complete = not self.missing and not self.mismatched and not self.unplanned
        complete = complete and not self.unreadable
        return complete and all(p.is_empty for p in self.gpus)

    @property
    def reset_pending(self) -> bool:
        """Some GPU only waits for a reset or reboot to reach its MIG mode."""
        return any(p.reset_pending for p in self.gpus)


def plan_node(desired: DesiredNode, state: NodeState) -> NodePlan:
    """Match entries to GPUs, resolve each GPU's layout against its own table, and plan it.

    Raises ConfigError for a file that cannot apply to this host. An identity-selected GPU whose
    model lacks the named profiles (it was replaced) is reported as mismatched, not guessed.
    """
    selection = selection_of(desired, state)
    handed_off = tuple(_gpu(state, uuid) for uuid, spec in selection.governed if not spec.managed)
    parts = [
        _plan_governed(spec, _gpu(state, uuid), desired)
        for uuid, spec in selection.governed
        if spec.managed
    ]
    incapable = [g for part in parts for g in part.unmanaged]
    if parts and len(incapable) == len(parts):
        _fail_no_mig_gpu(desired, state)
    left = {g.uuid for g in (*incapable, *handed_off)}
    unmanaged = tuple(g for g in state.gpus if g.uuid in selection.unmanaged or g.uuid in left)
    return NodePlan(
        gpus=tuple(p for part in parts for p in part.gpus),
        unmanaged=unmanaged,
        missing=selection.missing,
        absent=selection.absent,
        mismatched=tuple(m for part in parts for m in part.mismatched),
        unplanned=tuple(g for part in parts for g in part.unplanned),
        renamed=tuple(r for part in parts for r in part.renamed),
        unreadable=state.unreadable,
        handed_off=handed_off,
    )


def _gpu(state: NodeState, uuid: str) -> GpuState:
    gpu = state.by_uuid(uuid)
    assert gpu is not None
    return gpu


def _plan_governed(spec: GpuSpec, gpu: GpuState, desired: DesiredNode) -> NodePlan:
    """One governed GPU's share of the host's plan (a GPU `"all"` skips is its `unmanaged`)."""
    if not gpu.mig_capable and spec.selector.kind is SelectorKind.ALL:
        return NodePlan((), unmanaged=(gpu,))  # "all" means all MIG-capable GPUs, as mig-parted
    if spec.mig and gpu.profiles_unread:
        mode = GpuPlan(gpu, _mode_steps(True, gpu), _reset_pending(True, gpu))
        return NodePlan((mode,), unplanned=(gpu,))
    strict = desired.restore.strict_profile_names
    try:
        target = layout.resolve(spec, gpu, desired.source, strict=strict)
    except layout.ProfileOfAnotherModel as exc:
        if not spec.selector.kind.is_identity:
            raise
        return NodePlan((), mismatched=(MismatchedGpu(gpu, str(exc)),))
    return NodePlan((plan_gpu(target, gpu),), renamed=target.renamed)


def _fail_no_mig_gpu(desired: DesiredNode, state: NodeState) -> NoReturn:
    """A layout that selects GPUs, none of them MIG-capable, would succeed doing nothing."""
    names = ", ".join(sorted({g.name for g in state.gpus}))
    raise ConfigError(
        f"{desired.source}: the [[gpu]] entries select no MIG-capable GPU (GPUs here: {names})"
    )
