"""`--profile`: one extra run of a verb under cProfile, summarised."""

from __future__ import annotations

import io
import pstats
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.measure import launcher, python, run

SHOWN = 25


def profile(state: Path, layout: Path, verb: Sequence[str], label: str) -> str:
    """The functions that cost most (cumulative and own time) in one run of `verb`."""
    script = launcher()
    target = script if script[0] != python() else script[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.prof"
        args = ["--simulate", str(state), "--config", str(layout), *verb]
        run([python(), "-m", "cProfile", "-o", str(out), *target, *args])
        buffer = io.StringIO()
        stats = pstats.Stats(str(out), stream=buffer)
        buffer.write(f"==== cProfile: {label} (by cumulative time)\n")
        stats.sort_stats("cumulative").print_stats(SHOWN)
        buffer.write(f"==== cProfile: {label} (by own time)\n")
        stats.sort_stats("tottime").print_stats(SHOWN)
    return buffer.getvalue()
