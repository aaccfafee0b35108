"""refresh_consumers: units caching the MIG device list are restarted after a live relayout."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from migrestore.consumers import DEFAULT_REFRESH_UNITS
from migrestore.errors import UnitError
from migrestore.refresh import refresh_consumers
from migrestore.systemd import SystemdUnits
from tests.fakes import FakeUnits

from .systemd.usermanager import UserManager, wait_until

CDI = "nvidia-cdi-refresh.service"
PLUGIN = "nvidia-device-plugin.service"
GFD = "gpu-feature-discovery.service"


@pytest.fixture(autouse=True)
def default_logging() -> None:
    """structlog as shipped: an earlier test's `cli.main` may have bound it to a closed stderr."""
    structlog.reset_defaults()


def test_running_consumers_restarted_and_cdi_oneshot_rerun() -> None:
    """Device plugin and GFD running, CDI oneshot exited: all three refreshed, in config order."""
    units = FakeUnits({CDI: "inactive", PLUGIN: "active", GFD: "active"})
    assert refresh_consumers(units, DEFAULT_REFRESH_UNITS) == (CDI, PLUGIN, GFD)
    assert units.queries == [DEFAULT_REFRESH_UNITS]
    assert units.calls == [
        ("start", (CDI,)),
        ("stop", (PLUGIN,)),
        ("start", (PLUGIN,)),
        ("stop", (GFD,)),
        ("start", (GFD,)),
    ]


def test_stopped_consumers_stay_stopped() -> None:
    """A device plugin the operator stopped is not started by a relayout."""
    units = FakeUnits({PLUGIN: "inactive", GFD: "active"})
    assert refresh_consumers(units, (PLUGIN, GFD)) == (GFD,)
    assert ("start", (PLUGIN,)) not in units.calls
    assert units.states[PLUGIN] == "inactive"


def test_missing_cdi_oneshot_is_skipped() -> None:
    """Without the container toolkit's CDI unit nothing fails and nothing is reported for it."""
    units = FakeUnits({PLUGIN: "active"})
    assert refresh_consumers(units, DEFAULT_REFRESH_UNITS) == (PLUGIN,)


def test_failing_cdi_oneshot_is_named() -> None:
    """A CDI oneshot that exists but fails is a failure naming it, not a skip."""
    units = FakeUnits({CDI: "inactive", PLUGIN: "active"}, refuse_start=(CDI,))
    with pytest.raises(UnitError, match=f"{CDI}: systemd refused to start {CDI}"):
        refresh_consumers(units, DEFAULT_REFRESH_UNITS)
    assert ("start", (PLUGIN,)) in units.calls


def test_active_cdi_oneshot_is_restarted() -> None:
    """A oneshot with RemainAfterExit (still active) is stopped and started, so it runs again."""
    units = FakeUnits({CDI: "active"})
    assert refresh_consumers(units, (CDI,)) == (CDI,)
    assert units.calls == [("stop", (CDI,)), ("start", (CDI,))]


def test_no_refresh_units_means_no_calls() -> None:
    """`refresh-units = []` turns the refresh off: systemd is not even asked."""
    units = FakeUnits({PLUGIN: "active"})
    assert refresh_consumers(units, ()) == ()
    assert (units.calls, units.queries) == ([], [])


def test_one_failure_does_not_stop_the_others() -> None:
    """A unit that refuses to stop is named in the error after the others were restarted."""
    units = FakeUnits({PLUGIN: "active", GFD: "active"}, refuse_stop=(PLUGIN,))
    with pytest.raises(UnitError) as caught:
        refresh_consumers(units, (PLUGIN, GFD))
    message = str(caught.value)
    assert f"{PLUGIN}: systemd refused to stop {PLUGIN}" in message
    assert f"(restarted: {GFD})" in message
    assert ("start", (GFD,)) in units.calls


# ---- against a real (private) systemd user manager ----


@pytest.fixture(name="user_bus")
def fixture_user_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserManager]:
    """A booted private user manager (tests/systemd/usermanager.py), this process on its bus."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private user manager needs root and unshare")
    manager = UserManager(tmp_path / "manager")
    manager.boot()
    for name in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(name, manager.env[name])
    try:
        yield manager
    finally:
        manager.shutdown()


@pytest.mark.systemd
def test_refresh_with_real_systemd(user_bus: UserManager, tmp_path: Path) -> None:
    """A running plugin gets a new main PID; the CDI oneshot runs again; absent GFD is skipped."""
    runs = tmp_path / "cdi-runs"
    user_bus.write_unit(PLUGIN, "[Service]\nExecStart=/bin/sleep infinity\n")
    user_bus.write_unit(CDI, f"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo x >> {runs}'\n")
    user_bus.reload()
    user_bus.systemctl("start", PLUGIN, CDI)
    before = user_bus.show(PLUGIN, "MainPID")["MainPID"]
    done = refresh_consumers(SystemdUnits(user_mode=True), (CDI, PLUGIN, GFD))
    assert done == (CDI, PLUGIN)
    wait_until(lambda: runs.read_text().count("x") == 2, 10)
    wait_until(lambda: user_bus.state(PLUGIN) == "active", 10)
    assert user_bus.show(PLUGIN, "MainPID")["MainPID"] not in ("0", before)
