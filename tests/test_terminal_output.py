"""Output for a person at a terminal: a progress line and a summary table, events only with -v,
only errors with -q; the journal and pipes keep the events."""

from __future__ import annotations

import logging
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from migrestore import logs, simulator
from migrestore.execute import mode_change_in_words
from tests.simhost import ROOT, Host, make_host

H100 = "NVIDIA H100 80GB HBM3"
LAYOUT = (ROOT / "bench" / "layouts" / "h100-mixed.toml").read_text()


def on_a_terminal(host: Host, *args: str) -> tuple[int, list[str]]:
    """Run migrestore with stdout and stderr on a pseudo-terminal; the lines a person would see
    (each carriage-return rewrite of a line counts once, as its last text)."""
    main, child = pty.openpty()
    argv = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
    process = subprocess.Popen(
        [*argv, "--config", str(host.config), *args],
        stdout=child,
        stderr=child,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    code = process.wait()
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", b"".join(chunks).decode())
    seen = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return code, [line for line in seen if line.strip()]


def test_an_eight_gpu_apply_fits_in_twenty_lines(tmp_path: Path) -> None:
    """8 H100s from MIG off: a table row per GPU and a closing summary, under 20 lines, and no
    per-step event on the terminal."""
    host = make_host(tmp_path, (H100, 8), layout=LAYOUT)
    code, lines = on_a_terminal(host, "apply")
    assert code == 0
    assert len(lines) < 20, lines
    assert lines[1].split() == ["GPU", "RESULT", "CHANGES", "TIME"]
    assert sum(1 for line in lines if re.search(r"\)\s+ok\s+12\s+\d+\.\d s$", line)) == 8
    assert re.fullmatch(r"8 GPU\(s\) in layout, 96 change\(s\) in \d+\.\d s", lines[-1])
    assert not any("step_done" in line or "mig_mode_set" in line for line in lines)


def test_verbose_shows_the_events_on_a_terminal(tmp_path: Path) -> None:
    """-v: the per-step events and the mode change in words."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    code, lines = on_a_terminal(host, "apply", "-v")
    assert code == 0
    assert sum(1 for line in lines if "step_done" in line) == 11
    assert any("mig_mode_set" in line and "MIG mode enabled" in line for line in lines)


def test_quiet_prints_nothing_when_all_went_well(tmp_path: Path) -> None:
    """-q: a successful apply prints no line but the simulated-host banner."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    code, lines = on_a_terminal(host, "apply", "-q")
    assert code == 0
    assert [line for line in lines if not line.startswith("SIMULATED")] == []


def test_quiet_still_prints_a_failure(tmp_path: Path) -> None:
    """-q: a GPU that fails is still reported, in one FAILED line and its state."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    simulator.inject_fault(
        host.state, "nvmlDeviceCreateGpuInstanceWithPlacement", 1, "InsufficientResources"
    )
    code, lines = on_a_terminal(host, "apply", "-q")
    assert code == 1
    assert any("FAILED at 'create" in line for line in lines), lines


def test_a_pipe_keeps_the_per_gpu_lines_and_the_events(tmp_path: Path) -> None:
    """Not a terminal (a pipe, the journal): one result line per GPU and the info events."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    done = host.spawn("apply")
    assert done.code == 0
    assert done.out.count(": ok (12 change(s))") == 2
    assert done.err.count("step_done") == 22


@pytest.mark.parametrize(
    ("enabled", "current", "words"),
    [
        (True, True, "MIG mode enabled"),
        (True, False, "enable pending a GPU reset"),
        (False, False, "MIG mode disabled"),
        (False, True, "disable pending a GPU reset"),
    ],
)
def test_the_mode_change_in_words(enabled: bool, current: bool, words: str) -> None:
    """Hopper's immediate change and Ampere's pending one read differently."""
    assert mode_change_in_words(enabled, current) == words


@pytest.mark.parametrize(
    ("verbosity", "for_person", "expected"),
    [
        (0, True, logging.WARNING),
        (1, True, logging.INFO),
        (-1, True, logging.ERROR),
        (0, False, logging.INFO),
        (-1, False, logging.ERROR),
    ],
)
def test_the_level_for_people_and_for_the_journal(
    verbosity: int, for_person: bool, expected: int
) -> None:
    """A terminal shows warnings by default, -v info; the journal gets info; -q only errors."""
    assert logs.log_level(False, None, verbosity, for_person) == expected
