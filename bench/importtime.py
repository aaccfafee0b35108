"""Import cost of a verb: `python -X importtime` on the real command, grouped by owner.

Every module's *self* time is summed per owner: `migrestore.<module>` for our own modules, the
top-level package for the rest (`structlog`, `pynvml`, `json`, ...). The total is the sum of all
self times, i.e. what the process spends importing.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure import REPO, clean_env, launcher, python

LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class ImportCost:
    """Total import time and the biggest owners, in seconds."""

    label: str
    total: float
    top: tuple[tuple[str, float], ...]


def owner(module: str) -> str:
    """`migrestore.config` stays itself; `structlog._config` -> `structlog`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("migrestore", "bench") else parts[0]


def parse(text: str) -> Counter[str]:
    """Self time in microseconds per owner, from `-X importtime` output."""
    costs: Counter[str] = Counter()
    for line in text.splitlines():
        found = LINE.match(line)
        if found:
            costs[owner(found.group(4))] += int(found.group(1))
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
        if best is None or costs.total() < best.total():
            best = costs
    assert best is not None
    return ImportCost(
        label=label,
        total=best.total() / 1e6,
        top=tuple((name, us / 1e6) for name, us in best.most_common(top)),
    )


def of_verb(label: str, state: str, layout: str, verb: Sequence[str]) -> ImportCost:
    """Import cost of one real migrestore run (its console script, run by `python -X ...`)."""
    script = launcher()
    argv = script if script[0] != python() else script[1:]
    return measure(label, [*argv, "--simulate", state, "--config", layout, *verb])
