"""Driver clients are started again after SIGTERM, and by the next run after a SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from migrestore import runs, simulator

from ..simhost import ROOT, Host, make_host
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

A100 = "NVIDIA A100-SXM4-80GB"
LAYOUT = """\
version = 1
[restore]
stop-units = ["dcgm.service"]
[[gpu]]
select = "all"
[[gpu.instance]]
profile = "7g.80gb"
"""


def client_host(tmp_path: Path, manager: UserManager) -> Host:
    """An A100 host (a reset is due) and a running dcgm.service that must be stopped for it."""
    manager.write_unit("dcgm.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    manager.reload()
    manager.systemctl("start", "dcgm.service")
    return make_host(tmp_path, (A100, 1), layout=LAYOUT)


def apply(manager: UserManager, host: Host, state_dir: Path) -> subprocess.Popen[str]:
    """`migrestore apply` as a process on the user manager's bus."""
    command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
    command += ["--config", str(host.config), "--state-dir", str(state_dir), "apply"]
    env = {**manager.env, "PYTHONPATH": str(ROOT), "MIGRESTORE_SYSTEMD_USER": "1"}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_leaves_the_stopped_set_and_the_next_run_starts_it(
    tmp_path: Path, booted: UserManager
) -> None:
    """Killed after the mode change: dcgm stays stopped, noted; the next run starts it, exit 0."""
    host = client_host(tmp_path, booted)
    state_dir = tmp_path / "state"
    simulator.inject_fault(host.state, "nvmlDeviceSetMigMode", 1, "Unknown", action="kill-after")
    killed = apply(booted, host, state_dir)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert booted.state("dcgm.service") == "inactive"
    assert runs.left_stopped(state_dir) == ("dcgm.service",)
    again = apply(booted, host, state_dir)
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    wait_until(lambda: booted.state("dcgm.service") == "active", 10)
    assert runs.left_stopped(state_dir) == ()


def test_sigterm_starts_the_stopped_clients_and_exits_non_zero(
    tmp_path: Path, booted: UserManager
) -> None:
    """SIGTERM during a slow reset: the run ends non-zero and dcgm is started again."""
    host = client_host(tmp_path, booted)
    state_dir = tmp_path / "state"
    simulator.set_latency(host.state, {"reset_gpus": 5.0})
    running = apply(booted, host, state_dir)
    wait_until(lambda: booted.state("dcgm.service") == "inactive", 20)
    wait_until(lambda: runs.left_stopped(state_dir) != (), 5)
    running.send_signal(signal.SIGTERM)
    _out, err = running.communicate(timeout=60)
    assert running.returncode == 130, err
    wait_until(lambda: booted.state("dcgm.service") == "active", 10)
    assert runs.left_stopped(state_dir) == ()


def test_a_client_that_will_not_start_again_fails_the_run(
    tmp_path: Path, booted: UserManager
) -> None:
    """dcgm is stopped for the reset but its start fails afterwards: apply awaits the start job
    and exits 1 naming the unit and its state, never "stopped and restarted"."""
    refuse = tmp_path / "refuse-to-start"
    booted.write_unit(
        "dcgm.service",
        f"[Service]\nExecStartPre=/bin/sh -c '! test -e {refuse}'\nExecStart=/bin/sleep infinity\n",
    )
    booted.reload()
    booted.systemctl("start", "dcgm.service")
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    refuse.touch()
    running = apply(booted, host, tmp_path / "state")
    out, err = running.communicate(timeout=60)
    assert running.returncode == 1, err
    assert "FAILED: could not start GPU clients again: dcgm.service failed to start (failed)" in out
    assert "stopped and restarted" not in out
    assert booted.state("dcgm.service") == "failed"
    assert runs.left_stopped(tmp_path / "state") == ("dcgm.service",)
