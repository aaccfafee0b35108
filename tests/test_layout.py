"""Resolving [[gpu]] entries against one GPU's own profile table."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migrestore import layout, profiles
from migrestore.errors import ConfigError
from migrestore.model import (
    ComputeSpec,
    GpuInstance,
    GpuSpec,
    GpuState,
    InstanceSpec,
    MigMode,
    Placement,
    Selector,
    SelectorKind,
    TargetLayout,
)
from migrestore.offline import modelled_gpu

ALL = Selector(SelectorKind.ALL)


def gpu(model: str) -> GpuState:
    """A modelled GPU with MIG on and nothing on it."""
    info = profiles.find_model(model)
    assert info is not None
    return replace(modelled_gpu(info), mig=MigMode(True, True))


def spec(*instances: InstanceSpec) -> GpuSpec:
    """An `all` entry with these instances."""
    return GpuSpec(ALL, True, tuple(instances), "gpu[0]")


def inst(
    profile: str | int, placement: int | None = None, count: int = 1, **kw: object
) -> InstanceSpec:
    """An instance entry at gpu[0].instance[0]."""
    return InstanceSpec(profile, placement, count, where="gpu[0].instance[0]", **kw)  # type: ignore[arg-type]


def starts(target: TargetLayout) -> list[tuple[str, int]]:
    """(profile, start) of every target instance."""
    return [(t.profile.short_name, t.placement.start) for t in target.instances]


def test_profile_by_short_full_and_numeric_id() -> None:
    """`3g.40gb`, `MIG 3g.40gb` and 9 name the same profile."""
    h100 = gpu("NVIDIA H100 80GB HBM3")
    for name in ("3g.40gb", "MIG 3g.40gb", 9, "9"):
        target = layout.resolve(spec(inst(name, 4)), h100, "f.toml")
        assert starts(target) == [("3g.40gb", 4)]


def test_names_resolve_per_gpu_model() -> None:
    """The same short size resolves against each GPU's own table (no GPU-0 assumptions)."""
    with pytest.raises(ConfigError) as err:
        layout.resolve(spec(inst("3g.40gb")), gpu("NVIDIA A100-SXM4-40GB"), "f.toml")
    assert 'gpu[0].instance[0].profile: unknown profile "3g.40gb" for NVIDIA A100-SXM4-40GB' in str(
        err.value
    )
    assert "3g.20gb" in str(err.value)
    assert str(err.value).startswith("f.toml: ")


def test_auto_placement_is_deterministic_and_order_free() -> None:
    """Without placements the search finds the same valid layout whatever the entry order."""
    h100 = gpu("NVIDIA H100 80GB HBM3")
    one = layout.resolve(
        spec(inst("1g.10gb", count=2), inst("2g.20gb"), inst("3g.40gb")), h100, "f"
    )
    two = layout.resolve(
        spec(inst("3g.40gb"), inst("2g.20gb"), inst("1g.10gb", count=2)), h100, "f"
    )
    expected = [("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)]
    assert starts(one) == expected
    assert starts(two) == expected


def test_auto_placement_fills_the_famous_a100_order() -> None:
    """1g,1g,2g,3g (which fails in that creation order without placements) gets a valid layout."""
    a100 = gpu("NVIDIA A100-SXM4-40GB")
    target = layout.resolve(
        spec(inst("1g.5gb"), inst("1g.5gb"), inst("2g.10gb"), inst("3g.20gb")), a100, "f"
    )
    assert starts(target) == [("2g.10gb", 0), ("1g.5gb", 2), ("1g.5gb", 3), ("3g.20gb", 4)]


def test_auto_placement_keeps_existing_instances() -> None:
    """An unplaced instance keeps the placement it already has on the GPU."""
    h100 = replace(gpu("NVIDIA H100 80GB HBM3"), instances=(GpuInstance(12, 19, Placement(5, 1)),))
    target = layout.resolve(spec(inst("1g.10gb")), h100, "f")
    assert starts(target) == [("1g.10gb", 5)]


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        (
            (inst("3g.40gb", 2),),
            "gpu[0].instance[0].placement: placement 2 not allowed for 3g.40gb; allowed: 0, 4",
        ),
        (
            (inst("4g.40gb", 0), inst("3g.40gb", 0)),
            "placement 0:4 overlaps gpu[0].instance[0] at 0:4",
        ),
        ((inst("1g.10gb", count=8),), "8 x 1g.10gb asked, at most 7 fit"),
        ((inst("7g.80gb"), inst("1g.10gb")), "7g.80gb + 1g.10gb do not fit"),
        ((inst("1g.10gb+me"), inst("1g.10gb+me")), "2 x 1g.10gb+me asked, at most 1 fit"),
    ],
)
def test_impossible_layouts_are_config_errors(
    instances: tuple[InstanceSpec, ...], message: str
) -> None:
    """Overlap, capacity, disallowed placements and impossible sums each name the problem."""
    with pytest.raises(ConfigError) as err:
        layout.resolve(spec(*instances), gpu("NVIDIA H100 80GB HBM3"), "f.toml")
    assert message in str(err.value)
    assert "on GPU 0 (NVIDIA H100 80GB HBM3" in str(err.value)


