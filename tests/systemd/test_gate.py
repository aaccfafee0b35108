"""The opt-in gate (units/gate-consumers.conf) refuses to start a consumer on a drifted layout and
never propagates a stop or restart of migrestore.service to it.

A fake Docker carries the shipped drop-in (its `migrestore` path pointed at this checkout, see
bootrig) under a private user manager.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .bootrig import BootRig
from .test_boot import BOOT_TIMEOUT, DRIFT, IN_SYNC, layout, restoring_h100, started
from .usermanager import UserManager

pytestmark = pytest.mark.systemd

DOCKER = "docker.service"


@pytest.fixture(name="rig")
def fixture_rig(manager: UserManager, tmp_path: Path) -> BootRig:
    """A simulated H100 with the layout, the shipped unit, and a gated Docker stand-in."""
    rig = restoring_h100(manager, tmp_path)
    rig.install_consumer(DOCKER, gated=True)
    return rig


def boot(rig: BootRig) -> str:
    """Boot; the restore succeeds and Docker starts. Returns Docker's main PID."""
    rig.enable("migrestore.service", DOCKER)
    rig.manager.boot()
    rig.manager.wait_settled("migrestore.service", DOCKER, timeout=BOOT_TIMEOUT)
    assert rig.manager.state("migrestore.service") == "active"
    assert rig.manager.state(DOCKER) == "active"
    pid = rig.manager.show(DOCKER, "MainPID")["MainPID"]
    assert pid != "0"
    return pid


def test_restarting_the_restore_keeps_the_gated_consumer_running(rig: BootRig) -> None:
    """`systemctl restart migrestore` runs the restore again; Docker keeps its main process."""
    pid = boot(rig)
    first = rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")
    rig.manager.systemctl("restart", "migrestore.service")
    assert rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic") > first
    assert rig.manager.show(DOCKER, "ActiveState", "MainPID") == {
        "ActiveState": "active",
        "MainPID": pid,
    }
    assert [e.action for e in rig.read_events()] == ["start"]


def test_stopping_the_restore_keeps_the_gated_consumer_running(rig: BootRig) -> None:
    """`systemctl stop migrestore` stops only migrestore.service."""
    pid = boot(rig)
    rig.manager.systemctl("stop", "migrestore.service")
    assert rig.manager.state("migrestore.service") == "inactive"
    assert rig.manager.show(DOCKER, "MainPID")["MainPID"] == pid


def test_gated_consumer_refuses_to_start_on_a_drifted_layout(rig: BootRig) -> None:
    """The layout file changes under a running host: a (re)start of Docker fails in its gate
    (`migrestore verify` exits 3) and records no start; once the GPUs match again, it starts."""
    boot(rig)
    rig.manager.systemctl("stop", DOCKER)
    rig.layout(layout(profile="1g.10gb"))
    assert rig.migrestore("verify", check=False).returncode == DRIFT
    refused = rig.manager.systemctl("start", DOCKER, check=False)
    assert refused.returncode != 0
    assert rig.manager.show(DOCKER, "ActiveState", "Result") == {
        "ActiveState": "failed",
        "Result": "exit-code",
    }
    assert [e.action for e in rig.read_events()].count("start") == 1
    rig.layout(layout())
    rig.manager.systemctl("start", DOCKER)
    assert rig.manager.state(DOCKER) == "active"
    assert started(rig)[DOCKER].verify == IN_SYNC
