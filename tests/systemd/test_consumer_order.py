"""Every boot-time GPU consumer waits for the restore, DGX's reset target included, and
nvidia-mig-manager (the other owner of MIG) cannot run beside migrestore.

A private user manager boots the shipped unit with fake consumers that have no ordering of their
own (see bootrig): only migrestore.service's Before= and WantedBy= can make them wait.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .bootrig import MIG_MANAGER, MIG_MANAGER_UNIT, BootRig
from .test_boot import BOOT_TIMEOUT, IN_SYNC, restoring_h100, started
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

ENGINES = ("docker.service", "containerd.service", "slurmd.service")
RESET_TARGET = "nvidia-gpu-reset.target"
# As NVIDIA ships it on DGX OS: a plain target; units wait on it with Wants= and After=.
RESET_TARGET_UNIT = "[Unit]\nDescription=NVIDIA GPU reset (stand-in for DGX OS's target)\n"
DGX_UNIT = "dgx-telemetry.service"
DGX_WAIT = f"[Unit]\nWants={RESET_TARGET}\nAfter={RESET_TARGET}\n"


@pytest.fixture(name="rig")
def fixture_rig(manager: UserManager, tmp_path: Path) -> BootRig:
    """A simulated single-H100 host, the layout to restore, and the shipped unit."""
    return restoring_h100(manager, tmp_path)


def boot(rig: BootRig, *units: str) -> float:
    """Enable migrestore and the consumers, boot; returns when migrestore became ready."""
    rig.enable("migrestore.service", *rig.consumers, *units)
    rig.manager.boot()
    rig.manager.wait_settled("migrestore.service", *rig.consumers, *units, timeout=BOOT_TIMEOUT)
    assert rig.manager.state("migrestore.service") == "active"
    return rig.manager.monotonic("migrestore.service", "ActiveEnterTimestampMonotonic")


def test_container_engines_and_slurmd_start_after_the_restore(rig: BootRig) -> None:
    """docker, containerd and slurmd, with no ordering of their own, start after READY and
    find the layout restored."""
    for name in ENGINES:
        rig.install_consumer(name)
    ready = boot(rig)
    for name in ENGINES:
        assert rig.manager.monotonic(name, "InactiveExitTimestampMonotonic") >= ready, name
    wait_until(lambda: len(started(rig)) == len(ENGINES), 10)
    assert {name: e.verify for name, e in started(rig).items()} == dict.fromkeys(ENGINES, IN_SYNC)


def test_units_waiting_on_the_reset_target_wait_for_the_restore(rig: BootRig) -> None:
    """On DGX OS a unit waits on nvidia-gpu-reset.target (Wants=, After=): enabling migrestore
    links it into the target's wants, and the target (so the unit) comes after READY."""
    rig.manager.write_unit(RESET_TARGET, RESET_TARGET_UNIT)
    rig.install_consumer(DGX_UNIT)
    rig.manager.write_drop_in(DGX_UNIT, "dgx.conf", DGX_WAIT)
    ready = boot(rig)
    wants = rig.manager.unit_dir / f"{RESET_TARGET}.wants" / "migrestore.service"
    assert wants.is_symlink()
    assert rig.manager.monotonic(RESET_TARGET, "ActiveEnterTimestampMonotonic") >= ready
    assert rig.manager.monotonic(DGX_UNIT, "InactiveExitTimestampMonotonic") >= ready
    wait_until(lambda: DGX_UNIT in started(rig), 10)
    assert started(rig)[DGX_UNIT].verify == IN_SYNC


def test_without_the_reset_target_nothing_breaks(rig: BootRig) -> None:
    """No package provides nvidia-gpu-reset.target: a unit that waits on it still starts, after
    the restore, and the target stays not-found (we ship no stand-in for NVIDIA's file)."""
    rig.install_consumer("nvsm.service")
    rig.manager.write_drop_in("nvsm.service", "dgx.conf", DGX_WAIT)
    ready = boot(rig)
    assert rig.manager.show(RESET_TARGET, "LoadState")["LoadState"] == "not-found"
    assert rig.manager.state("nvsm.service") == "active"
    assert rig.manager.monotonic("nvsm.service", "InactiveExitTimestampMonotonic") >= ready


def test_nvidia_mig_manager_conflicts_with_the_restore(rig: BootRig) -> None:
    """One owner of MIG: starting nvidia-mig-manager stops migrestore.service, and starting
    migrestore.service stops nvidia-mig-manager."""
    rig.manager.write_unit(MIG_MANAGER, MIG_MANAGER_UNIT)
    boot(rig)
    rig.manager.systemctl("start", MIG_MANAGER)
    assert rig.manager.state(MIG_MANAGER) == "active"
    assert rig.manager.state("migrestore.service") == "inactive"
    rig.manager.systemctl("start", "migrestore.service")
    assert rig.manager.state("migrestore.service") == "active"
    assert rig.manager.state(MIG_MANAGER) == "inactive"
