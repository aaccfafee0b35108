"""The benchmark's report: a text table for people, a JSON document for machines."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from typing import Any

from bench import floor
from bench.importtime import ImportCost
from bench.rows import Row, verdicts
from bench.versus import VersusRow

EXCESS_SHOWN = 6


@dataclass(frozen=True)
class Report:
    """All rows, the import costs and the interpreter's own start-up."""

    rows: tuple[Row, ...]
    imports: tuple[ImportCost, ...]
    python_start: float
    scale: float
    quick: bool
    load: tuple[float, float]  # 1-minute load average before and after: others share the CPUs
    versus: tuple[VersusRow, ...] = ()  # read-only verbs against bench/pynvml_floor.py


def _limit(row: Row) -> str:
    if row.verb.startswith("apply"):
        return f"{1.05 * row.floor + 0.25:7.3f}"
    if row.verb == "verify" and row.expect == 0 and row.gpus == 8:
        return f"{0.25:7.3f}"
    return f"{'-':>7}"


def _line(n: int, row: Row) -> str:
    done, least = row.mutating
    reads, reads_least = row.reads
    words = {v.word for v in verdicts(row)}
    cpu = statistics.median(row.cpus)
    fastest = min(row.walls)
    result = "MISS" if "MISS" in words else "PASS"
    name = f"{row.scenario} {row.verb}"
    return (
        f"{n:>2} {name:<34} {len(row.walls):>4} {row.wall:8.3f} {fastest:8.3f} {row.floor:8.3f} "
        f"{row.ratio:6.2f} {_limit(row)} {done:>4}/{least:<4} {reads:>5}/{reads_least:<4} "
        f"{row.slept - row.floor:7.3f} {row.wall - row.slept:7.3f} {cpu:6.3f} "
        f"{row.rss_mib:6.1f}  {result}"
    )


HEADER = (
    " # scenario / verb                    reps   wall s    min s  floor s  ratio limit s  mut/min "
    "  reads/min  +slept  +other  cpu s    RSS  result"
)


def _verdict_lines(n: int, row: Row) -> list[str]:
    parts = [f"{v.target}: {v.word} ({v.measured}; limit {v.limit})" for v in verdicts(row)]
    return [f"{n:>2} " + parts[0], *(f"   {p}" for p in parts[1:])]


def _excess_lines(n: int, row: Row) -> list[str]:
    extra = row.excess()
    if not extra:
        return [f"{n:>2} {row.scenario} {row.verb}: exactly the minimum"]
    shown = ", ".join(
        f"{name} {more:+d} ({secs * 1000:.1f} ms)" for name, more, secs in extra[:EXCESS_SHOWN]
    )
    rest = len(extra) - EXCESS_SHOWN
    more = f", and {rest} more function(s)" if rest > 0 else ""
    return [f"{n:>2} {row.scenario} {row.verb}: {shown}{more}"]


def _import_lines(cost: ImportCost) -> list[str]:
    top = ", ".join(f"{name} {secs * 1000:.1f}" for name, secs in cost.top)
    return [f"  {cost.label:<28} {cost.total * 1000:7.1f} ms   biggest (ms): {top}"]


VERSUS_HEADER = (
    " # scenario / verb                    reps  migrestore s  pynvml s  ratio  target  result"
    "   cpu s  pynvml cpu s  calls"
)


def _versus_line(n: int, row: VersusRow) -> str:
    name = f"{row.scenario} {row.verb}"
    result = "met" if row.met else "NOT MET"
    calls = "same" if row.same_calls else "DIFFER"
    return (
        f"{n:>2} {name:<34} {len(row.walls):>4} {row.wall:13.3f} {row.floor:9.3f} "
        f"{row.ratio:6.2f} {row.target:6.2f}x  {result:<7} {statistics.median(row.cpus):7.3f} "
        f"{statistics.median(row.floor_cpus):13.3f}  {calls}"
    )


def _versus_lines(rows: tuple[VersusRow, ...]) -> list[str]:
    lines = [
        "",
        "Against the Python floor: bench/pynvml_floor.py makes the same NVML reads of the same "
        "host, nothing else",
        "(alternating with migrestore, each from the same saved state; walls are medians; "
        "target: migrestore <= target x the script)",
        "",
        VERSUS_HEADER,
    ]
    lines += [_versus_line(n, row) for n, row in enumerate(rows, 1)]
    for row in rows:
        for name, ours, script in row.call_differences():
            lines.append(f"   {row.verb}: {name} migrestore {ours}, pynvml script {script}")
    return lines


