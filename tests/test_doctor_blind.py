"""doctor on a host it cannot fully inspect: "cannot check" lines with the reason, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from migrestore.verbs import doctor
from migrestore.verbs.doctor import Status, Survey
from tests.fakes import FakeUnits
from tests.simhost import ROOT
from tests.test_doctor import H100, by_id, context, simulated

NO_PYSTEMD = (
    "import sys; sys.modules['pystemd'] = None; from migrestore import cli; "
    "raise SystemExit(cli.main(sys.argv[1:]))"
)


def doctor_process(state: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`migrestore doctor` on the user manager, in a process that cannot import pystemd."""
    command = [sys.executable, "-c", NO_PYSTEMD, "--simulate", str(state), "doctor"]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "MIGRESTORE_SYSTEMD_USER": "1", **env}
    environ.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        command, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=60, check=False
    )


def test_without_pystemd_doctor_reports_what_it_cannot_check(tmp_path: Path) -> None:
    """pystemd not importable: the GPU-client check says why it cannot look; no internal error."""
    done = doctor_process(simulated(tmp_path, (H100, 1)), tmp_path)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr
    line = next(ln for ln in done.stdout.splitlines() if " reset.units " in ln)
    assert "cannot check which GPU-client units run: cannot reach systemd: pystemd" in line


def test_without_a_bus_doctor_reports_what_it_cannot_check(tmp_path: Path) -> None:
    """No reachable bus: the GPU-client check is a "cannot check" line naming D-Bus."""
    units = FakeUnits(read_only=True, reachable=False)
    state = simulated(tmp_path, (H100, 1))
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), units))
    message = checks["reset.units"].message
    assert message.startswith("cannot check which GPU-client units run: cannot reach systemd")


class BrokenUnits(FakeUnits):
    """A units adapter whose socket fails outright."""

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The connection is refused."""
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_failing_socket_is_a_line_not_a_crash(tmp_path: Path) -> None:
    """An OSError from systemd's socket is reported like an unreachable bus."""
    state = simulated(tmp_path, (H100, 1))
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), BrokenUnits()))
    assert "Connection refused" in checks["reset.units"].message


def test_without_proc_the_process_check_says_it_cannot_look(tmp_path: Path) -> None:
    """A root without /proc: which processes hold the GPUs is "cannot check", not "none"."""
    state = simulated(tmp_path, (H100, 1))
    empty = tmp_path / "empty-root"
    empty.mkdir()
    checks = by_id(doctor.diagnose(context(tmp_path, state, empty), FakeUnits(read_only=True)))
    processes = checks["reset.processes"]
    assert processes.status is Status.SKIP
    assert processes.message.startswith("cannot check which processes hold /dev/nvidia*: ")
    assert f"cannot list {empty}/proc" in processes.message


def test_not_root_the_process_check_says_it_cannot_look(tmp_path: Path) -> None:
    """Not root, other processes' open files are hidden: "cannot check", with the uid."""
    simulated(tmp_path, (H100, 1))  # makes tmp_path/root/proc
    survey = Survey(tmp_path / "root", True, None, None, (), euid=1000)
    check = doctor._holder_processes(survey)
    assert check.status is Status.SKIP
    assert "uid 1000, not root" in check.message
