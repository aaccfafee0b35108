"""Upgrade, remove and purge the .deb inside a booted root whose GPUs were restored at boot.

One boot runs the whole life cycle from the collector unit and snapshots each phase: `boot`
(restored), `upgraded` (dpkg -i of a newer build, with the operator's edited layout file in
place), `removed` (dpkg -r) and `purged` (dpkg -P).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.booted_root import CONSUMERS, LAYOUT, Boot, boot
from tests.packaging.debian_root import Overlay
from tests.packaging.package_builds import Build

pytestmark = [pytest.mark.packages, pytest.mark.nspawn]

SCENARIO = """\
snapshot boot
dpkg -i /packages/{newer} < /dev/null > /results/upgrade.log 2>&1; echo $? > /results/upgrade.status
snapshot upgraded
dpkg -r migrestore < /dev/null > /results/remove.log 2>&1; echo $? > /results/remove.status
snapshot removed
dpkg -P migrestore < /dev/null > /results/purge.log 2>&1; echo $? > /results/purge.status
snapshot purged
"""
SERVICE_IDENTITY = (
    "InvocationID",
    "ExecMainStartTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
    "NRestarts",
)


@pytest.fixture(scope="module", name="lifecycle")
def fixture_lifecycle(
    debian_root: Path, builds: dict[str, Build], tmp_path_factory: pytest.TempPathFactory
) -> Boot:
    """One boot: restore, then upgrade, remove and purge the package while the system runs."""
    overlay = Overlay.create(debian_root, tmp_path_factory.mktemp("lifecycle"))
    scenario = SCENARIO.format(newer=builds["deb-2"].path.name)
    result = boot(overlay, builds["deb"].path, scenario)
    assert result.exit_status == 0, result.console[-3000:]
    return result


def _identity(result: Boot, phase: str, unit: str) -> tuple[str, ...]:
    show = result.show(phase, unit)
    return tuple(show[key] for key in SERVICE_IDENTITY)


def test_upgrade_installs_the_newer_build_without_asking(lifecycle: Boot) -> None:
    """dpkg -i of the newer build succeeds with no terminal to ask on: no conffile prompt."""
    assert lifecycle.text("upgrade.status") == "0\n", lifecycle.text("upgrade.log")
    assert lifecycle.text("upgraded/dpkg") == "0.1.0-2 ii "


def test_upgrade_keeps_the_edited_layout_file(lifecycle: Boot) -> None:
    """The operator's layout file is untouched and dpkg left no .dpkg-dist/.dpkg-new beside it."""
    assert lifecycle.text("upgraded/layout") == LAYOUT
    assert lifecycle.text("upgraded/etc-dir") == "conf.d\nmigrestore.toml\n"


def test_upgrade_does_not_restart_the_service(lifecycle: Boot) -> None:
    """Same invocation, start time and readiness time before and after the upgrade; one start."""
    assert _identity(lifecycle, "upgraded", "migrestore") == _identity(
        lifecycle, "boot", "migrestore"
    )
    assert lifecycle.show("upgraded", "migrestore")["ActiveState"] == "active"
    assert lifecycle.text("purged/migrestore.journal").count("Starting migrestore.service") == 1


def test_upgrade_leaves_the_gpus_alone(lifecycle: Boot) -> None:
    """The simulated GPUs' layout (MIG device UUIDs included) and the run history are unchanged."""
    assert lifecycle.status("upgraded") == lifecycle.status("boot")
    assert lifecycle.text("upgraded/runs") == lifecycle.text("boot/runs") == "1\n"


def test_package_operations_restart_no_consumer(lifecycle: Boot) -> None:
    """Upgrade and removal leave every GPU consumer running in its boot-time invocation."""
    for name in CONSUMERS:
        at_boot = _identity(lifecycle, "boot", name)
        assert _identity(lifecycle, "upgraded", name) == at_boot, name
        assert _identity(lifecycle, "removed", name) == at_boot, name


def test_remove_disables_the_unit(lifecycle: Boot) -> None:
    """After dpkg -r the unit is no longer enabled: its file is gone, so no boot can start it."""
    # Debian keeps the (now dangling) wants/ symlink until purge, so that a reinstall keeps the
    # administrator's choice; packaging/README.md explains it.
    assert lifecycle.text("remove.status") == "0\n", lifecycle.text("remove.log")
    assert lifecycle.text("boot/migrestore.enabled") == "enabled\n"
    assert "No such file" in lifecycle.text("removed/migrestore.enabled")
    assert lifecycle.show("removed", "migrestore")["LoadState"] == "not-found"


def test_remove_stops_nothing(lifecycle: Boot) -> None:
    """Removing the package does not stop the running service (nor what is ordered after it)."""
    removed = lifecycle.show("removed", "migrestore")
    assert removed["ActiveState"] == "active"
    assert _identity(lifecycle, "removed", "migrestore") == _identity(
        lifecycle, "boot", "migrestore"
    )


def test_remove_keeps_state_and_layout(lifecycle: Boot) -> None:
    """Run records and the layout file stay until purge; dpkg shows the package as removed."""
    assert "last-run.json" in lifecycle.text("removed/state-dir").split()
    assert lifecycle.text("removed/layout") == LAYOUT
    assert lifecycle.text("removed/dpkg") == "0.1.0-2 rc "


def test_purge_removes_state_layout_and_enablement(lifecycle: Boot) -> None:
    """dpkg -P deletes the state directory, /etc/migrestore and the enablement symlink."""
    assert lifecycle.text("purge.status") == "0\n", lifecycle.text("purge.log")
    assert lifecycle.text("purged/state-dir") == "absent\n"
    assert lifecycle.text("purged/etc-dir") == "absent\n"
    assert "migrestore.service" not in lifecycle.text("purged/wants").split()
    assert "migrestore.service" in lifecycle.text("boot/wants").split()
