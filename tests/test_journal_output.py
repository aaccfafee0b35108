"""Output under the journal: line-buffered, and FAILED result lines at priority 3 (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from migrestore import logs, simulator
from tests.simhost import H100, ONE_INSTANCE_ON_H100, ROOT, make_host

LAYOUT = ONE_INSTANCE_ON_H100
# cli.main, then an exit that skips Python's final flush: only what was written line by line shows.
NO_FINAL_FLUSH = "import os, sys; from migrestore import cli; cli.main(sys.argv[1:]); os._exit(0)"


def unbuffered_off() -> dict[str, str]:
    """This environment without PYTHONUNBUFFERED (systemd does not set it for the unit)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_output_into_a_pipe_is_line_buffered(tmp_path: Path) -> None:
    """stdout into a pipe (as under the journal) is written line by line, not when the run ends."""
    layout = tmp_path / "layout.toml"
    layout.write_text(LAYOUT)
    done = subprocess.run(
        [sys.executable, "-c", NO_FINAL_FLUSH, "--config", str(layout), "check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**unbuffered_off(), "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert done.stdout == f"gpu[0] (model={H100}) on {H100}: 3g.40gb@4 [1 CI]\n", done.stderr


def test_failed_lines_carry_the_error_priority_under_the_journal(tmp_path: Path) -> None:
    """A failed GPU is reported on stdout as `<3>...FAILED` when stdout is the journal stream."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    simulator.inject_fault(host.state, "nvmlDeviceCreateGpuInstanceWithPlacement", 1, "Unknown")
    out = tmp_path / "journal"
    with out.open("w") as stream:
        info = os.fstat(stream.fileno())
        command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
        }
        done = subprocess.run(
            [*command, "--config", str(host.config), "apply"],
            stdout=stream,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    lines = out.read_text().splitlines()
    failed = [line for line in lines if "FAILED" in line]
    assert failed, lines
    assert all(line.startswith("<3>") for line in failed), failed
    assert any(line.endswith(": ok (3 change(s))") and "<" not in line for line in lines), lines


def test_log_values_cannot_add_or_colour_journal_lines() -> None:
    """A logged value with CR, ESC or a line separator stays on one line, its controls escaped."""
    event = {"event": "refresh_failed", "level": "error", "error": "a\r<0>b\x1b[2J\u2028c"}
    line = logs.render_journal_line(None, "error", event)
    assert line == '<3>refresh_failed error="a\\x0d<0>b\\x1b[2J\\u2028c"'
