"""Boot integration on a real (private) systemd manager and a simulated GPU host.

Each test lays out a simulated host and a layout file, installs the shipped unit (paths adjusted
by a drop-in, see bootrig) and fake GPU consumers, enables them and boots a fresh user manager:
what the units do then is what they would do at boot, ordering and failures included.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from .bootrig import BootRig, Event
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-40GB"
CONSUMERS = ("nvsm.service", "nvidia-dcgm.service", "kubelet.service")
LAYOUT = """version = 1
[restore]
driver-timeout = {driver_timeout}
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "{profile}"
  placement = 4
  [[gpu.instance]]
  profile = "2g.20gb"
  placement = 0
"""
BOOT_TIMEOUT = 60.0
IN_SYNC, CONFIG_ERROR, DRIFT = 0, 2, 3


def layout(profile: str = "3g.40gb", driver_timeout: int = 120) -> str:
    """The test layout: a 3g and a 2g instance on every GPU (A100-40GB: 3g.20gb and 2g.10gb)."""
    return LAYOUT.format(profile=profile, driver_timeout=driver_timeout)


def restoring_h100(manager: UserManager, tmp_path: Path) -> BootRig:
    """A simulated single-H100 host, the test layout to restore, and the shipped unit."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", H100)
    rig.layout(layout())
    rig.install_migrestore()
    return rig


@pytest.fixture(name="rig")
def fixture_rig(manager: UserManager, tmp_path: Path) -> BootRig:
    """A simulated single-H100 host with the unit and three fake consumers installed, enabled."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", H100)
    rig.install_migrestore()
    for name in CONSUMERS:
        rig.install_consumer(name)
    return rig


def boot(rig: BootRig) -> None:
    """Enable everything, start the manager, wait until no job is left (a finished boot)."""
    rig.enable("migrestore.service", *rig.consumers)
    rig.manager.boot()
    rig.manager.wait_settled("migrestore.service", *rig.consumers, timeout=BOOT_TIMEOUT)
    wait_until(lambda: len(started(rig)) == len(running(rig)), 10)


def started(rig: BootRig) -> dict[str, Event]:
    """The consumers that ran their start check, by unit."""
    return {e.unit: e for e in rig.read_events() if e.action == "start"}


def running(rig: BootRig) -> list[str]:
    """The consumers that are active."""
    return [name for name in rig.consumers if rig.manager.state(name) == "active"]


def outcome(rig: BootRig) -> dict[str, str]:
    """How migrestore.service ended."""
    return rig.manager.show(
        "migrestore.service", "ActiveState", "Result", "ExecMainStatus", "StatusText"
    )


def journal_text(rig: BootRig) -> str:
    """migrestore.service's journal, one line per entry."""
    return "\n".join(message for _, message in rig.manager.journal_messages("migrestore.service"))


