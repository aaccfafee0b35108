"""SystemdUnits against a real (private) systemd user manager over D-Bus."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from migrestore.errors import NoSuchUnit, UnitError
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
    with pytest.raises(UnitError) as caught:
        SystemdUnits(user_mode=True).stop(("pinned.service",))
    assert str(caught.value) == (
        "systemd refused to stop pinned.service on the user bus: Operation refused, unit "
        "pinned.service may be requested by dependency only (it is configured to refuse manual "
        "start/stop). (org.freedesktop.systemd1.OnlyByDependency)"
    )  # what systemd said and its error name, without pystemd's bytes reprs and second line
    assert booted.state("pinned.service") == "active"


def test_start_waits_for_the_start_job(booted: UserManager) -> None:
    """start() returns once the start job is done: the unit is active by then."""
    install(booted, slow="[Service]\nType=oneshot\nExecStart=/bin/sleep 1\nRemainAfterExit=yes\n")
    began = time.monotonic()
    SystemdUnits(user_mode=True).start(("slow.service",))
    assert time.monotonic() - began >= 0.9
    assert booted.state("slow.service") == "active"


def test_start_failure_names_unit_and_still_starts_the_rest(booted: UserManager) -> None:
    """Every unit is tried; the ones systemd refuses are named together."""
    install(booted, dcgm=LONG_RUNNING)
    with pytest.raises(UnitError, match=r"start nope.service"):
        SystemdUnits(user_mode=True).start(("nope.service", "dcgm.service"))
    assert booted.state("dcgm.service") == "active"


def test_units_that_do_not_start_are_named(booted: UserManager) -> None:
    """A unit whose start fails (its ExecStartPre fails) and one whose dependency fails are each
    named, in one line; the unit that starts is started; a oneshot that ran and exited is fine."""
    install(
        booted,
        broken="[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep infinity\n",
        needy="[Unit]\nRequires=broken.service\nAfter=broken.service\n" + LONG_RUNNING,
        dcgm=LONG_RUNNING,
        once="[Service]\nType=oneshot\nExecStart=/bin/true\n",
    )
    with pytest.raises(UnitError) as caught:
        SystemdUnits(user_mode=True).start(
            ("broken.service", "needy.service", "dcgm.service", "once.service")
        )
    assert str(caught.value) == (
        "broken.service failed to start (failed); needy.service did not start (inactive: a "
        "dependency failed or a condition is unmet)"
    )
    assert booted.state("dcgm.service") == "active"


def test_start_timeout_names_the_unit(booted: UserManager) -> None:
    """A unit still starting at the start timeout is named; it goes on starting."""
    install(
        booted, sluggish="[Service]\nExecStartPre=/bin/sleep 3\nExecStart=/bin/sleep infinity\n"
    )
    with pytest.raises(UnitError, match=r"^still starting after 0.3s: sluggish.service$"):
        SystemdUnits(user_mode=True, start_timeout=0.3).start(("sluggish.service",))
    assert booted.state("sluggish.service") == "activating"


def test_start_from_a_unit_ordered_before_the_started_ones(booted: UserManager) -> None:
    """A unit that starts units ordered after itself (directly, or after one that is) finishes:
    their start jobs wait for it, so start() does not wait for them (no deadlock)."""
    code = (
        "import migrestore.systemd as s; "
        "s.SystemdUnits().start(('consumer.service', 'second.service', 'free.service'))"
    )
    install(
        booted,
        consumer="[Unit]\nAfter=restorer.service\n" + LONG_RUNNING,
        second="[Unit]\nAfter=consumer.service\n" + LONG_RUNNING,
        free="[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 0.5\n",
        restorer=(
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=20\n"
            f"Environment=MIGRESTORE_SYSTEMD_USER=1 PYTHONPATH={Path(__file__).parents[2]}\n"
            f'ExecStart={sys.executable} -c "{code}"\n'
        ),
    )
    began = time.monotonic()
    booted.systemctl("start", "restorer.service")
    assert time.monotonic() - began < 15
    assert booted.show("restorer.service", "Result")["Result"] == "success"
    assert booted.state("free.service") == "active"  # awaited: not ordered after the restorer
    wait_until(lambda: booted.state("second.service") == "active", 5)
    assert booted.state("consumer.service") == "active"


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


def test_starting_a_unit_that_does_not_exist_is_no_such_unit(booted: UserManager) -> None:
    """systemd's NoSuchUnit is told apart (a missing CDI oneshot is skipped, a failing one not)."""
    with pytest.raises(
        NoSuchUnit, match=r"Unit absent\.service not found\. \((ENOENT|.*NoSuchUnit)\)$"
    ):
        SystemdUnits(user_mode=True).start(("absent.service",))
