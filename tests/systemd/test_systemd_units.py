"""SystemdUnits against a real (private) systemd user manager over D-Bus."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from migrestore.errors import UnitError
from migrestore.systemd import SystemdUnits

from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

LONG_RUNNING = "[Service]\nExecStart=/bin/sleep infinity\n"


def install(manager: UserManager, **units: str) -> None:
    """Write units (keyword `a_b` becomes `a-b.service`) and reload the manager."""
    for name, text in units.items():
        manager.write_unit(name.replace("_", "-") + ".service", text)
    manager.reload()


def test_active_reports_running_units_in_given_order(booted: UserManager) -> None:
    """Only loaded, running units are active; unknown, stopped and failed ones are not."""
    install(
        booted,
        dcgm=LONG_RUNNING,
        nvsm=LONG_RUNNING,
        idle=LONG_RUNNING,
        broken="[Service]\nExecStart=/bin/false\n",
    )
    booted.systemctl("start", "dcgm.service", "nvsm.service", "broken.service", check=False)
    wait_until(lambda: booted.state("broken.service") == "failed", 5)
    names = ("nvsm.service", "nope.service", "idle.service", "broken.service", "dcgm.service")
    assert SystemdUnits(user_mode=True).active(names) == ("nvsm.service", "dcgm.service")


def test_stop_waits_until_inactive(booted: UserManager) -> None:
    """stop() returns only once every unit is inactive, even with a slow ExecStop."""
    slow = LONG_RUNNING + "ExecStop=/bin/sleep 0.3\n"
    install(booted, dcgm=slow, nvsm=LONG_RUNNING)
    booted.systemctl("start", "dcgm.service", "nvsm.service")
    SystemdUnits(user_mode=True).stop(("dcgm.service", "nvsm.service"))
    assert booted.state("dcgm.service") == "inactive"
    assert booted.state("nvsm.service") == "inactive"


def test_stop_timeout_names_the_unit(booted: UserManager) -> None:
    """A unit still deactivating after the stop timeout is an error naming it."""
    install(booted, stuck=LONG_RUNNING + "ExecStop=/bin/sleep 5\nTimeoutStopSec=1\n")
    booted.systemctl("start", "stuck.service")
    with pytest.raises(UnitError, match=r"did not stop within 0.3s: stuck.service deactivating"):
        SystemdUnits(user_mode=True, stop_timeout=0.3).stop(("stuck.service",))


def test_refused_stop_names_the_unit(booted: UserManager) -> None:
    """A unit that refuses to be stopped is an error naming it; it keeps running."""
    install(booted, pinned="[Unit]\nRefuseManualStop=yes\n" + LONG_RUNNING)
    booted.systemctl("start", "pinned.service")
    with pytest.raises(UnitError, match=r"systemd refused to stop pinned.service on the user bus"):
        SystemdUnits(user_mode=True).stop(("pinned.service",))
    assert booted.state("pinned.service") == "active"


def test_start_does_not_wait_for_the_job(booted: UserManager) -> None:
    """start() queues the job and returns while the unit is still starting."""
    install(booted, slow="[Service]\nType=oneshot\nExecStart=/bin/sleep 3\nRemainAfterExit=yes\n")
    began = time.monotonic()
    SystemdUnits(user_mode=True).start(("slow.service",))
    assert time.monotonic() - began < 1.0
    assert booted.state("slow.service") == "activating"


def test_start_failure_names_unit_and_still_starts_the_rest(booted: UserManager) -> None:
    """Every unit is tried; the ones systemd refuses are named together."""
    install(booted, dcgm=LONG_RUNNING)
    with pytest.raises(UnitError, match=r"start nope.service"):
        SystemdUnits(user_mode=True).start(("nope.service", "dcgm.service"))
    wait_until(lambda: booted.state("dcgm.service") == "active", 5)


def test_start_from_a_unit_ordered_before_the_started_one(booted: UserManager) -> None:
    """A unit that starts a unit ordered after itself finishes: start() never waits (deadlock)."""
    code = "import migrestore.systemd as s; s.SystemdUnits().start(('consumer.service',))"
    install(
        booted,
        consumer="[Unit]\nAfter=restorer.service\n" + LONG_RUNNING,
        restorer=(
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=10\n"
            f"Environment=MIGRESTORE_SYSTEMD_USER=1 PYTHONPATH={Path(__file__).parents[2]}\n"
            f'ExecStart={sys.executable} -c "{code}"\n'
        ),
    )
    booted.systemctl("start", "restorer.service")
    assert booted.show("restorer.service", "Result")["Result"] == "success"
    wait_until(lambda: booted.state("consumer.service") == "active", 5)


def test_dbus_unavailable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bus at the address: a one-line UnitError saying D-Bus is unavailable."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(UnitError, match=r"cannot reach systemd on the system bus \(D-Bus") as err:
        SystemdUnits(user_mode=False).active(("nvsm.service",))
    assert "\n" not in str(err.value)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(UnitError, match=r"on the user bus"):
        SystemdUnits(user_mode=True).stop(("nvsm.service",))


def test_empty_requests_need_no_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to ask, nothing asked: empty tuples do not even open the bus."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    units = SystemdUnits(user_mode=False)
    assert units.active(()) == ()
    units.stop(())
    units.start(())
