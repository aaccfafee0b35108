"""`writer.dump` (migrestore export): the state as a layout file that reproduces it exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Optional

import pytest

from migrestore import config, profiles, toml, writer
from migrestore.errors import ConfigError
from migrestore.model import (
    ComputeInstance,
    GpuInstance,
    GpuSpec,
    GpuState,
    MigMode,
    NodeState,
    Placement,
    ProfileTable,
)
from migrestore.selection import match

WHEN = datetime(2025, 3, 1, 12, 30, tzinfo=timezone.utc)
H100 = "NVIDIA H100 80GB HBM3"
A100_40 = "NVIDIA A100-SXM4-40GB"
A30 = "NVIDIA A30"
H200 = "NVIDIA H200"
RTX = "NVIDIA RTX PRO 6000 Blackwell Server Edition"

# A GPU instance as tests write it: (profile, start, compute) where compute is None for the
# default compute instance, else (profile, start) pairs.
Wanted = tuple[str, int, Optional[Sequence[tuple[str, int]]]]
# MIG on/off and every GPU instance as (profile id, placement, [(CI profile id, placement)]).
Layout = tuple[bool, list[tuple[int, Placement, list[tuple[int, Placement]]]]]


def compute_instances(
    table: ProfileTable, gi_profile: int, compute: Sequence[tuple[str, int]] | None
) -> tuple[ComputeInstance, ...]:
    """Compute instances as NVML would report them inside one GPU instance."""
    gi = table.gi_by_id(gi_profile)
    assert gi is not None
    if compute is None:
        default = table.default_ci(gi.id)
        assert default is not None
        return (ComputeInstance(0, default.id, default.placements[0]),)
    made = []
    for ci_id, (name, start) in enumerate(compute):
        profile = profiles.resolve_ci(table, gi, name)
        assert profile is not None, name
        placement = next(p for p in profile.placements if p.start == start)
        made.append(ComputeInstance(ci_id, profile.id, placement))
    return tuple(made)


def gpu(index: int, model: str, instances: Sequence[Wanted] = (), mig: bool = True) -> GpuState:
    """A GPU of a catalogue model holding `instances`."""
    info = profiles.find_model(model)
    assert info is not None, model
    made = []
    for gi_id, (name, start, compute) in enumerate(instances, start=1):
        profile = profiles.resolve_gi(info.table, name)
        assert profile is not None, name
        placement = next(p for p in profile.placements if p.start == start)
        cis = compute_instances(info.table, profile.id, compute)
        made.append(GpuInstance(gi_id, profile.id, placement, cis))
    return GpuState(
        index=index,
        uuid=f"GPU-{index:08x}-1111-2222-3333-444444444444",
        pci=f"00000000:{0x1B + 0x20 * index:02X}:00.0",
        name=info.name,
        minor=index,
        architecture=info.architecture,
        memory_mb=info.memory_mb,
        mig=MigMode(mig, mig),
        profiles=info.table,
        instances=tuple(made),
    )


H100_MIXED: list[Wanted] = [
    ("3g.40gb", 4, [("2c.3g.40gb", 0), ("1c.3g.40gb", 2)]),
    ("2g.20gb", 0, None),
    ("1g.10gb", 2, []),
    ("1g.10gb+me", 3, None),
]
H100_ONE_SMALL_CI: list[Wanted] = [("2g.20gb", 4, [("1c.2g.20gb", 1)]), ("4g.40gb", 0, None)]
A100_SPLIT_7G: list[Wanted] = [("7g.40gb", 0, [("4c.7g.40gb", 0), ("3c.7g.40gb", 4)])]
A30_ME: list[Wanted] = [
    ("2g.12gb+me", 0, [("1c.2g.12gb", 0), ("1c.2g.12gb", 1)]),
    ("1g.6gb", 2, None),
    ("1g.6gb", 3, []),
]
H200_REV2: list[Wanted] = [("1g.35gb", 0, None), ("1g.18gb", 2, None), ("3g.71gb", 4, None)]
RTX_GFX: list[Wanted] = [("1g.24gb", 0, None), ("2g.48gb+gfx", 6, [("1c.2g.48gb", 1)])]

STATES = {
    "h100 mixed": NodeState((gpu(0, H100, H100_MIXED), gpu(1, H100, H100_ONE_SMALL_CI))),
    "mixed models": NodeState(
        (
            gpu(0, A100_40, A100_SPLIT_7G),
            gpu(1, A30, A30_ME),
            gpu(2, H200, H200_REV2),
            gpu(3, RTX, RTX_GFX),
        )
    ),
    "mig off and empty": NodeState((gpu(0, H100, mig=False), gpu(1, A30), gpu(2, H100, []))),
    "same layout per model": NodeState(
        (gpu(0, H100, H100_MIXED), gpu(1, H100, H100_MIXED), gpu(2, A30, A30_ME)),
    ),
    "layouts differ within a model": NodeState(
        (gpu(0, H100, H100_MIXED), gpu(1, H100, H100_ONE_SMALL_CI), gpu(2, A30, A30_ME)),
    ),
    "no gpus": NodeState(()),
}


def observed(state: GpuState) -> Layout:
    """What a GPU has: MIG mode and every (GI profile, placement, CIs)."""
    instances = [
        (gi.profile_id, gi.placement, sorted((c.profile_id, c.placement) for c in gi.compute))
        for gi in state.instances
    ]
    return state.mig.current, sorted(instances)


def resolved(spec: GpuSpec, state: GpuState) -> Layout:
    """What an exported entry describes for one GPU, resolved against that GPU's own table."""
    table = state.profiles
    instances = []
    for wanted in spec.instances:
        assert wanted.count == 1
        gi = profiles.resolve_gi(table, wanted.profile)
        assert gi is not None
        placement = next(p for p in gi.placements if p.start == wanted.placement)
        if wanted.compute is None:
            default = table.default_ci(gi.id)
            assert default is not None
            cis = [(default.id, default.placements[0])]
        else:
            cis = []
            for c in wanted.compute:
                ci = profiles.resolve_ci(table, gi, c.profile)
                assert ci is not None
                cis.append((ci.id, next(p for p in ci.placements if p.start == c.placement)))
        instances.append((gi.id, placement, sorted(cis)))
    return spec.mig, sorted(instances)


