"""Ampere NVSwitch baseboards (HGX/DGX A100): a GPU is reset alone only through Fabric Manager
(issue 16 item 7). The simulator models an HGX A100 baseboard; apply leaves a GPU whose reset
needs Fabric Manager pending (exit 4) and says why; doctor checks Fabric Manager there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrestore import cli, simulator
from migrestore.errors import ExitCode
from migrestore.execute import FABRIC_MANAGER_REFUSAL
from migrestore.simulator.state import HostStore

from .simhost import Host, make_host

A100 = "NVIDIA A100-SXM4-80GB"
A100_PCIE = "NVIDIA A100 80GB PCIe"
H100 = "NVIDIA H100 80GB HBM3"


def layout(host: Host, mig_on: dict[int, bool], instance_on: set[int]) -> str:
    """A layout selecting each GPU by UUID: MIG on or off, one 3g.40gb where asked."""
    gpus = HostStore(host.state).read().gpus
    text = "version = 1\n"
    for gpu in gpus:
        text += f'[[gpu]]\nselect = {{ uuid = "{gpu.uuid}" }}\n'
        text += f"mig = {'true' if mig_on.get(gpu.index) else 'false'}\n"
        if gpu.index in instance_on:
            text += '[[gpu.instance]]\nprofile = "3g.40gb"\n'
    return text


def gpu_line(out: str, index: int) -> str:
    """apply's line for GPU `index`."""
    return next(line for line in out.splitlines() if line.startswith(f"GPU {index} "))


@pytest.fixture(name="hgx")
def fixture_hgx(tmp_path: Path) -> Host:
    """An HGX A100 baseboard (8 GPUs, 6 NVSwitches) whose GPU 2 already has MIG on, then
    Fabric Manager stopped."""
    host = make_host(tmp_path, (A100, 8), nvswitches=simulator.HGX_NVSWITCHES)
    host.write_layout(layout(host, {2: True}, set()))
    assert host.run("apply").code == ExitCode.OK  # one GPU reset alone: Fabric Manager runs
    simulator.set_fabric_manager(host.state, False)
    return host


def test_reset_without_fabric_manager_leaves_the_gpu_pending_and_restores_the_rest(
    hgx: Host,
) -> None:
    """GPU 1's reset is refused without Fabric Manager: pending, exit 4, the reason named; GPU 2
    still gets its instance."""
    hgx.write_layout(layout(hgx, {1: True, 2: True}, {1, 2}))
    result = hgx.run("apply")
    assert result.code == ExitCode.PENDING, result
    line = gpu_line(result.out, 1)
    assert f"{FABRIC_MANAGER_REFUSAL}; start nvidia-fabricmanager.service" in line
    assert "GPU-client units still running" not in line
    assert gpu_line(result.out, 2).endswith(": ok (2 change(s))")
    gpus = HostStore(hgx.state).read().gpus
    assert gpus[1].mig.pending
    assert not gpus[1].mig.current
    assert not gpus[1].instances
    assert [gi.profile_id for gi in gpus[2].instances] == [9]  # 3g.40gb
    assert hgx.run("status").code == ExitCode.OK


def test_with_fabric_manager_active_the_same_reset_goes_through(hgx: Host) -> None:
    """Fabric Manager started again: the one GPU is reset alone; NVLinks are never asked."""
    simulator.set_fabric_manager(hgx.state, True)
    hgx.write_layout(layout(hgx, {1: True, 2: True}, {1}))
    simulator.reset_counters(hgx.state)
    result = hgx.run("apply")
    assert result.code == ExitCode.OK, result
    assert HostStore(hgx.state).read().gpus[1].mig.current
    assert hgx.counters().get("nvmlDeviceGetNvLinkState", 0) == 0


def test_all_nvlink_peers_reset_together_need_no_fabric_manager(tmp_path: Path) -> None:
    """Every GPU of the baseboard due at once: the one reset of all peers is allowed."""
    host = make_host(tmp_path, (A100, 8), nvswitches=simulator.HGX_NVSWITCHES)
    simulator.set_fabric_manager(host.state, False)
    host.write_layout(layout(host, dict.fromkeys(range(8), True), set()))
    result = host.run("apply")
    assert result.code == ExitCode.OK, result
    assert all(g.mig.current for g in HostStore(host.state).read().gpus)


def test_peers_not_due_are_never_reset_to_satisfy_the_rule(hgx: Host) -> None:
    """Seven GPUs due, the eighth (GPU 2) already in layout: its reset is not borrowed to make
    a reset of all peers; the seven stay pending."""
    hgx.write_layout(layout(hgx, dict.fromkeys(range(8), True), set()))
    result = hgx.run("apply")
    assert result.code == ExitCode.PENDING, result
    assert gpu_line(result.out, 2).endswith("ok (already in layout)")
    for index in (0, 1, 3, 4, 5, 6, 7):
        assert FABRIC_MANAGER_REFUSAL in gpu_line(result.out, index)


def test_a_busy_gpu_with_fabric_manager_active_keeps_its_own_reason(hgx: Host) -> None:
    """Fabric Manager runs and a client holds the GPU: the refusal is not blamed on it."""
    simulator.set_fabric_manager(hgx.state, True)
    simulator.attach(hgx.state, 1, "nv-hostengine", pid=812)
    hgx.write_layout(layout(hgx, {1: True, 2: True}, set()))
    result = hgx.run("apply")
    assert result.code == ExitCode.PENDING, result
    line = gpu_line(result.out, 1)
    assert "nv-hostengine (pid 812)" in line
    assert "Fabric Manager" not in line


