"""The benchmark code runs at a tiny scale, and its floors count what the scenarios say.

No timing is asserted here: the targets live in bench/, these only keep the harness working.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import catalogue, floor, layouts, run, table
from bench.scenario import LAYOUTS, Run, Scenario, Versus, all_scenarios
from bench.versus import VersusRow

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def _targets(file: str, models: list[catalogue.ModelData]) -> tuple[layouts.GpuLayout | None, ...]:
    return layouts.read(LAYOUTS / file, models)


def test_every_scenario_file_loads_and_its_layouts_resolve() -> None:
    """Each scenario names known GPUs and layouts the benchmark can read for every GPU."""
    for s in all_scenarios():
        models = [catalogue.model(name) for name in s.models]
        assert all(t is not None for t in layouts.read(s.layout, models)), s.name
        assert run.expected_start(s)


def test_cold_boot_minimum_is_one_mode_change_and_every_create() -> None:
    """An H100 that lost its mode needs SetMigMode, 5 GI creates and 6 CI creates (demo layout)."""
    models = [catalogue.model(H100)]
    start = layouts.rebooted(
        layouts.applied(layouts.fresh(models), _targets("h100-mixed.toml", models))
    )
    calls = floor.apply(start, _targets("h100-mixed.toml", models), "580.159.04")
    assert calls[floor.SET_MODE] == 1
    assert calls[floor.CREATE_GI] == 5
    assert calls[floor.CREATE_CI] == 6
    assert calls[floor.RESET] == 0


def test_ampere_first_enable_costs_one_reset_for_all_pending_gpus() -> None:
    """Two fresh A100s: two mode changes, one reset batch, nothing destroyed."""
    models = [catalogue.model(A100)] * 2
    calls = floor.apply(layouts.fresh(models), _targets("a100-mixed.toml", models), "580.159.04")
    assert (calls[floor.SET_MODE], calls[floor.RESET]) == (2, 1)
    assert calls[floor.DESTROY_GI] == calls[floor.DESTROY_CI] == 0


def test_one_misplaced_instance_costs_two_destroys_and_two_creates() -> None:
    """The instance at the wrong slice goes (CI, then GI) and comes back at the right one."""
    models = [catalogue.model(H100)] * 8
    start = layouts.applied(layouts.fresh(models), _targets("h100-exact-drifted.toml", models))
    calls = floor.apply(start, _targets("h100-exact.toml", models), "580.159.04")
    mutating = {f: n for f, n in calls.items() if floor.is_mutating(f)}
    assert mutating == {
        floor.DESTROY_CI: 1,
        floor.DESTROY_GI: 1,
        floor.CREATE_GI: 1,
        floor.CREATE_CI: 1,
    }


def test_in_layout_verify_reads_but_changes_nothing() -> None:
    """A host in layout: verify's floor has no mutating call and reads each GPU once."""
    models = [catalogue.model("NVIDIA H200")] * 8
    start = layouts.applied(layouts.fresh(models), _targets("h200-mixed.toml", models))
    calls = floor.minimum("verify", start, _targets("h200-mixed.toml", models), "580.159.04")
    assert floor.split(calls)[0] == 0
    assert calls["nvmlDeviceGetHandleByIndex"] == 8
    assert calls["nvmlDeviceGetGpuInstanceProfileInfo"] == 18


def test_a_tiny_scenario_is_measured_end_to_end(tmp_path: Path) -> None:
    """One H200, prepared and verified through real migrestore processes, latency off."""
    tiny = Scenario(
        name="tiny",
        title="one H200 in layout",
        gpus=(("NVIDIA H200", 1),),
        layout=LAYOUTS / "h200-mixed.toml",
        prepare=("apply h200-mixed.toml",),
        runs=(Run("verify", 0),),
        repetitions=1,
        quick_repetitions=1,
    )
    args = argparse.Namespace(scale=0.0, repetitions=None, quick=True, profile=False, nice=0)
    [row], [] = run.measure_scenario(tiny, tmp_path, args)
    assert row.correct, row.stderr
    assert row.mutating == (0, 0)
    assert row.reads[0] >= row.reads[1] > 0
    report = table.Report((row,), (), 0.01, 0.0, True, (0.0, 0.0))
    assert "tiny verify" in table.text(report)
    assert json.loads(json.dumps(table.as_json(report)))["rows"][0]["verb"] == "verify"


def _tiny_versus(verbs: tuple[str, ...]) -> Scenario:
    return Scenario(
        name="tiny-versus",
        title="one H200 in layout, against the pynvml floor",
        gpus=(("NVIDIA H200", 1),),
        layout=LAYOUTS / "h200-mixed.toml",
        prepare=("apply h200-mixed.toml",),
        runs=(),
        repetitions=2,
        quick_repetitions=2,
        versus=tuple(Versus(verb, 1.15) for verb in verbs),
    )


def test_the_pynvml_floor_script_makes_exactly_migrestores_reads(tmp_path: Path) -> None:
    """On one H200 in layout, the floor script's NVML calls equal migrestore's, verb by verb."""
    args = argparse.Namespace(scale=0.0, repetitions=None, quick=True, profile=False, nice=0)
    [], rows = run.measure_scenario(
        _tiny_versus(("verify", "plan", "status", "doctor")), tmp_path, args
    )
    for row in rows:
        assert row.exit_codes == row.floor_exit_codes == (0, 0), row.stderr
        assert row.calls["nvmlGpuInstanceGetInfo"] == 3, row.verb  # the layout's 3 GIs were read
        assert row.call_differences() == [], row.verb
        assert row.correct
    status = next(r for r in rows if r.verb == "status")
    verify = next(r for r in rows if r.verb == "verify")
    assert status.calls["nvmlDeviceGetMigDeviceHandleByIndex"] == 4  # one per compute instance
    assert "nvmlDeviceGetMigDeviceHandleByIndex" not in verify.calls
    report = table.Report((), (), 0.01, 0.0, True, (0.0, 0.0), tuple(rows))
    assert "tiny-versus verify" in table.text(report)
    assert json.loads(json.dumps(table.as_json(report)))["versus_pynvml"][0]["same_calls"]


def test_a_versus_row_with_other_calls_is_not_correct() -> None:
    """A floor script that read one MIG mode fewer than migrestore makes the row a failure."""
    row = VersusRow(
        scenario="s",
        verb="verify",
        gpus=1,
        target=1.15,
        expect=0,
        walls=(0.2, 0.3),
        floor_walls=(0.2, 0.2),
        cpus=(0.1, 0.1),
        floor_cpus=(0.1, 0.1),
        exit_codes=(0, 0),
        floor_exit_codes=(0, 0),
        calls={"nvmlDeviceGetMigMode": 2},
        floor_calls={"nvmlDeviceGetMigMode": 1},
    )
    assert row.call_differences() == [("nvmlDeviceGetMigMode", 2, 1)]
    assert not row.correct
    assert row.ratio == 1.25
    assert not row.met
    text = table.text(table.Report((), (), 0.01, 1.0, False, (0.0, 0.0), (row,)))
    assert "NOT MET" in text
    assert "nvmlDeviceGetMigMode migrestore 2, pynvml script 1" in text