def assert_round_trip(state: NodeState, select_by: str) -> None:
    """parse(dump(state)) governs every GPU with an entry describing exactly its state."""
    desired = config.parse(writer.dump(state, select_by=select_by, host="h", when=WHEN), "export")
    selection = match(desired, state)
    assert selection.unmanaged == ()
    assert selection.missing == ()
    for gpu_state in state.gpus:
        spec = selection.spec_for(gpu_state.uuid)
        assert spec is not None
        assert resolved(spec, gpu_state) == observed(gpu_state)


@pytest.mark.parametrize("select_by", writer.SELECT_BY)
@pytest.mark.parametrize("name", STATES)
def test_round_trip(name: str, select_by: str) -> None:
    """Every state exports to a file that describes it exactly, whatever the selectors."""
    assert_round_trip(STATES[name], select_by)


def test_golden_output() -> None:
    """The exported text: header, one commented entry per GPU, compute only where needed."""
    state = NodeState((gpu(0, H100, H100_ONE_SMALL_CI), gpu(1, A30, mig=False)), "580.159.04")
    assert writer.dump(state, host="dgx01", when=WHEN) == (
        "# MIG layout of host dgx01, exported by `migrestore export`\n"
        "# at 2025-03-01T12:30:00+00:00 (NVIDIA driver 580.159.04). "
        "`migrestore apply` restores it;\n"
        "# `migrestore verify` against this file exits 0 while the GPUs keep this layout.\n"
        "version = 2\n"  # geometry is a version 2 key
        "\n"
        f"# GPU 0: {H100}, 00000000:1B:00.0, GPU-00000000-1111-2222-3333-444444444444\n"
        "[[gpu]]\n"
        'select = { uuid = "GPU-00000000-1111-2222-3333-444444444444" }\n'
        "mig = true\n"
        "\n"
        "  [[gpu.instance]]\n"
        '  profile = "4g.40gb"\n'
        "  placement = 0\n"
        "  geometry = { slices = 4, size = 4, memory-mib = 40448 }\n"
        "\n"
        "  [[gpu.instance]]\n"
        '  profile = "2g.20gb"\n'
        "  placement = 4\n"
        "  geometry = { slices = 2, size = 2, memory-mib = 20096 }\n"
        "  compute = [\n"
        '    { profile = "1c.2g.20gb", placement = 1 },\n'
        "  ]\n"
        "\n"
        f"# GPU 1: {A30}, 00000000:3B:00.0, GPU-00000001-1111-2222-3333-444444444444\n"
        "[[gpu]]\n"
        'select = { uuid = "GPU-00000001-1111-2222-3333-444444444444" }\n'
        "mig = false\n"
    )


