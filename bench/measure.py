"""Running one whole `migrestore` process and measuring it: wall time, exit status, peak RSS.

The process is the installed console script (`.venv/bin/migrestore`, what the unit's
`/usr/bin/migrestore` is), run with a clean environment; `os.wait4` gives that child's own
resource usage, so the peak RSS is exactly its own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DROPPED_ENV = (
    "NOTIFY_SOCKET",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
    "PYTHONPROFILEIMPORTTIME",
    "PYTHONDONTWRITEBYTECODE",
)
FLOOR_SCRIPT = REPO / "bench" / "pynvml_floor.py"
BYTECODE_CACHE = Path(tempfile.gettempdir()) / "migrestore-bench-pycache"


@dataclass(frozen=True)
class Sample:
    """One process: seconds from spawn to reap, CPU seconds, exit status, peak RSS in KiB."""

    wall: float
    cpu: float
    exit_code: int
    max_rss_kib: int
    stderr: str


def python() -> str:
    """The interpreter migrestore runs under (the benchmark's own: the project's venv)."""
    return sys.executable


def launcher() -> list[str]:
    """The console script next to the interpreter, else `python -m migrestore`."""
    script = Path(python()).parent / "migrestore"
    return [str(script)] if script.exists() else [python(), "-m", "migrestore"]


def clean_env() -> dict[str, str]:
    """This environment without MIGRESTORE_* or systemd's variables, with bytecode caching.

    An installed migrestore has its .pyc files (py3compile, brp-python-bytecompile); a
    PYTHONDONTWRITEBYTECODE in the caller's environment would make every run compile every
    module again. The cache lives outside the source tree.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MIGRESTORE_") and k not in DROPPED_ENV
    }
    return {**env, "PYTHONPYCACHEPREFIX": str(BYTECODE_CACHE)}


def run(argv: Sequence[str], nice: int = 0) -> Sample:
    """Spawn `argv` (under `nice -n NICE` if not 0), wait for it, and measure it."""
    if nice:
        argv = ["nice", "-n", str(nice), *argv]  # nice execs the command: same pid, same rusage
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            list(argv),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=clean_env(),
            cwd=REPO,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(wall, cpu, child.returncode, usage.ru_maxrss, tail)


def migrestore(state: Path, layout: Path, verb: Sequence[str], nice: int = 0) -> Sample:
    """One migrestore run against a simulated host."""
    return run([*launcher(), "--simulate", str(state), "--config", str(layout), *verb], nice)


def pynvml_floor(state: Path, verb: str, nice: int = 0) -> Sample:
    """One run of the minimal pynvml script (bench/pynvml_floor.py) making `verb`'s reads.

    Spawned like migrestore: the same interpreter, environment and bytecode cache; the script is
    its own process, and imports only the simulator (which migrestore imports too in --simulate).
    """
    return run([python(), str(FLOOR_SCRIPT), "--simulate", str(state), verb], nice)


def median_wall(samples: Sequence[Sample]) -> float:
    """The median wall time."""
    return statistics.median(s.wall for s in samples)


def python_start(repetitions: int) -> Sample:
    """The interpreter alone (`python -c pass`): the part of every run migrestore cannot cut."""
    samples = [run([python(), "-c", "pass"]) for _ in range(repetitions)]
    return min(samples, key=lambda s: s.wall)
