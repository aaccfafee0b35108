"""migrestore against its Python floor: a read-only verb and bench/pynvml_floor.py, which makes
the same NVML reads of the same simulated host with nothing else, timed in the same run.

The two processes alternate (migrestore first in even repetitions, the script first in odd
ones), each from the same saved host state, so that load on a shared machine falls on both alike.
The ratio is of the medians. The call counters of the last run of each must be equal: otherwise
the script no longer makes migrestore's reads, and the ratio would compare unlike work.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench import measure
from bench.scenario import Scenario, Versus
from migrestore import simulator


@dataclass(frozen=True)
class VersusRow:
    """One verb of one scenario, migrestore and the script, with the target on their ratio."""

    scenario: str
    verb: str
    gpus: int
    target: float
    expect: int
    walls: tuple[float, ...]  # migrestore
    floor_walls: tuple[float, ...]  # the pynvml script
    cpus: tuple[float, ...]
    floor_cpus: tuple[float, ...]
    exit_codes: tuple[int, ...]
    floor_exit_codes: tuple[int, ...]
    calls: Mapping[str, int]  # migrestore's last run, per NVML function
    floor_calls: Mapping[str, int]  # the script's last run
    stderr: str = ""

    @property
    def wall(self) -> float:
        """migrestore's median wall time."""
        return statistics.median(self.walls)

    @property
    def floor(self) -> float:
        """The script's median wall time."""
        return statistics.median(self.floor_walls)

    @property
    def ratio(self) -> float:
        """migrestore's median over the script's."""
        return self.wall / self.floor if self.floor else float("inf")

    @property
    def met(self) -> bool:
        """The ratio is within the target."""
        return self.ratio <= self.target

    @property
    def same_calls(self) -> bool:
        """Both made exactly the same NVML calls, function by function."""
        return dict(self.calls) == dict(self.floor_calls)

    @property
    def correct(self) -> bool:
        """Both exited as they must, after the same reads (else the ratio means nothing)."""
        return (
            all(code == self.expect for code in self.exit_codes)
            and all(code == 0 for code in self.floor_exit_codes)
            and self.same_calls
        )

    def call_differences(self) -> list[tuple[str, int, int]]:
        """(function, migrestore's calls, the script's calls) wherever the two differ."""
        names = sorted(set(self.calls) | set(self.floor_calls))
        return [
            (name, self.calls.get(name, 0), self.floor_calls.get(name, 0))
            for name in names
            if self.calls.get(name, 0) != self.floor_calls.get(name, 0)
        ]


def measure_versus(
    s: Scenario,
    versus: Versus,
    state: Path,
    restore: Callable[[], None],
    repetitions: int,
    nice: int = 0,
) -> VersusRow:
    """Alternate migrestore and the script, each from the saved host state; count the calls."""
    ours: list[measure.Sample] = []
    script: list[measure.Sample] = []
    calls: dict[str, int] = {}
    floor_calls: dict[str, int] = {}
    for repetition in range(repetitions):
        order = (True, False) if repetition % 2 == 0 else (False, True)
        for migrestore in order:
            restore()
            if migrestore:
                ours.append(measure.migrestore(state, s.layout, [versus.verb], nice))
                calls = simulator.counters(state)
            else:
                script.append(measure.pynvml_floor(state, versus.verb, nice))
                floor_calls = simulator.counters(state)
    failed = [x.stderr for x in ours if x.exit_code != versus.expect]
    failed += [x.stderr for x in script if x.exit_code != 0]
    return VersusRow(
        scenario=s.name,
        verb=versus.verb,
        gpus=len(s.models),
        target=versus.target,
        expect=versus.expect,
        walls=tuple(x.wall for x in ours),
        floor_walls=tuple(x.wall for x in script),
        cpus=tuple(x.cpu for x in ours),
        floor_cpus=tuple(x.cpu for x in script),
        exit_codes=tuple(x.exit_code for x in ours),
        floor_exit_codes=tuple(x.exit_code for x in script),
        calls=calls,
        floor_calls=floor_calls,
        stderr=next(iter(failed), ""),
    )
