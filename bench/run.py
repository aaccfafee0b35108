"""`python -m bench.run`: measure every scenario and print the table (or `--json`).

For each scenario: a simulated host is created and prepared with the latency model off (its
state file is then saved), the latency model is switched on and the call counters zeroed, and
each run is repeated from that saved state, so every repetition starts from the same host.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import catalogue, floor, importtime, layouts, measure, profiling
from bench.rows import Row
from bench.scenario import LAYOUTS, Run, Scenario, all_scenarios
from bench.table import Report, as_json, text
from bench.versus import VersusRow, measure_versus
from migrestore import simulator

IMPORT_LAYOUT = "h200-mixed.toml"


def _models(s: Scenario) -> list[catalogue.ModelData]:
    return [catalogue.model(name) for name in s.models]


def expected_start(s: Scenario) -> tuple[layouts.Gpu, ...]:
    """The host's state after the scenario's preparation, by the benchmark's own reckoning."""
    models = _models(s)
    gpus = layouts.fresh(models)
    for step in s.prepare:
        if step == "reboot":
            gpus = layouts.rebooted(gpus)
        else:
            gpus = layouts.applied(gpus, layouts.read(LAYOUTS / step.split()[1], models))
    return gpus


def prepare(s: Scenario, state: Path) -> None:
    """Create the simulated host and run the preparation steps (latency model off)."""
    simulator.init_host(state, list(s.gpus), driver=s.driver)
    for step in s.prepare:
        if step == "reboot":
            simulator.reboot(state)
            continue
        action, layout = step.split()
        if action != "apply":
            raise ValueError(f"{s.name}: unknown preparation step {step!r}")
        done = measure.migrestore(state, LAYOUTS / layout, ["apply"])
        if done.exit_code != 0:
            raise RuntimeError(f"{s.name}: preparation `{step}` failed:\n{done.stderr}")


def _restore(state: Path, snapshot: bytes) -> None:
    temporary = state.with_name(state.name + ".bench")
    temporary.write_bytes(snapshot)
    os.replace(temporary, state)


def _with_reset(calls: dict[str, int]) -> tuple[dict[str, int], tuple[str, ...]]:
    """Resets are not NVML calls: count them from the re-initialisation that follows each one."""
    if floor.RESET in calls or calls.get("nvmlInit", 0) <= 1:
        return calls, ()
    resets = calls["nvmlInit"] - 1
    note = f"{resets} reset(s) inferred from {calls['nvmlInit']} nvmlInit calls"
    return {**calls, floor.RESET: resets}, (note,)


def measure_run(
    s: Scenario, run: Run, state: Path, snapshot: bytes, args: argparse.Namespace, repetitions: int
) -> Row:
    """Repeat one run from the saved state; count its calls; compare with the floor."""
    models = _models(s)
    minimum = floor.minimum(
        run.verb_name, expected_start(s), layouts.read(s.layout, models), s.driver
    )
    samples = []
    for _ in range(repetitions):
        _restore(state, snapshot)
        samples.append(measure.migrestore(state, s.layout, run.argv, args.nice))
    calls, notes = _with_reset(simulator.counters(state))
    return Row(
        scenario=s.name,
        title=s.title,
        verb=run.verb,
        gpus=len(models),
        expect=run.expect,
        walls=tuple(x.wall for x in samples),
        cpus=tuple(x.cpu for x in samples),
        exit_codes=tuple(x.exit_code for x in samples),
        max_rss_kib=max(x.max_rss_kib for x in samples),
        calls=calls,
        minimum=dict(minimum),
        latency=dict(simulator.DEFAULT_LATENCY),
        scale=args.scale,
        stderr=next((x.stderr for x in samples if x.exit_code != run.expect), ""),
        notes=notes,
    )