def test_compute_default_none_and_explicit() -> None:
    """compute omitted -> one full CI; [] -> none; listed -> those, placed without overlap."""
    h100 = gpu("NVIDIA H100 80GB HBM3")
    default = layout.resolve(spec(inst("3g.40gb", 0)), h100, "f").instances[0].compute
    assert [(c.profile.short_name, c.placement) for c in default] == [("3g.40gb", Placement(0, 3))]
    empty = layout.resolve(spec(inst("3g.40gb", 0, compute=())), h100, "f").instances[0].compute
    assert empty == ()
    listed = (ComputeSpec("2c.3g.40gb", where="c0"), ComputeSpec("1c.3g.40gb", where="c1"))
    got = layout.resolve(spec(inst("3g.40gb", 0, compute=listed)), h100, "f").instances[0].compute
    assert [(c.profile.short_name, c.placement) for c in got] == [
        ("2c.3g.40gb", Placement(0, 2)),
        ("1c.3g.40gb", Placement(2, 1)),
    ]


def test_unknown_compute_profile_lists_valid_ones() -> None:
    """A compute profile that the GPU instance lacks names the valid ones."""
    bad = (ComputeSpec("5c.3g.40gb", where="gpu[0].instance[0].compute[0]"),)
    with pytest.raises(ConfigError) as err:
        layout.resolve(spec(inst("3g.40gb", 0, compute=bad)), gpu("NVIDIA H100 80GB HBM3"), "f")
    assert (
        'unknown compute profile "5c.3g.40gb" for 3g.40gb; known: 1c.3g.40gb, 2c.3g.40gb, 3g.40gb'
        in str(err.value)
    )


def test_mig_off_target() -> None:
    """`mig = false` resolves to MIG off with no instances."""
    target = layout.resolve(GpuSpec(ALL, False, (), "gpu[0]"), gpu("NVIDIA A30"), "f")
    assert not target.mig
    assert target.instances == ()


def test_compute_list_in_any_order_is_placed_by_search() -> None:
    """The issue's own example, 1c before 2c, fits: the search places the larger one first."""
    listed = (ComputeSpec("1c.3g.40gb", where="c0"), ComputeSpec("2c.3g.40gb", where="c1"))
    got = layout.resolve(
        spec(inst("3g.40gb", 0, compute=listed)), gpu("NVIDIA H100 80GB HBM3"), "f"
    )
    assert [(c.profile.short_name, c.placement.start) for c in got.instances[0].compute] == [
        ("2c.3g.40gb", 0),
        ("1c.3g.40gb", 2),
    ]


def test_typo_is_a_config_error_but_another_models_profile_is_a_mismatch() -> None:
    """A name no model has is a typo; a name another model has means the GPU is another model."""
    a100 = gpu("NVIDIA A100-SXM4-80GB")
    with pytest.raises(ConfigError) as typo:
        layout.resolve(spec(inst("3g.40g")), a100, "f")
    assert not isinstance(typo.value, layout.ProfileOfAnotherModel)
    with pytest.raises(layout.ProfileOfAnotherModel):
        layout.resolve(spec(inst("3g.71gb")), a100, "f")
