"""Import cost of a verb: `python -X importtime` on the real command, charged to its cause.

Each module's *self* time is charged to the import that caused it: the first module outside
migrestore on its chain of importers (grouped by top-level package), so `structlog` carries the
asyncio and ssl it pulls in, and `tomli_w` its decimal; a migrestore module imported by
migrestore modules only is charged to itself. The total is the sum of all self times, i.e. what
the process spends importing.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure import REPO, clean_env, launcher, python

LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)\s*$")
OURS = ("migrestore", "bench")


@dataclass(frozen=True)
class ImportCost:
    """Total import time and the biggest causes, in seconds."""

    label: str
    total: float
    top: tuple[tuple[str, float], ...]


def _ours(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in OURS


def cause(chain: Sequence[str]) -> str:
    """Who is charged for the last module of `chain` (its importers, outermost first)."""
    for module in chain:
        if not _ours(module):
            return module.split(".")[0]
    return ".".join(chain[-1].split(".")[:2])


def parse(text: str) -> Counter[str]:
    """Self time in microseconds per cause, from `-X importtime` output.

    A module's line follows the lines of the modules it imported (one level deeper), so read
    backwards the lines come parent first and a stack of (depth, module) gives each one's chain.
    """
    rows = [LINE.match(line) for line in text.splitlines()]
    costs: Counter[str] = Counter()
    stack: list[tuple[int, str]] = []
    for found in reversed([r for r in rows if r]):
        depth, module = (len(found.group(3)) - 1) // 2, found.group(4)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, module))
        costs[cause([m for _, m in stack])] += int(found.group(1))
    return costs


def measure(label: str, argv: Sequence[str], runs: int = 3, top: int = 8) -> ImportCost:
    """Import cost of `argv` run under `python -X importtime` (the fastest of `runs`)."""
    best: Counter[str] | None = None
    for _ in range(runs):
        done = subprocess.run(
            [python(), "-X", "importtime", *argv],
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=REPO,
            check=False,
        )
        costs = parse(done.stderr)
        if best is None or sum(costs.values()) < sum(best.values()):
            best = costs
    assert best is not None
    return ImportCost(
        label=label,
        total=sum(best.values()) / 1e6,
        top=tuple((name, us / 1e6) for name, us in best.most_common(top)),
    )


def of_verb(label: str, state: str, layout: str, verb: Sequence[str]) -> ImportCost:
    """Import cost of one real migrestore run (its console script, run by `python -X ...`)."""
    script = launcher()
    argv = script if script[0] != python() else script[1:]
    return measure(label, [*argv, "--simulate", state, "--config", layout, *verb])