def test_boot_restores_before_consumers_start(manager: UserManager, tmp_path: Path) -> None:
    """A boot restores the layout on two GPUs; every consumer starts after migrestore is ready,
    sees the restored layout, and StatusText carries the summary."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", f"{H100}:2")
    rig.layout(layout())
    rig.install_migrestore()
    for name in CONSUMERS:
        rig.install_consumer(name, gpus="0 1")
    boot(rig)
    assert outcome(rig) == {
        "ActiveState": "active",
        "Result": "success",
        "ExecMainStatus": "0",
        "StatusText": outcome(rig)["StatusText"],
    }
    assert re.fullmatch(
        r"2 GPU\(s\) in layout, 10 change\(s\) in \d+\.\d s", outcome(rig)["StatusText"]
    )
    ready = manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    consumers = {n: manager.monotonic(n, "InactiveExitTimestampMonotonic") for n in CONSUMERS}
    assert min(consumers.values()) >= ready
    active = max(manager.monotonic(n, "ActiveEnterTimestampMonotonic") for n in CONSUMERS)
    print(
        f"boot: migrestore ready {ready:.3f} s, consumers starting {min(consumers.values()):.3f}"
        f" s, all active {active:.3f} s after the manager was started"
    )
    assert {name: e.verify for name, e in started(rig).items()} == dict.fromkeys(CONSUMERS, 0)
    assert rig.migrestore("verify").returncode == IN_SYNC


def test_bad_layout_fails_visibly_and_consumers_still_start(rig: BootRig) -> None:
    """A layout naming an unknown profile: the unit fails with exit status 2, the journal says
    why in one line, and the (ungated) consumers start anyway."""
    rig.layout(layout(profile="9g.99gb"))
    boot(rig)
    assert outcome(rig)["ActiveState"] == "failed"
    assert (outcome(rig)["Result"], outcome(rig)["ExecMainStatus"]) == ("exit-code", "2")
    errors = [line for line in journal_text(rig).splitlines() if "error" in line]
    assert any("9g.99gb" in line for line in errors), journal_text(rig)
    assert running(rig) == list(CONSUMERS)
    assert {e.verify for e in started(rig).values()} == {CONFIG_ERROR}


def test_nvml_fault_fails_visibly_and_consumers_still_start(rig: BootRig) -> None:
    """An NVML call failing at boot: exit status 1, a FAILED summary in StatusText and the
    reason in the journal; consumers start and find the drift."""
    rig.layout(layout())
    rig.simulate(
        "fault",
        "--function",
        "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
        "--nth",
        "1",
        "--error",
        "InsufficientResources",
    )
    boot(rig)
    assert (outcome(rig)["Result"], outcome(rig)["ExecMainStatus"]) == ("exit-code", "1")
    assert outcome(rig)["StatusText"].startswith("FAILED: 1 of 1 GPU(s) not restored")
    assert "Insufficient" in journal_text(rig)
    assert running(rig) == list(CONSUMERS)
    assert {e.verify for e in started(rig).values()} == {DRIFT}


def test_gated_consumer_waits_for_a_successful_restore(rig: BootRig) -> None:
    """With gate-consumers.conf, kubelet does not start after a failed restore (its gate's
    `migrestore verify` fails; nvsm, ungated, starts); starting kubelet by hand once the layout
    is fixed runs the restore first (Wants=)."""
    rig.install_consumer("kubelet.service", gated=True)
    rig.layout(layout(profile="9g.99gb"))
    boot(rig)
    assert outcome(rig)["ActiveState"] == "failed"
    kubelet = rig.manager.show("kubelet.service", "ActiveState", "Result", "ExecMainPID")
    assert kubelet == {"ActiveState": "failed", "Result": "exit-code", "ExecMainPID": "0"}
    assert "kubelet.service" not in started(rig)
    assert rig.manager.state("nvsm.service") == "active"
    rig.layout(layout())
    rig.manager.systemctl("start", "kubelet.service")
    assert outcome(rig)["ActiveState"] == "active"
    assert rig.manager.state("kubelet.service") == "active"
    wait_until(lambda: "kubelet.service" in started(rig), 10)
    assert started(rig)["kubelet.service"].verify == IN_SYNC


def test_kernel_command_line_switch_skips_the_restore(rig: BootRig) -> None:
    """Booting with migrestore=off skips the unit (not failed): even gated consumers start,
    and the GPUs are left as they were."""
    rig.install_consumer("kubelet.service", gated=True)
    rig.layout(layout())
    rig.manager.env["SYSTEMD_PROC_CMDLINE"] = "quiet migrestore=off"
    boot(rig)
    shown = rig.manager.show("migrestore.service", "ActiveState", "ConditionResult")
    assert shown == {"ActiveState": "inactive", "ConditionResult": "no"}
    assert running(rig) == list(CONSUMERS)
    assert {e.verify for e in started(rig).values()} == {DRIFT}


def test_no_layout_file_is_a_visible_no_op(rig: BootRig) -> None:
    """Without a layout file the unit succeeds and says so in StatusText; GPUs are untouched."""
    boot(rig)
    assert outcome(rig)["ActiveState"] == "active"
    assert outcome(rig)["StatusText"] == f"no layout file at {rig.config}: nothing to restore"
    assert running(rig) == list(CONSUMERS)


def test_driver_arriving_late_is_waited_for(rig: BootRig) -> None:
    """The driver loads 2 s after boot: migrestore waits (StatusText says so), then restores;
    consumers start after it and see the layout."""
    rig.layout(layout())
    rig.simulate("driver", "--unload", "--reload-after", "2")
    rig.enable("migrestore.service", *rig.consumers)
    rig.manager.boot()
    wait_until(lambda: outcome(rig)["StatusText"].startswith("waiting for the NVIDIA driver"), 5)
    rig.manager.wait_settled("migrestore.service", *rig.consumers, timeout=BOOT_TIMEOUT)
    assert outcome(rig)["ActiveState"] == "active"
    began = rig.manager.monotonic("migrestore.service", "InactiveExitTimestampMonotonic")
    ready = rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    assert ready - began >= 1.5
    wait_until(lambda: len(started(rig)) == len(CONSUMERS), 10)
    assert {e.verify for e in started(rig).values()} == {IN_SYNC}


def test_driver_never_arriving_fails_after_the_timeout(rig: BootRig) -> None:
    """No driver at all: the unit fails after driver-timeout (2 s here), boot goes on."""
    rig.layout(layout(driver_timeout=2))
    rig.simulate("driver", "--unload")
    began = time.monotonic()
    boot(rig)
    assert time.monotonic() - began < 20
    assert (outcome(rig)["Result"], outcome(rig)["ExecMainStatus"]) == ("exit-code", "1")
    start = rig.manager.monotonic("migrestore.service", "InactiveExitTimestampMonotonic")
    end = rig.manager.monotonic("migrestore.service", "InactiveEnterTimestampMonotonic")
    assert 2 <= end - start < 10
    assert "driver" in journal_text(rig)
    assert running(rig) == list(CONSUMERS)


def test_apply_by_hand_bounces_only_active_clients(manager: UserManager, tmp_path: Path) -> None:
    """On an Ampere host with nvsm and nvidia-dcgm attached as driver clients, `migrestore apply`
    stops both before the reset and starts them again afterwards in reverse order;
    dcgm-exporter, installed but inactive, stays inactive."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", A100)
    rig.layout(layout(profile="3g.20gb").replace("2g.20gb", "2g.10gb"))
    for name in ("nvsm.service", "nvidia-dcgm.service", "dcgm-exporter.service"):
        rig.install_consumer(name)
    manager.boot()
    manager.systemctl("start", "nvsm.service", "nvidia-dcgm.service")
    wait_until(lambda: len(started(rig)) == 2, 10)
    applied = rig.migrestore("apply")
    assert "starting_gpu_clients" in applied.stderr
    assert "units=nvidia-dcgm.service,nvsm.service" in applied.stderr
    wait_until(lambda: running(rig) == ["nvsm.service", "nvidia-dcgm.service"], 10)
    wait_until(lambda: len(rig.read_events()) == 6, 10)
    events = [(e.action, e.unit) for e in rig.read_events()]
    first_starts, stops, restarts = events[:2], events[2:4], events[4:]
    assert {unit for _, unit in first_starts} == {"nvsm.service", "nvidia-dcgm.service"}
    assert sorted(stops) == [("stop", "nvidia-dcgm.service"), ("stop", "nvsm.service")]
    assert sorted(restarts) == [("start", "nvidia-dcgm.service"), ("start", "nvsm.service")]
    assert rig.manager.state("dcgm-exporter.service") == "inactive"
    assert rig.migrestore("verify").returncode == IN_SYNC


