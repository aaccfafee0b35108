"""Scenario files (bench/scenarios/*.toml): a simulated host, how it is prepared, what is run.

title = "cold boot, 8 x H100 80GB HBM3: MIG mode lost"
gpus = ["NVIDIA H100 80GB HBM3:8"]          # MODEL[:COUNT], as `simulate init --gpu`
layout = "h100-mixed.toml"                   # in bench/layouts: the file the runs use
prepare = ["apply h100-mixed.toml", "reboot"]  # before measuring, latency model off
repetitions = 3                              # per run; `quick_repetitions` under --quick
[[run]]
verb = "apply --boot"                        # migrestore arguments after the global options
expect = 0                                   # exit status a correct migrestore gives
[[versus]]                                   # against bench/pynvml_floor.py (optional)
verb = "verify"                              # a read-only verb, run by both
target = 1.15                                # migrestore's median wall <= target x the script's
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore import toml

BENCH = Path(__file__).resolve().parent
SCENARIOS = BENCH / "scenarios"
LAYOUTS = BENCH / "layouts"
DEFAULT_DRIVER = "580.159.04"


@dataclass(frozen=True)
class Run:
    """One measured migrestore command."""

    verb: str
    expect: int

    @property
    def argv(self) -> tuple[str, ...]:
        """The verb and its options."""
        return tuple(self.verb.split())

    @property
    def verb_name(self) -> str:
        """`apply` for `apply --boot`."""
        return self.argv[0]


@dataclass(frozen=True)
class Versus:
    """One read-only verb timed against the minimal pynvml script making the same reads."""

    verb: str
    target: float
    expect: int = 0


@dataclass(frozen=True)
class Scenario:
    """A simulated host, its preparation and the runs measured on it."""

    name: str
    title: str
    gpus: tuple[tuple[str, int], ...]
    layout: Path
    prepare: tuple[str, ...]
    runs: tuple[Run, ...]
    repetitions: int
    quick_repetitions: int
    driver: str = DEFAULT_DRIVER
    versus: tuple[Versus, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        """The model name of every GPU, by index."""
        return tuple(name for name, count in self.gpus for _ in range(count))


def _gpu(text: str) -> tuple[str, int]:
    name, sep, count = text.rpartition(":")
    return (name, int(count)) if sep and count.isdigit() else (text, 1)


def _run(row: dict[str, Any]) -> Run:
    return Run(verb=str(row["verb"]), expect=int(row.get("expect", 0)))


def _versus(row: dict[str, Any]) -> Versus:
    return Versus(
        verb=str(row["verb"]), target=float(row["target"]), expect=int(row.get("expect", 0))
    )


def load(path: Path) -> Scenario:
    """Read one scenario file."""
    data = toml.loads(path.read_text())
    repetitions = int(data.get("repetitions", 3))
    return Scenario(
        name=path.stem,
        title=str(data["title"]),
        gpus=tuple(_gpu(g) for g in data["gpus"]),
        layout=LAYOUTS / data["layout"],
        prepare=tuple(data.get("prepare", ())),
        runs=tuple(_run(r) for r in data.get("run", ())),
        repetitions=repetitions,
        quick_repetitions=int(data.get("quick_repetitions", min(repetitions, 1))),
        driver=str(data.get("driver", DEFAULT_DRIVER)),
        versus=tuple(_versus(v) for v in data.get("versus", ())),
    )


def all_scenarios(directory: Path = SCENARIOS) -> tuple[Scenario, ...]:
    """Every scenario file, in file-name order."""
    return tuple(load(p) for p in sorted(directory.glob("*.toml")))