def measure_scenario(
    s: Scenario, work: Path, args: argparse.Namespace
) -> tuple[list[Row], list[VersusRow]]:
    """Prepare the host once, then measure each of its runs and each verb against the floor."""
    state = work / s.name / "host.json"
    state.parent.mkdir(parents=True)
    prepare(s, state)
    simulator.set_latency(state, simulator.DEFAULT_LATENCY, scale=args.scale)
    simulator.reset_counters(state)
    snapshot = state.read_bytes()
    repetitions = args.repetitions or (s.quick_repetitions if args.quick else s.repetitions)
    rows = []
    for run in s.runs:
        _progress(f"{s.name}: {run.verb} x{repetitions}")
        rows.append(measure_run(s, run, state, snapshot, args, repetitions))
        if args.profile:
            _restore(state, snapshot)
            print(profiling.profile(state, s.layout, run.argv, f"{s.name} {run.verb}"))
    against = []
    for verb in s.versus:
        _progress(f"{s.name}: {verb.verb} and the pynvml floor, x{repetitions} each")
        against.append(
            measure_versus(
                s, verb, state, lambda: _restore(state, snapshot), repetitions, args.nice
            )
        )
    return rows, against


def warm_up(work: Path) -> Path:
    """An 8 x H200 host in layout, every verb and the pynvml floor script run once: bytecode
    cached, page cache warm."""
    state = work / "warm-up" / "host.json"
    state.parent.mkdir(parents=True)
    layout = LAYOUTS / IMPORT_LAYOUT
    simulator.init_host(state, [("NVIDIA H200", 8)])
    for verb in ("apply", "verify", "plan", "status", "export", "doctor"):
        measure.migrestore(state, layout, [verb])
        measure.pynvml_floor(state, verb)
    return state


def import_costs(state: Path) -> tuple[importtime.ImportCost, ...]:
    """Import time of `import migrestore.cli` and of a real verify and no-op apply."""
    layout = str(LAYOUTS / IMPORT_LAYOUT)
    cli = importtime.measure("import migrestore.cli", ["-c", "import migrestore.cli"])
    verbs = [
        importtime.of_verb(f"migrestore {verb} (8 x H200)", str(state), layout, [verb])
        for verb in ("verify", "apply")
    ]
    return (cli, *verbs)


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _selected(only: Sequence[str]) -> tuple[Scenario, ...]:
    scenarios = all_scenarios()
    if not only:
        return scenarios
    chosen = tuple(s for s in scenarios if any(o in s.name for o in only))
    if not chosen:
        raise SystemExit(f"bench: no scenario matches {', '.join(only)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (see scenario files)")
    p.add_argument("--repetitions", type=int, help="repetitions per run, for every scenario")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every latency (default 1)")
    p.add_argument("--only", action="append", default=[], help="scenarios whose name contains this")
    p.add_argument("--profile", action="store_true", help="also print a cProfile of each run")
    p.add_argument("--no-imports", action="store_true", help="skip the import-time measurement")
    p.add_argument(
        "--nice", type=int, default=0, help="nice increment for measured runs (-10: less noise)"
    )
    return p


def collect(args: argparse.Namespace) -> Report:
    """Measure everything the options ask for."""
    before = os.getloadavg()[0]
    rows: list[Row] = []
    against: list[VersusRow] = []
    with tempfile.TemporaryDirectory(prefix="migrestore-bench-") as tmp:
        work = Path(tmp)
        _progress("warming up")
        warm = warm_up(work)
        for s in _selected(args.only):
            measured, versus = measure_scenario(s, work, args)
            rows += measured
            against += versus
        _progress("import times")
        imports = () if args.no_imports else import_costs(warm)
    start = measure.python_start(5).wall
    load = (before, os.getloadavg()[0])
    return Report(tuple(rows), imports, start, args.scale, args.quick, load, tuple(against))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 if some run exited wrongly or the pynvml floor script's calls differ
    from migrestore's (a correctness failure), else 0."""
    args = parser().parse_args(argv)
    report = collect(args)
    print(json.dumps(as_json(report), indent=1) if args.json else text(report))
    correct = all(r.correct for r in report.rows) and all(v.correct for v in report.versus)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
