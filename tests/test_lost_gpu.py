"""A GPU that cannot be read costs only itself: the others are restored, it is named, exit 1."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrestore import cli, simulator

from .simhost import ROOT, Host, make_host
from .test_apply import A100, H100, LAYOUT

CREATE_GI = "nvmlDeviceCreateGpuInstanceWithPlacement"


# Receives on the stand-in notify socket and writes each message as a line of a file. A process
# of its own: libsystemd's sd_notify, called through pystemd, blocks in sendmsg while holding the
# GIL once the socket's queue is full (net.unix.max_dgram_qlen, 10 datagrams by default), so a
# thread of the test's process could never drain it and the run would hang.
DRAIN = """
import socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind(sys.argv[1])
print("bound", flush=True)
with open(sys.argv[2], "a") as out:
    while True:
        out.write(listener.recv(4096).decode().replace("\\n", " ") + "\\n")
        out.flush()
"""


class Notifications:
    """What a datagram socket standing in for systemd's notify socket received."""

    def __init__(self, received: Path) -> None:
        self._received = received

    def text(self) -> str:
        """Every notification so far, one per line."""
        time.sleep(0.2)
        return self._received.read_text() if self._received.exists() else ""


@pytest.fixture(name="notifications")
def fixture_notifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Notifications]:
    """NOTIFY_SOCKET names a socket whose messages a separate process collects."""
    path, received = tmp_path / "notify", tmp_path / "notifications.txt"
    drain = subprocess.Popen(
        [sys.executable, "-c", DRAIN, str(path), str(received)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert drain.stdout is not None
        assert drain.stdout.readline() == "bound\n"
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Notifications(received)
    finally:
        drain.kill()
        drain.wait()


def verified(host: Host) -> dict[str, object]:
    """`verify --json`, which must exit 1 while a GPU cannot be read."""
    result = host.run("verify", "--json")
    assert result.code == 1, result
    document: dict[str, object] = json.loads(result.out)
    return document


def restored_except(host: Host, lost: int) -> None:
    """Every GPU but `lost` is in layout, and verify names `lost` as unreadable."""
    document = verified(host)
    gpus = document["gpus"]
    assert isinstance(gpus, list)
    assert [g["index"] for g in gpus if not g["steps"]] == [
        i for i in range(len(gpus) + 1) if i != lost
    ]
    unreadable = document["unreadable"]
    assert isinstance(unreadable, list)
    assert [(u["index"], u["nvml_error"]) for u in unreadable] == [(lost, "GpuIsLost")]


def last_run(state_dir: Path) -> dict[str, object]:
    """The run record apply left."""
    record: dict[str, object] = json.loads((state_dir / "last-run.json").read_text())
    return record


def test_gpu_lost_at_start_costs_only_itself(tmp_path: Path, notifications: Notifications) -> None:
    """GPU 1 off the bus before apply: 0 and 2 restored; GPU 1 in output, status, record; exit 1."""
    host = make_host(tmp_path, (H100, 3), layout=LAYOUT)
    simulator.lose_gpu(host.state, 1)
    state_dir = tmp_path / "state"
    result = host.run("--state-dir", str(state_dir), "apply", "--boot")
    assert result.code == 1, result
    assert "GPU 1: FAILED: cannot be read: could not read GPU 1: NVML GpuIsLost" in result.out
    assert "gpu_unreadable" in result.err
    notes = notifications.text()
    assert "STATUS=FAILED: GPU 1: cannot be read" in notes
    assert "READY=1" not in notes
    restored_except(host, 1)
    record = last_run(state_dir)
    assert record["result"] == "failed"
    gpus = record["gpus"]
    assert isinstance(gpus, list)
    assert [(g["index"], g["result"]) for g in gpus] == [(0, "ok"), (1, "failed"), (2, "ok")]


def test_gpu_lost_mid_apply_costs_only_itself(tmp_path: Path) -> None:
    """GPU 0 falls off the bus at its second create: GPUs 1 and 2 restored, GPU 0 named, exit 1."""
    host = make_host(tmp_path, (H100, 3), layout=LAYOUT)
    simulator.inject_fault(host.state, CREATE_GI, 2, "GpuIsLost", action="lose", gpu=0)
    result = host.run("apply")
    assert result.code == 1, result
    assert "GPU 0 (NVIDIA H100 80GB HBM3, 00000000:07:00.0): FAILED" in result.out
    assert ": ok (8 change(s))" in result.out
    restored_except(host, 0)


def test_gpu_not_back_after_its_reset_costs_only_itself(tmp_path: Path) -> None:
    """Ampere: GPU 0 is lost once reset (NVML opened again): GPU 1 restored, exit 1, not 4."""
    host = make_host(tmp_path, (A100, 2), layout=LAYOUT)
    simulator.inject_fault(host.state, "nvmlInit", 2, "GpuIsLost", action="lose", gpu=0)
    result = host.run("apply")
    assert result.code == 1, result
    assert "GPU 0 (NVIDIA A100-SXM4-80GB, 00000000:07:00.0): FAILED: cannot be read" in result.out
    restored_except(host, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_caps_nodes_still_made_for_the_gpus_that_were_restored(tmp_path: Path) -> None:
    """A GPU lost after the changes: the other GPU's /dev/nvidia-caps nodes are still made."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    simulator.init_host(host.state, [(H100, 2)], sysroot=tmp_path / "root")
    host.write_layout(LAYOUT)
    create_ci = "nvmlGpuInstanceCreateComputeInstanceWithPlacement"
    simulator.inject_fault(host.state, create_ci, 8, "GpuIsLost", action="lose", gpu=1)
    result = host.run("--sysroot", str(tmp_path / "root"), "apply")
    assert result.code == 1, result
    nodes = sorted(p.name for p in (tmp_path / "root/dev/nvidia-caps").iterdir())
    assert len(nodes) >= 7, nodes
    assert "nvidia-cap21" in nodes


def test_status_names_a_lost_gpu_and_a_reboot_brings_it_back(tmp_path: Path) -> None:
    """`status` (a process) names the lost GPU; a simulated reboot brings it back."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    simulator.lose_gpu(host.state, 0)
    command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state), "status"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False
    )
    assert "GPU 0: cannot be read: could not read GPU 0: NVML GpuIsLost" in done.stdout
    simulator.reboot(host.state)
    assert host.run("apply").code == 0


def simulate(*args: str) -> tuple[int, str, str]:
    """`migrestore simulate ARGS...` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["simulate", *args])
    return code, out.getvalue(), err.getvalue()


def test_simulate_fault_lose_picks_the_gpu_from_the_command_line(tmp_path: Path) -> None:
    """`simulate fault --action lose --gpu 1` loses GPU 1 at that call: 0 and 2 restored, exit 1."""
    host = make_host(tmp_path, (H100, 3), layout=LAYOUT)
    state = str(host.state)
    code, out, _ = simulate(
        "fault", state, "--function", CREATE_GI, "--nth", "3", "--action", "lose", "--gpu", "1"
    )
    assert code == 0
    assert out == (
        f"SIMULATED host {state}: fault armed: GPU 1 falls off the bus just before call 3 of "
        f"{CREATE_GI} from now\n"
    )
    assert host.run("apply").code == 1
    restored_except(host, 1)


@pytest.mark.parametrize(
    "args",
    [
        ("--action", "lose"),
        ("--action", "lose", "--gpu", "0", "--error", "Unknown"),
        ("--error", "Unknown", "--gpu", "0"),
        ("--action", "kill-after"),
        ("--action", "lose", "--gpu", "7"),
    ],
)
def test_simulate_fault_lose_arguments_are_checked(tmp_path: Path, args: tuple[str, ...]) -> None:
    """lose needs --gpu (of a GPU that exists) and no --error; the others need --error and no
    --gpu: exit 2 in one line, nothing armed."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    before = host.state.read_bytes()
    code, out, err = simulate("fault", str(host.state), "--function", CREATE_GI, *args)
    assert (code, out, err.count("\n")) == (2, "", 1), err
    assert host.state.read_bytes() == before
