"""One measured row (a verb in a scenario), and its verdicts against the targets of issue 6."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench import floor

WALL_FACTOR = 1.05  # apply: wall <= 1.05 x floor + 0.25 s
WALL_SLACK = 0.25
VERIFY_WALL = 0.25  # a no-drift verify on 8 GPUs: whole process <= 0.25 s
VERIFY_READS = 1.10  # ... and read calls <= minimum + 10 %
VERIFY_GPUS = 8
RSS_MIB = 60.0  # every verb: peak RSS <= 60 MiB


@dataclass(frozen=True)
class Row:
    """Everything measured and computed for one verb of one scenario."""

    scenario: str
    title: str
    verb: str
    gpus: int
    expect: int
    walls: tuple[float, ...]
    cpus: tuple[float, ...]
    exit_codes: tuple[int, ...]
    max_rss_kib: int
    calls: Mapping[str, int]  # as counted by the simulator in the last repetition
    minimum: Mapping[str, int]
    latency: Mapping[str, float]
    scale: float
    stderr: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def wall(self) -> float:
        """Median wall time of the whole process."""
        return statistics.median(self.walls)

    @property
    def floor(self) -> float:
        """What the unavoidable driver calls cost under the latency model."""
        return floor.seconds(self.minimum, self.latency, self.scale)

    @property
    def slept(self) -> float:
        """What the calls migrestore made cost under the latency model."""
        return floor.seconds(self.calls, self.latency, self.scale)

    @property
    def ratio(self) -> float:
        """Wall time over the floor."""
        return self.wall / self.floor if self.floor else float("inf")

    @property
    def rss_mib(self) -> float:
        """Peak resident set size of the process, MiB."""
        return self.max_rss_kib / 1024

    @property
    def mutating(self) -> tuple[int, int]:
        """(measured, minimum) mutating calls."""
        return floor.split(self.calls)[0], floor.split(self.minimum)[0]

    @property
    def reads(self) -> tuple[int, int]:
        """(measured, minimum) read calls."""
        return floor.split(self.calls)[1], floor.split(self.minimum)[1]

    @property
    def correct(self) -> bool:
        """Every repetition exited as a correct migrestore must."""
        return all(code == self.expect for code in self.exit_codes)

    def excess(self) -> list[tuple[str, int, float]]:
        """Calls beyond the minimum, per function: (function, extra calls, extra seconds)."""
        extra = []
        for name in sorted(set(self.calls) | set(self.minimum)):
            more = self.calls.get(name, 0) - self.minimum.get(name, 0)
            if more:
                extra.append((name, more, more * self.latency.get(name, 0.0) * self.scale))
        return sorted(extra, key=lambda e: (-e[2], -e[1]))


@dataclass(frozen=True)
class Verdict:
    """One target for one row."""

    target: str
    limit: str
    measured: str
    ok: bool

    @property
    def word(self) -> str:
        """PASS or MISS."""
        return "PASS" if self.ok else "MISS"


def _mutating(row: Row) -> Verdict:
    done, least = row.mutating
    return Verdict("mutating = minimum", f"{least}", f"{done}", done == least)


def _apply_wall(row: Row) -> Verdict:
    limit = WALL_FACTOR * row.floor + WALL_SLACK
    return Verdict(
        "wall <= 1.05 x floor + 0.25 s", f"{limit:.3f} s", f"{row.wall:.3f} s", row.wall <= limit
    )


def _verify(row: Row) -> list[Verdict]:
    done, least = row.reads
    limit = VERIFY_READS * least
    return [
        Verdict(
            "verify wall <= 0.25 s",
            f"{VERIFY_WALL:.3f} s",
            f"{row.wall:.3f} s",
            row.wall <= VERIFY_WALL,
        ),
        Verdict("verify reads <= min + 10%", f"{limit:.0f}", f"{done}", done <= limit),
    ]


def verdicts(row: Row) -> list[Verdict]:
    """The targets that apply to this row, each judged."""
    found = [
        Verdict(
            "exit status",
            f"{row.expect}",
            ",".join(map(str, sorted(set(row.exit_codes)))),
            row.correct,
        ),
        _mutating(row),
    ]
    if row.verb.split()[0] == "apply":
        found.append(_apply_wall(row))
    if row.verb == "verify" and row.expect == 0 and row.gpus == VERIFY_GPUS:
        found += _verify(row)
    found.append(
        Verdict(
            "peak RSS <= 60 MiB",
            f"{RSS_MIB:.0f} MiB",
            f"{row.rss_mib:.1f} MiB",
            row.rss_mib <= RSS_MIB,
        )
    )
    return found
