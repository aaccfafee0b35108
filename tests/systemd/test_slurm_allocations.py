"""A live apply asks Slurm while slurmd.service runs (a real private systemd says so) and is
refused, touching nothing, when a job holds GPUs on the node; with slurmd stopped it goes ahead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..simhost import ROOT, Host, make_host, mutations
from .test_clients_restarted import LAYOUT
from .usermanager import UserManager

pytestmark = pytest.mark.systemd

A100 = "NVIDIA A100-SXM4-80GB"


def slurm_bin(tmp_path: Path) -> Path:
    """`scontrol` showing a GPU GRES in use on the node, `squeue` listing job 77 of bob."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "scontrol": 'echo "NodeName=$6 Gres=gpu:1g.10gb:7 GresUsed=gpu:1g.10gb:1(IDX:2)"\n',
        "squeue": 'echo "77 bob"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def apply(manager: UserManager, host: Host, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`migrestore apply` on the user manager's bus, with the fake Slurm first on PATH."""
    command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
    command += ["--config", str(host.config), "--state-dir", str(tmp_path / "state"), "apply"]
    env = {
        **manager.env,
        "PYTHONPATH": str(ROOT),
        "MIGRESTORE_SYSTEMD_USER": "1",
        "PATH": f"{slurm_bin(tmp_path)}:/usr/bin:/bin",
    }
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60
    )


def test_running_slurmd_with_a_job_on_the_gpus_refuses(tmp_path: Path, booted: UserManager) -> None:
    """slurmd active, a GPU GRES in use: exit 1 naming job 77, dcgm not stopped, no NVML change;
    slurmd stopped: the same apply succeeds."""
    for unit in ("slurmd.service", "dcgm.service"):
        booted.write_unit(unit, "[Service]\nExecStart=/bin/sleep infinity\n")
    booted.reload()
    booted.systemctl("start", "slurmd.service", "dcgm.service")
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    refused = apply(booted, host, tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "Slurm job 77 (user bob)" in refused.stderr
    assert "GresUsed=gpu:1g.10gb:1(IDX:2)" in refused.stderr
    assert mutations(host.counters()) == 0
    assert booted.state("dcgm.service") == "active"
    booted.systemctl("stop", "slurmd.service")
    (tmp_path / "bin").rename(tmp_path / "bin.old")
    done = apply(booted, host, tmp_path)
    assert done.returncode == 0, done.stderr
    assert host.run("verify").code == 0
