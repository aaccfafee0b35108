"""The pure planner: minimal, ordered steps from a GPU's state to its target layout."""

from __future__ import annotations

from dataclasses import replace

from migrestore import layout, profiles
from migrestore.model import (
    ComputeInstance,
    GpuInstance,
    GpuSpec,
    GpuState,
    InstanceSpec,
    MigMode,
    Placement,
    Process,
    Selector,
    SelectorKind,
    TargetLayout,
)
from migrestore.offline import modelled_gpu
from migrestore.plan import (
    CreateComputeInstance,
    CreateGpuInstance,
    DestroyComputeInstance,
    DestroyGpuInstance,
    ResetGpu,
    SetMigMode,
    plan_gpu,
)

ALL = Selector(SelectorKind.ALL)


def gpu(model: str, mig: MigMode, *instances: GpuInstance) -> GpuState:
    """A modelled GPU in a given state."""
    info = profiles.find_model(model)
    assert info is not None
    return replace(modelled_gpu(info), mig=mig, instances=instances)


def target(g: GpuState, *instances: tuple[str, int], mig: bool = True) -> TargetLayout:
    """The resolved layout of `instances` (profile, start) with default compute instances."""
    specs = tuple(InstanceSpec(p, s, where=f"i{n}") for n, (p, s) in enumerate(instances))
    return layout.resolve(GpuSpec(ALL, mig, specs, "gpu[0]"), g, "f")


def kinds(steps: tuple[object, ...]) -> list[str]:
    """Step class names, in order."""
    return [type(s).__name__ for s in steps]


ON = MigMode(True, True)
OFF = MigMode(False, False)
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def test_hopper_cold_boot_enables_and_creates_without_reset() -> None:
    """Hopper lost MIG mode: enable it (no reset), then GPU instance, then its compute instance."""
    g = gpu(H100, OFF)
    plan = plan_gpu(target(g, ("3g.40gb", 4), ("4g.40gb", 0)), g)
    assert kinds(plan.steps) == [
        "SetMigMode",
        "CreateGpuInstance",
        "CreateComputeInstance",
        "CreateGpuInstance",
        "CreateComputeInstance",
    ]
    assert plan.steps[1] == CreateGpuInstance(g.profiles.gi_by_id(5), Placement(0, 4))  # type: ignore[arg-type]
    assert not plan.reset_pending


def test_ampere_mode_change_needs_a_reset() -> None:
    """Ampere with MIG off: set the mode, then reset, then create."""
    g = gpu(A100, OFF)
    assert kinds(plan_gpu(target(g, ("7g.80gb", 0)), g).steps)[:2] == ["SetMigMode", "ResetGpu"]


def test_ampere_pending_enable_needs_only_the_reset() -> None:
    """A pending enable is not set again; only the reset is missing, and the plan says so."""
    g = gpu(A100, MigMode(False, True))
    plan = plan_gpu(target(g, ("7g.80gb", 0)), g)
    assert plan.steps[0] == ResetGpu()
    assert plan.reset_pending


def test_gpu_in_layout_has_an_empty_plan() -> None:
    """Profile, placement and compute instances all match: nothing to do."""
    ci = ComputeInstance(0, 2, Placement(0, 3), "MIG-x")
    g = gpu(H100, ON, GpuInstance(2, 9, Placement(4, 4), (ci,)))
    assert plan_gpu(target(g, ("3g.40gb", 4)), g).is_empty


def test_one_differing_instance_is_the_only_one_touched() -> None:
    """Keep matching instances; replace only the one that differs, CIs destroyed before its GI."""
    keep = GpuInstance(2, 9, Placement(4, 4), (ComputeInstance(0, 2, Placement(0, 3)),))
    wrong = GpuInstance(3, 14, Placement(0, 2), (ComputeInstance(0, 1, Placement(0, 2)),))
    g = gpu(H100, ON, keep, wrong)
    plan = plan_gpu(target(g, ("3g.40gb", 4), ("1g.10gb", 0)), g)
    assert plan.steps[:2] == (
        DestroyComputeInstance(3, 0, "2g.20gb", Placement(0, 2)),
        DestroyGpuInstance(3, "2g.20gb", Placement(0, 2)),
    )
    assert kinds(plan.steps[2:]) == ["CreateGpuInstance", "CreateComputeInstance"]
    assert all(getattr(s, "gi_id", None) != 2 for s in plan.steps)


def test_compute_only_change_keeps_the_gpu_instance() -> None:
    """A GPU instance with the wrong compute instances keeps its GPU instance."""
    g = gpu(H100, ON, GpuInstance(2, 9, Placement(4, 4), (ComputeInstance(0, 0, Placement(0, 1)),)))
    plan = plan_gpu(target(g, ("3g.40gb", 4)), g)
    assert kinds(plan.steps) == ["DestroyComputeInstance", "CreateComputeInstance"]
    create = plan.steps[1]
    assert isinstance(create, CreateComputeInstance)
    assert create.gi_placement == Placement(4, 4)


def test_mig_off_tears_down_then_disables() -> None:
    """`mig = false` on Ampere: compute instances, GPU instances, mode off, reset."""
    g = gpu(A100, ON, GpuInstance(1, 5, Placement(0, 4), (ComputeInstance(0, 3, Placement(0, 4)),)))
    plan = plan_gpu(target(g, mig=False), g)
    assert kinds(plan.steps) == [
        "DestroyComputeInstance",
        "DestroyGpuInstance",
        "SetMigMode",
        "ResetGpu",
    ]
    assert plan.steps[2] == SetMigMode(False)


def test_busy_instances_are_flagged() -> None:
    """Destroying an instance with processes shows in the plan (apply refuses without --force)."""
    ci = ComputeInstance(0, 1, Placement(0, 2), processes=(Process(42, "python"),))
    g = gpu(H100, ON, GpuInstance(3, 14, Placement(0, 2), (ci,)))
    plan = plan_gpu(target(g, ("1g.10gb", 0)), g)
    assert [s.processes for s in plan.busy] == [(Process(42, "python"),)]


def test_teardown_is_local_to_each_gpu_instance() -> None:
    """Each GPU instance loses its compute instances and then itself, before the next one."""
    first = GpuInstance(3, 14, Placement(0, 2), (ComputeInstance(0, 1, Placement(0, 2)),))
    second = GpuInstance(5, 14, Placement(4, 2), (ComputeInstance(0, 1, Placement(0, 2)),))
    g = gpu(H100, ON, first, second)
    plan = plan_gpu(target(g, mig=False), g)
    assert [(type(s).__name__, getattr(s, "gi_id", None)) for s in plan.steps[:4]] == [
        ("DestroyComputeInstance", 3),
        ("DestroyGpuInstance", 3),
        ("DestroyComputeInstance", 5),
        ("DestroyGpuInstance", 5),
    ]