def text(report: Report) -> str:
    """The table and its notes."""
    lines = [
        f"migrestore benchmark on simulated hosts: latency model x{report.scale:g} "
        "(reads: real H200 timings; mode, reset, persistence, create, destroy: estimates)"
        + (", --quick" if report.quick else ""),
        f"python {platform.python_version()}, {os.cpu_count()} CPU(s), load average "
        f"{report.load[0]:.2f} before, {report.load[1]:.2f} after; "
        f"interpreter start alone (python -c pass): {report.python_start:.3f} s",
    ]
    if report.rows:
        lines += [
            "wall: median of reps (min: fastest); floor: unavoidable driver calls "
            "(bench/README.md); +slept: latency of calls beyond the minimum; +other: wall - all "
            "latency (start-up, imports, CPU); cpu: user+sys of the process",
            "",
            HEADER,
        ]
        lines += [_line(n, row) for n, row in enumerate(report.rows, 1)]
        lines += ["", "Targets (issue 6):"]
        for n, row in enumerate(report.rows, 1):
            lines += _verdict_lines(n, row)
        lines += ["", "Driver calls beyond the minimum (extra calls, their latency):"]
        for n, row in enumerate(report.rows, 1):
            lines += _excess_lines(n, row)
    if report.versus:
        lines += _versus_lines(report.versus)
    if report.imports:
        lines += [
            "",
            "Import time (python -X importtime; each module charged to the import that caused it):",
        ]
        for cost in report.imports:
            lines += _import_lines(cost)
    failed = [r for r in report.rows if not r.correct]
    for row in failed:
        lines += ["", f"WRONG EXIT STATUS in {row.scenario} {row.verb}:", row.stderr.strip()]
    for versus in report.versus:
        if not versus.correct:
            where = f"{versus.scenario} {versus.verb}"
            lines += ["", f"WRONG RESULT in {where} against the pynvml floor:"]
            lines += [versus.stderr.strip() or "the two made different NVML calls (listed above)"]
    return "\n".join(lines)


def _row_json(row: Row) -> dict[str, Any]:
    mutating, reads = row.mutating, row.reads
    return {
        "scenario": row.scenario,
        "title": row.title,
        "verb": row.verb,
        "gpus": row.gpus,
        "walls_s": list(row.walls),
        "wall_s": row.wall,
        "wall_min_s": min(row.walls),
        "cpu_s": list(row.cpus),
        "floor_s": row.floor,
        "ratio": row.ratio,
        "slept_s": row.slept,
        "exit_codes": list(row.exit_codes),
        "expected_exit": row.expect,
        "peak_rss_mib": row.rss_mib,
        "mutating_calls": {"measured": mutating[0], "minimum": mutating[1]},
        "read_calls": {"measured": reads[0], "minimum": reads[1]},
        "calls": dict(row.calls),
        "minimum_calls": dict(row.minimum),
        "mutating_functions": sorted(f for f in row.minimum if floor.is_mutating(f)),
        "excess": [{"function": f, "calls": n, "seconds": s} for f, n, s in row.excess()],
        "targets": [
            {"target": v.target, "limit": v.limit, "measured": v.measured, "result": v.word}
            for v in verdicts(row)
        ],
        "notes": list(row.notes),
    }


def _versus_json(row: VersusRow) -> dict[str, Any]:
    return {
        "scenario": row.scenario,
        "verb": row.verb,
        "gpus": row.gpus,
        "walls_s": list(row.walls),
        "wall_s": row.wall,
        "pynvml_walls_s": list(row.floor_walls),
        "pynvml_wall_s": row.floor,
        "cpu_s": list(row.cpus),
        "pynvml_cpu_s": list(row.floor_cpus),
        "ratio": row.ratio,
        "target": row.target,
        "result": "met" if row.met else "not met",
        "exit_codes": list(row.exit_codes),
        "pynvml_exit_codes": list(row.floor_exit_codes),
        "same_calls": row.same_calls,
        "calls": dict(row.calls),
        "pynvml_calls": dict(row.floor_calls),
    }


def as_json(report: Report) -> dict[str, Any]:
    """The whole report as plain data."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "latency_scale": report.scale,
        "quick": report.quick,
        "python_start_s": report.python_start,
        "load_average": {"before": report.load[0], "after": report.load[1]},
        "rows": [_row_json(r) for r in report.rows],
        "versus_pynvml": [_versus_json(v) for v in report.versus],
        "imports": [
            {"label": c.label, "total_s": c.total, "top": [{"owner": o, "s": s} for o, s in c.top]}
            for c in report.imports
        ],
    }