def test_pcie_ampere_without_nvswitch_is_not_blamed_on_fabric_manager(tmp_path: Path) -> None:
    """A100 PCIe (no NVLink to an NVSwitch: NVML answers NotSupported) with a busy GPU: the
    refusal keeps its own words."""
    host = make_host(tmp_path, (A100_PCIE, 2))
    simulator.attach(host.state, 0, "nv-hostengine", pid=812)
    host.write_layout(layout(host, {0: True}, set()))
    result = host.run("apply")
    assert result.code == ExitCode.PENDING, result
    assert "Fabric Manager" not in gpu_line(result.out, 0)
    assert host.counters()["nvmlDeviceGetNvLinkState"] == 1  # asked once: NotSupported


def test_hopper_baseboard_changes_mode_without_fabric_manager(tmp_path: Path) -> None:
    """HGX H100: a mode change needs no reset, so a stopped Fabric Manager is no obstacle."""
    host = make_host(tmp_path, (H100, 8), nvswitches=simulator.HGX_NVSWITCHES)
    simulator.set_fabric_manager(host.state, False)
    host.write_layout(layout(host, {3: True}, {3}))
    result = host.run("apply")
    assert result.code == ExitCode.OK, result


def test_simulate_cli_models_the_baseboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`simulate init --nvswitch --sysroot` lays out the NVSwitches and nv-fabricmanager in /proc;
    `simulate fabric-manager --inactive` stops the process."""
    state, root = tmp_path / "host.json", tmp_path / "root"
    init = ["simulate", "init", str(state), "--gpu", f"{A100}:8", "--nvswitch"]
    assert cli.main([*init, "--sysroot", str(root)]) == ExitCode.OK
    assert "6 NVSwitches, Fabric Manager active" in capsys.readouterr().out
    devices = root / "proc/driver/nvidia-nvswitch/devices"
    assert len(list(devices.iterdir())) == simulator.HGX_NVSWITCHES
    comms = [p.read_text() for p in (root / "proc").glob("[0-9]*/comm")]
    assert comms == ["nv-fabricmanage\n"]
    assert cli.main(["simulate", "fabric-manager", str(state), "--inactive"]) == ExitCode.OK
    assert capsys.readouterr().out.endswith("Fabric Manager not active\n")
    assert not list((root / "proc").glob("[0-9]*/comm"))
    assert not HostStore(state).read().fabric_manager


def test_simulate_fabric_manager_needs_an_nvswitch_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a host without NVSwitches the action is a one-line error, exit 2."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [(A100_PCIE, 1)])
    assert cli.main(["simulate", "fabric-manager", str(state), "--active"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    no_nvswitch = "the simulated host has no NVSwitch (simulate init --nvswitch)"
    assert err == [f"migrestore: error: {no_nvswitch}"]


def doctor_check(
    state: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, str]]:
    """`migrestore --simulate STATE --sysroot ROOT doctor --json`: exit status, fabric check."""
    argv = ["--simulate", str(state), "--sysroot", str(root), "--config", str(root / "none")]
    code = cli.main([*argv, "doctor", "--json"])
    checks = json.loads(capsys.readouterr().out)["checks"]
    found: dict[str, str] = next(c for c in checks if c["id"] == "reset.fabric-manager")
    return code, found


@pytest.mark.parametrize(
    ("model", "nvswitch", "fabric_manager", "status", "words"),
    [
        (A100, True, False, "fail", "nvidia-fabricmanager.service is not running"),
        (A100, True, True, "pass", "nvidia-fabricmanager.service runs"),
        (A100_PCIE, False, True, "pass", "not needed: no NVSwitch"),
        (H100, True, False, "pass", "not needed: no Ampere GPU"),
    ],
)
def test_doctor_checks_fabric_manager_on_nvswitch_hosts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    nvswitch: bool,
    fabric_manager: bool,
    status: str,
    words: str,
) -> None:
    """FAIL on an Ampere NVSwitch host without Fabric Manager (with the hint), PASS elsewhere."""
    state, root = tmp_path / "host.json", tmp_path / "root"
    nvswitches = simulator.HGX_NVSWITCHES if nvswitch else 0
    simulator.init_host(state, [(model, 8)], sysroot=root, nvswitches=nvswitches)
    if nvswitch and not fabric_manager:
        simulator.set_fabric_manager(state, False)
    code, check = doctor_check(state, root, capsys)
    assert (check["status"], words in check["message"]) == (status, True), check
    if status == "fail":
        assert code == ExitCode.FAILURE
        assert check["hint"] == "systemctl enable --now nvidia-fabricmanager.service"


def test_doctor_sees_nv_fabricmanager_run_outside_systemd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No unit reports it, but the daemon is a process in /proc: that passes too."""
    state, root = tmp_path / "host.json", tmp_path / "root"
    simulator.init_host(state, [(A100, 8)], sysroot=root, nvswitches=simulator.HGX_NVSWITCHES)
    simulator.set_fabric_manager(state, False)
    pid = root / "proc/4242"
    pid.mkdir(parents=True)
    (pid / "comm").write_text("nv-fabricmanage\n")
    _, check = doctor_check(state, root, capsys)
    assert check["status"] == "pass"
    assert check["message"] == "nv-fabricmanager runs (not as nvidia-fabricmanager.service)"


def test_a_link_that_answers_an_error_is_passed_over(hgx: Host) -> None:
    """NVLink 0 answers Unknown: the next links still show the NVSwitch, and the reason holds."""
    simulator.inject_fault(hgx.state, "nvmlDeviceGetNvLinkState", 1, "Unknown")
    hgx.write_layout(layout(hgx, {1: True, 2: True}, set()))
    result = hgx.run("apply")
    assert result.code == ExitCode.PENDING, result
    assert FABRIC_MANAGER_REFUSAL in gpu_line(result.out, 1)
    assert hgx.counters()["nvmlDeviceGetNvLinkState"] == 2
