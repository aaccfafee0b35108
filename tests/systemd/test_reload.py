"""A driver reload while the system runs: the shipped udev rule starts migrestore-reload.service,
which brings the layout back (real user manager, simulated host).

No udevd runs here: `udev()` plays its part for one kernel event, running what the shipped rule's
RUN+= says for it (tests/udev_standin.py), with `/bin/systemctl` pointed at the test manager.
Everything after that is the shipped unit under a real systemd.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests import udev_standin

from .bootrig import BootRig
from .test_boot import BOOT_TIMEOUT, DRIFT, IN_SYNC, restoring_h100
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

RELOAD = "migrestore-reload.service"
RESTORE_WITHIN = 30.0
NO_DRIVER = 1


def udev(rig: BootRig, action: str, module: str = "nvidia") -> int:
    """Deliver a module uevent as udev would: run the shipped rule's programs; how many ran."""
    ran = udev_standin.commands(udev_standin.module_event(action, module))
    for argv in ran:
        assert argv[0] == "/bin/systemctl", argv
        rig.manager.systemctl(*argv[1:])
    return len(ran)


def booted_in_layout(manager: UserManager, tmp_path: Path) -> BootRig:
    """A single-H100 host restored at boot, with the reload trigger installed."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_reload_trigger()
    rig.enable("migrestore.service")
    manager.boot()
    wait_until(lambda: manager.state("migrestore.service") in ("active", "failed"), BOOT_TIMEOUT)
    assert rig.migrestore("verify", check=False).returncode == IN_SYNC
    return rig


def reload_driver(rig: BootRig) -> None:
    """`rmmod nvidia; modprobe nvidia`: the simulator's unload and load, and udev's two events."""
    rig.simulate("driver", "--unload")
    assert udev(rig, "remove") == 0
    assert rig.migrestore("verify", check=False).returncode == NO_DRIVER
    rig.simulate("driver", "--load")


def history(rig: BootRig) -> list[dict[str, object]]:
    """The run records apply kept, oldest first."""
    lines = (rig.base / "state" / "runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_driver_reload_brings_the_layout_back(manager: UserManager, tmp_path: Path) -> None:
    """After a boot in layout, an unload and load of the driver leaves the H100 with MIG off and
    no instances (verify 3); the module's add event starts the reload unit, and the layout is
    back (verify 0) within 30 s, by a second `apply --boot` run."""
    rig = booted_in_layout(manager, tmp_path)
    reload_driver(rig)
    assert rig.migrestore("verify", check=False).returncode == DRIFT
    began = time.monotonic()
    assert udev(rig, "add") == 1
    wait_until(lambda: rig.migrestore("verify", check=False).returncode == IN_SYNC, RESTORE_WITHIN)
    restored = time.monotonic() - began
    manager.wait_settled(RELOAD, timeout=RESTORE_WITHIN)
    assert [(run["boot"], run["result"]) for run in history(rig)] == [(True, "ok")] * 2
    assert manager.state("migrestore.service") == "active"
    print(f"reload: layout back {restored:.2f} s after the module's add event")


def test_the_boot_event_waits_for_the_boot_restore(manager: UserManager, tmp_path: Path) -> None:
    """The module is loaded during the boot too: the reload unit started while the boot restore
    runs waits for it (After=), then finds the GPU in layout and changes nothing."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_reload_trigger()
    rig.enable("migrestore.service")
    manager.boot()
    wait_until(lambda: manager.show("migrestore.service", "Job")["Job"] not in ("", "0"), 10)
    udev(rig, "add")
    manager.wait_settled("migrestore.service", RELOAD, timeout=BOOT_TIMEOUT)
    boot_run, reload_run = history(rig)
    assert (boot_run["result"], reload_run["result"]) == ("ok", "ok")
    # Both units log as "migrestore", in time order: the reload run plans only after the boot
    # run has finished, and it changes nothing.
    lines = [m for _, m in manager.journal_messages(RELOAD) if m.startswith(("planned", "apply_"))]
    assert [line.split()[0] for line in lines] == ["planned", "apply_finished"] * 2, lines
    assert "changes=5" in lines[1]
    assert "steps=0" in lines[2]
    assert "changes=0" in lines[3]


def test_a_reload_loop_is_rate_limited(manager: UserManager, tmp_path: Path) -> None:
    """Three reloads in a row each restore; the fourth within 10 minutes is refused by the
    unit's start limit (Result=start-limit-hit) and leaves the GPU as the driver left it."""
    rig = booted_in_layout(manager, tmp_path)
    for _ in range(3):
        reload_driver(rig)
        udev(rig, "add")
        manager.wait_settled(RELOAD, timeout=RESTORE_WITHIN)
        assert rig.migrestore("verify", check=False).returncode == IN_SYNC
    reload_driver(rig)
    udev(rig, "add")  # --no-block: the limit is applied when the job runs, not by systemctl
    manager.wait_settled(RELOAD, timeout=RESTORE_WITHIN)
    assert manager.show(RELOAD, "ActiveState", "Result") == {
        "ActiveState": "failed",
        "Result": "start-limit-hit",
    }
    assert len(history(rig)) == 4
    assert rig.migrestore("verify", check=False).returncode == DRIFT


def test_kill_switch_turns_the_reload_restore_off(manager: UserManager, tmp_path: Path) -> None:
    """Booted with migrestore=off, a reload's add event starts the unit, whose condition fails:
    no run at all (no run record) and the GPU stays as the driver left it."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_reload_trigger()
    manager.env["SYSTEMD_PROC_CMDLINE"] = "quiet migrestore=off"
    manager.boot()
    reload_driver(rig)
    udev(rig, "add")
    manager.wait_settled(RELOAD, timeout=RESTORE_WITHIN)
    assert not (rig.base / "state" / "runs.jsonl").exists()
    assert rig.migrestore("verify", check=False).returncode == DRIFT
