"""Property: on every simulated profile table, random valid layouts are restored from any start."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrestore import profiles, simulator
from migrestore.model import GiProfile, Placement, ProfileTable
from migrestore.profiles import ModelInfo

from .simhost import Host, make_host


def one_model_per_table() -> list[str]:
    """The first model of each distinct profile table, in catalogue order.

    Boards that share a chip's table (`table_from` in the catalogue: the A800s, the H800s, the
    H200 NVL...) would only repeat the same layouts.
    """
    seen: set[ProfileTable] = set()
    names = []
    for model in profiles.catalogue():
        if model.table not in seen:
            seen.add(model.table)
            names.append(model.name)
    return names


MODELS = one_model_per_table()


def expected_gi_id(model: ModelInfo, placement: Placement) -> int:
    """The documented rule: id = base + start/size, base 0/1/3/7 for a whole/half/quarter/eighth."""
    share = model.placement_units // placement.size
    base = {1: 0, 2: 1, 4: 3, 8: 7}[share]
    return base + placement.start // placement.size


@st.composite
def layouts(
    draw: st.DrawFn, model: ModelInfo
) -> list[tuple[GiProfile, Placement, list[str] | None]]:
    """A random valid layout: GPU instances at free placements, each with default or split CIs."""
    chosen: list[tuple[GiProfile, Placement, list[str] | None]] = []
    for _ in range(draw(st.integers(0, 7))):
        options = [
            (gi, p)
            for gi in model.table.gi
            for p in gi.placements
            if profiles.fits(p, [c[1] for c in chosen])
            and sum(1 for c in chosen if c[0] == gi) < gi.instances
            and not (gi.is_media_extension and any(c[0].is_media_extension for c in chosen))
            and _media_compatible(gi, [c[0] for c in chosen])
        ]
        if not options:
            break
        gi, placement = draw(st.sampled_from(options))
        chosen.append((gi, placement, draw(_compute(model, gi))))
    return chosen


def _media_compatible(gi: GiProfile, others: list[GiProfile]) -> bool:
    """A `+me.all` instance tolerates only `-me` instances beside it."""
    group = [gi, *others]
    owners = [g for g in group if g.takes_all_media]
    return not owners or (
        len(owners) == 1 and all(g.has_no_media for g in group if g not in owners)
    )


def _compute(model: ModelInfo, gi: GiProfile) -> st.SearchStrategy[list[str] | None]:
    """Default compute (None), none, or a list of CI profiles that fits by size."""
    cis = model.table.ci_for(gi.id)
    smallest = [c.short_name for c in cis if c.slices == 1]
    splits = st.just(smallest[:1] * min(gi.slices, 2)) if smallest else st.just([])
    return st.one_of(st.none(), st.just([]), splits)


def toml(layout: list[tuple[GiProfile, Placement, list[str] | None]]) -> str:
    """The layout file for `select = "all"`."""
    lines = ["version = 1", "[[gpu]]", 'select = "all"']
    for gi, placement, compute in layout:
        lines += [
            "[[gpu.instance]]",
            f'profile = "{gi.short_name}"',
            f"placement = {placement.start}",
        ]
        if compute is not None:
            lines.append("compute = [" + ", ".join(f'"{c}"' for c in compute) + "]")
    return "\n".join(lines) + "\n"


def observed(host: Host) -> list[list[tuple[str, int, int, int]]]:
    """(profile, start, size, GI id) of every instance on every GPU."""
    gpus = json.loads(host.run("status", "--json").out)["gpus"]
    return [
        [
            (i["profile"], i["placement"]["start"], i["placement"]["size"], i["id"])
            for i in g["instances"]
        ]
        for g in gpus
    ]


def check_restored(
    host: Host, model: ModelInfo, layout: list[tuple[GiProfile, Placement, list[str] | None]]
) -> None:
    """apply succeeds, verify is 0, and every instance sits at its placement with the rule's id."""
    result = host.run("apply")
    assert result.code == 0, result.out + result.err
    assert host.run("verify").code == 0
    want = sorted((gi.short_name, p.start, p.size, expected_gi_id(model, p)) for gi, p, _ in layout)
    for gpu in observed(host):
        assert sorted(gpu) == want


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_layouts_converge_from_every_start(name: str, data: st.DataObject) -> None:
    """From MIG off, from another layout and after a reboot, apply reaches the layout exactly."""
    model = profiles.find_model(name)
    assert model is not None
    first = data.draw(layouts(model), label="first")
    second = data.draw(layouts(model), label="second")
    with tempfile.TemporaryDirectory() as directory:
        host = make_host(Path(directory), (name, 2), layout=toml(first))
        check_restored(host, model, first)
        host.write_layout(toml(second))
        check_restored(host, model, second)
        simulator.reboot(host.state)
        check_restored(host, model, second)
