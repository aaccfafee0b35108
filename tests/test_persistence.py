"""Persistence mode and Hopper clients (issue 11 item 6): a reset refused while persistence mode is
on goes through with it off for the GPUs being reset, and it is on again afterwards, whatever
happened; a Hopper mode change is refused while something holds the GPU, so clients are stopped
first there too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from migrestore import config, execute, runs, simulator
from migrestore.nvml import NvmlGpus
from migrestore.plan import plan_node
from migrestore.systemd import NullNotifier

from .simhost import ROOT, Host, make_host

A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
SET = "nvmlDeviceSetPersistenceMode"
ONE_7G = '[[gpu.instance]]\nprofile = "7g.80gb"\n'
LAYOUT = f'version = 1\n[[gpu]]\nselect = "all"\n{ONE_7G}'
ONLY_GPU_0 = f"version = 1\n[[gpu]]\nselect = {{ index = 0 }}\n{ONE_7G}"
ONLY_GPU_0 += "[[gpu]]\nselect = { index = 1 }\nmig = false\n"


def persistence(host: Host) -> list[bool]:
    """Persistence mode of each GPU, from the state file."""
    return [g["persistence"] for g in json.loads(host.state.read_text())["gpus"]]


def test_reset_refused_for_persistence_goes_through_with_it_off(tmp_path: Path) -> None:
    """2 x A100, persistence on (the default, as on DGX): the reset is refused, goes through with
    it off, and it is on again on both afterwards; exit 0, in layout, 4 persistence calls."""
    host = make_host(tmp_path, (A100, 2), layout=LAYOUT)
    result = host.run("--state-dir", str(tmp_path / "lib"), "apply")
    assert result.code == 0, result
    assert result.err.count("persistence_off_for_reset") == 2
    assert result.err.count("persistence_on_again") == 2
    assert persistence(host) == [True, True]
    assert host.run("verify").code == 0
    assert host.counters()[SET] == 4
    assert runs.left_persistence_off(tmp_path / "lib") == ()


def test_only_the_gpus_being_reset_are_touched(tmp_path: Path) -> None:
    """GPU 1 needs no reset: its persistence mode is never turned off (2 calls, both GPU 0's)."""
    host = make_host(tmp_path, (A100, 2), layout=ONLY_GPU_0)
    result = host.run("apply")
    assert result.code == 0, result
    assert host.counters()[SET] == 2
    assert persistence(host) == [True, True]


def test_no_persistence_no_toggling(tmp_path: Path) -> None:
    """With persistence mode off the reset goes through at once and it stays off."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.set_persistence(host.state, 0, False)
    assert host.run("apply").code == 0
    assert SET not in host.counters()
    assert persistence(host) == [False]


def test_persistence_that_will_not_come_back_fails_the_gpu(tmp_path: Path) -> None:
    """Turning it on again is refused: the layout is restored, but the GPU is FAILED with why,
    the run exits 1 and its record names it."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.inject_fault(host.state, SET, 2, "NoPermission")
    result = host.run("--state-dir", str(tmp_path / "lib"), "apply")
    assert result.code == 1, result
    expected = (
        "persistence mode left off after the reset: could not turn persistence mode on: "
        "NVML NoPermission (error 4)"
    )
    assert expected in result.out
    assert "persistence_not_restored" in result.err
    assert persistence(host) == [False]
    assert host.run("verify").code == 0  # the layout itself is in place
    record = json.loads((tmp_path / "lib" / "last-run.json").read_text())
    assert record["gpus"][0]["result"] == "failed"
    assert expected in record["gpus"][0]["error"]
    assert runs.left_persistence_off(tmp_path / "lib") == (record["gpus"][0]["uuid"],)


def test_persistence_that_cannot_be_turned_off_leaves_the_reset_pending(tmp_path: Path) -> None:
    """Turning it off is refused: the reset stays refused (exit 4), and the message says why."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.inject_fault(host.state, SET, 1, "NoPermission")
    result = host.run("apply")
    assert result.code == 4, result
    assert "persistence mode is on" in result.out
    assert "persistence mode could not be turned off: could not turn persistence mode off" in (
        result.out
    )
    assert persistence(host) == [True]


def test_a_client_still_blocks_with_persistence_off_and_it_is_on_again(tmp_path: Path) -> None:
    """A driver client blocks the reset too: with persistence off it is still refused, the
    message says so and names the client, and persistence mode is on again."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.attach(host.state, 0, "nv-hostengine", pid=812)
    result = host.run("apply")
    assert result.code == 4, result
    assert "In use by nv-hostengine (pid 812) (persistence mode was off for the reset)" in (
        result.out
    )
    assert persistence(host) == [True]


def test_a_state_directory_that_cannot_take_the_note_costs_only_the_note(tmp_path: Path) -> None:
    """The note for a SIGKILL cannot be written (the state directory is a file): a warning, and
    the reset with persistence mode off goes through; exit 0, persistence mode on again."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    blocked = tmp_path / "not-a-directory"
    blocked.touch()
    result = host.run("--state-dir", str(blocked), "apply")
    assert result.code == 0, result
    assert "persistence_off_not_noted" in result.err
    assert persistence(host) == [True]


def spawn_apply(host: Host, state_dir: Path) -> subprocess.Popen[str]:
    """`migrestore apply` on the host as a process."""
    command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
    command += ["--config", str(host.config), "--state-dir", str(state_dir), "apply"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_with_persistence_off_is_mended_by_the_next_run(tmp_path: Path) -> None:
    """Killed right after turning it off: it stays off, noted; the next run turns it on again
    (and restores the layout), exit 0, note gone."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    state_dir = tmp_path / "lib"
    simulator.inject_fault(host.state, SET, 1, "Unknown", action="kill-after")
    killed = spawn_apply(host, state_dir)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert persistence(host) == [False]
    assert len(runs.left_persistence_off(state_dir)) == 1
    again = spawn_apply(host, state_dir)
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "persistence_left_off" in err
    assert persistence(host) == [True]
    assert runs.left_persistence_off(state_dir) == ()


def test_sigterm_during_the_reset_turns_persistence_on_again(tmp_path: Path) -> None:
    """SIGTERM while the GPU is being reset with persistence off: exit 130, and it is on again."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.set_latency(host.state, {"reset_gpus": 5.0})
    running = spawn_apply(host, tmp_path / "lib")
    deadline = time.monotonic() + 30
    while persistence(host) != [False]:
        assert time.monotonic() < deadline, "persistence mode never went off"
        time.sleep(0.05)
    time.sleep(0.5)  # inside the (slow) second reset now
    running.send_signal(signal.SIGTERM)
    _out, err = running.communicate(timeout=60)
    assert running.returncode == 130, err
    assert persistence(host) == [True]
    assert runs.left_persistence_off(tmp_path / "lib") == ()


def test_hopper_mode_change_refused_while_a_client_holds_the_gpu(tmp_path: Path) -> None:
    """H100 with a driver client no stop-unit accounts for: the mode change is refused (IN_USE),
    the GPU FAILED with what to do, exit 1; persistence mode did not matter."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT.replace("7g.80gb", "3g.40gb"))
    simulator.attach(host.state, 1, "dcgm", pid=4242)
    result = host.run("apply")
    assert result.code == 1, result
    assert (
        "could not enable MIG mode: NVML InUse (error 19); a process or driver client holds the "
        "GPU: stop it, or list its unit in stop-units"
    ) in result.out
    assert ": ok (" in result.out  # GPU 0 is restored
    assert SET not in host.counters()


class ClientUnits:
    """Units whose processes are simulated driver clients: stopping a unit detaches its client
    from the GPU, starting it attaches it again (a fake of our own Units interface)."""

    def __init__(self, state: Path, clients: dict[str, int]) -> None:
        self.state = state
        self.clients = clients  # unit -> the GPU its process holds
        self.running = set(clients)
        for unit, gpu in clients.items():
            simulator.attach(state, gpu, unit)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The running ones, in the given order."""
        return tuple(n for n in names if n in self.running)

    def stop(self, names: tuple[str, ...]) -> None:
        """Stop them: their clients let go of the GPU."""
        self.calls.append(("stop", names))
        for name in names:
            simulator.detach(self.state, self.clients[name], name)
            self.running.discard(name)

    def start(self, names: tuple[str, ...]) -> None:
        """Start them: their clients hold the GPU again."""
        self.calls.append(("start", names))
        for name in names:
            simulator.attach(self.state, self.clients[name], name)
            self.running.add(name)


def test_hopper_clients_in_stop_units_are_stopped_for_the_mode_change(tmp_path: Path) -> None:
    """H100: a running stop-unit holding the GPU is stopped before the mode change (no reset or
    destroy is planned) and started again afterwards; the GPU is restored."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [(H100, 1)])
    units = ClientUnits(state, {"nvidia-dcgm.service": 0})
    gpus = NvmlGpus(simulator.Simulator(state), lambda pci: simulator.reset_gpus(state, list(pci)))
    layout = LAYOUT.replace("7g.80gb", "3g.40gb")
    with gpus:
        node = plan_node(config.parse(layout, "t.toml"), gpus.read_state())
        options = execute.Options(stop_units=("nvidia-dcgm.service",))
        result = execute.execute(node.gpus, gpus, units, NullNotifier(), options)
    assert [o.error for o in result.outcomes] == [""]
    assert units.calls == [("stop", ("nvidia-dcgm.service",)), ("start", ("nvidia-dcgm.service",))]
    assert result.stopped_units == ("nvidia-dcgm.service",)