def test_restarting_the_restore_leaves_gated_consumers_running(rig: BootRig) -> None:
    """As gate-consumers.conf says: `systemctl restart migrestore` re-runs the restore and
    leaves a gated kubelet running (same main process), like the ungated consumers."""
    rig.install_consumer("kubelet.service", gated=True)
    rig.layout(layout())
    boot(rig)
    first_ready = rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    pid = rig.manager.show("kubelet.service", "MainPID")["MainPID"]
    rig.manager.systemctl("restart", "migrestore.service")
    ready = rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    assert ready > first_ready
    assert rig.manager.show("kubelet.service", "MainPID")["MainPID"] == pid != "0"
    assert [e.action for e in rig.read_events() if e.unit == "kubelet.service"] == ["start"]
    assert [e.action for e in rig.read_events() if e.unit == "nvsm.service"] == ["start"]


def test_restart_on_ampere_starts_consumers_after_ready_and_awaits_them(
    manager: UserManager, tmp_path: Path
) -> None:
    """`systemctl restart migrestore` when MIG must go off on an A100 with nvsm and nvidia-dcgm
    running: both are stopped for the reset; once the layout is in place migrestore is READY
    (their start jobs wait for that: ordered after it), starts them again and awaits each start
    before it exits; they find the layout in place."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", A100)
    rig.layout(layout(profile="3g.20gb").replace("2g.20gb", "2g.10gb"))
    rig.install_migrestore()
    for name in ("nvsm.service", "nvidia-dcgm.service"):
        rig.install_consumer(name)
    boot(rig)
    wait_until(lambda: running(rig) == ["nvsm.service", "nvidia-dcgm.service"], 20)
    rig.layout('version = 1\n[[gpu]]\nselect = "all"\nmig = false\n')
    began = time.monotonic()
    manager.systemctl("restart", "migrestore.service")
    assert time.monotonic() - began < 60
    assert outcome(rig)["ActiveState"] == "active", journal_text(rig)
    wait_until(lambda: manager.show("migrestore.service", "SubState")["SubState"] == "exited", 20)
    assert outcome(rig)["ExecMainStatus"] == "0", journal_text(rig)
    assert running(rig) == ["nvsm.service", "nvidia-dcgm.service"]
    ready = manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    exited = manager.monotonic("migrestore.service", "ExecMainExitTimestampMonotonic")
    for name in ("nvsm.service", "nvidia-dcgm.service"):
        assert ready < manager.monotonic(name, "ActiveEnterTimestampMonotonic") < exited
    journal = journal_text(rig)
    assert "start_not_awaited" not in journal
    assert "persistence_off_for_reset" in journal
    wait_until(lambda: len(rig.read_events()) == 6, 10)
    assert {e.verify for e in rig.read_events()[4:]} == {IN_SYNC}


CDI = "nvidia-cdi-refresh.service"
PLUGIN = "nvidia-device-plugin.service"


def install_cdi_refresh(rig: BootRig) -> None:
    """A fake CDI refresh oneshot, enabled: each run records a start (with `verify`'s result)."""
    environment = {**rig.environment, "EVENTS": str(rig.events), "GPUS": ""}
    rig.manager.write_unit(
        CDI,
        "[Unit]\nDescription=fake CDI refresh\n[Service]\nType=oneshot\n"
        + "".join(f'Environment="{key}={value}"\n' for key, value in environment.items())
        + f"ExecStart={sys.executable} {rig.base / 'consumer.py'} start {CDI}\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    rig.enable(CDI)


def test_restart_reruns_the_cdi_refresh_then_restarts_the_plugin_awaited(
    manager: UserManager, tmp_path: Path
) -> None:
    """`systemctl restart migrestore` adding an instance on a running host: after READY the CDI
    oneshot runs again, then the device plugin is restarted, each awaited before migrestore
    exits, and both find the new layout in place (they were never refreshed under --boot)."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_consumer(PLUGIN, gpus="")
    install_cdi_refresh(rig)
    rig.enable("migrestore.service", PLUGIN, CDI)
    manager.boot()
    manager.wait_settled("migrestore.service", PLUGIN, CDI, timeout=BOOT_TIMEOUT)
    wait_until(lambda: set(started(rig)) == {PLUGIN, CDI}, 10)
    pid = manager.show(PLUGIN, "MainPID")["MainPID"]
    seen = len(rig.read_events())
    rig.layout(layout() + '  [[gpu.instance]]\n  profile = "1g.10gb"\n  placement = 2\n')
    manager.systemctl("restart", "migrestore.service")
    wait_until(lambda: manager.show("migrestore.service", "SubState")["SubState"] == "exited", 30)
    assert outcome(rig)["ExecMainStatus"] == "0", journal_text(rig)
    after = [(e.action, e.unit, e.verify) for e in rig.read_events()[seen:]]
    assert after == [("start", CDI, IN_SYNC), ("stop", PLUGIN, None), ("start", PLUGIN, IN_SYNC)]
    assert manager.show(PLUGIN, "MainPID")["MainPID"] not in ("0", pid)
    ready = manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    exited = manager.monotonic("migrestore.service", "ExecMainExitTimestampMonotonic")
    assert ready < manager.monotonic(PLUGIN, "ActiveEnterTimestampMonotonic") < exited
    assert "start_not_awaited" not in journal_text(rig)


def test_restart_with_a_consumer_that_fails_to_start_again_fails(
    manager: UserManager, tmp_path: Path
) -> None:
    """A refreshed device plugin that fails to start after `systemctl restart migrestore`: the
    run ends with exit status 1, the unit failed, its journal and status line naming the plugin."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_consumer(PLUGIN, gpus="")
    boot(rig)
    broken = rig.base / "plugin-broken"
    rig.manager.write_drop_in(
        PLUGIN, "90-break.conf", f"[Service]\nExecStartPre=/bin/sh -c '! test -e {broken}'\n"
    )
    rig.manager.reload()
    broken.touch()
    rig.layout(layout() + '  [[gpu.instance]]\n  profile = "1g.10gb"\n  placement = 2\n')
    manager.systemctl("restart", "migrestore.service")
    wait_until(lambda: outcome(rig)["ActiveState"] == "failed", 30)
    assert outcome(rig)["ExecMainStatus"] == "1"
    assert f"{PLUGIN} failed to start" in journal_text(rig)
    assert f"{PLUGIN} failed to start" in outcome(rig)["StatusText"]