def entries(text: str) -> list[dict[str, object]]:
    """The [[gpu]] tables of an exported file."""
    gpus = toml.loads(text)["gpu"]
    assert isinstance(gpus, list)
    return gpus


class TestByModel:
    """--by-model: one entry per model when all its GPUs share a layout."""

    def test_one_entry_per_model(self) -> None:
        """GPUs of one model with one layout collapse into a model entry."""
        text = writer.dump(STATES["same layout per model"], select_by="model", host="h", when=WHEN)
        selects = [entry["select"] for entry in entries(text)]
        assert selects == [{"model": H100}, {"model": A30}]
        assert f"# {H100}: GPUs 0, 1\n" in text

    def test_differing_layouts_fall_back_to_uuid(self) -> None:
        """A model whose GPUs differ is exported per UUID, with a comment saying why."""
        state = STATES["layouts differ within a model"]
        text = writer.dump(state, select_by="model", host="h", when=WHEN)
        selects = [entry["select"] for entry in entries(text)]
        assert selects == [
            {"uuid": state.gpus[0].uuid},
            {"uuid": state.gpus[1].uuid},
            {"model": A30},
        ]
        assert f"# {H100}: layouts differ, so each GPU is selected by UUID.\n" in text

    def test_quotes_in_a_model_name(self) -> None:
        """Names are escaped as TOML strings and still select their GPUs."""
        odd = gpu(0, A30, A30_ME)
        state = NodeState((replace(odd, name='Odd "GPU" \\ name'),))
        assert_round_trip(state, "model")


class TestHeaderAndEdges:
    """What the file says about where it came from, and unusual states."""

    def test_simulated_host_is_marked(self) -> None:
        """An export from the simulator says so."""
        state = NodeState((gpu(0, A30),), simulated=True)
        header = writer.dump(state, host="sim", when=WHEN).splitlines()[:4]
        assert header[0] == "# MIG layout of host sim (SIMULATED), exported by `migrestore export`"
        assert header[3].startswith("# SIMULATED: these GPUs come from the migrestore simulator")

    def test_real_host_is_not_marked(self) -> None:
        """An export from real GPUs does not mention the simulator."""
        assert "SIMULATED" not in writer.dump(STATES["h100 mixed"], host="dgx", when=WHEN)

    def test_defaults_to_this_host_and_now(self) -> None:
        """Without host and time, the header names this machine and a current UTC time."""
        text = writer.dump(NodeState(()))
        assert text.startswith("# MIG layout of host ")
        assert f"# at {datetime.now(timezone.utc).year}-" in text

    def test_pending_mode_is_commented(self) -> None:
        """A MIG mode change waiting for a reset is noted, and the pending (asked-for) mode is
        exported, so `verify` against the export reports the pending reset, not drift."""
        pending = replace(gpu(0, A30), mig=MigMode(current=False, pending=True))
        text = writer.dump(NodeState((pending,)), host="h", when=WHEN)
        assert "# MIG mode on is pending a GPU reset.\nmig = true\n" in text

    def test_profile_missing_from_the_table_is_exported_by_id(self) -> None:
        """A GPU instance whose profile the GPU's table lacks is written by numeric id."""
        odd = GpuInstance(1, 99, Placement(0, 1), (ComputeInstance(0, 5, Placement(0, 1)),))
        state = NodeState((replace(gpu(0, A30), instances=(odd,)),))
        instance = entries(writer.dump(state, host="h", when=WHEN))[0]["instance"]
        assert instance == [
            {"profile": 99, "placement": 0, "compute": [{"profile": 5, "placement": 0}]}
        ]

    def test_unknown_select_by(self) -> None:
        """Selecting by anything but uuid, index or model is refused."""
        with pytest.raises(ConfigError, match="cannot select GPUs by 'serial'"):
            writer.dump(NodeState(()), select_by="serial")
