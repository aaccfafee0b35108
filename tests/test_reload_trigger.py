"""The restore after a driver reload: the shipped udev rule and migrestore-reload.service, read as
files (tests/systemd/test_reload.py runs them under a real systemd)."""

from __future__ import annotations

import pytest

from migrestore import consumers
from tests import udev_standin
from tests.simhost import ROOT

BOOT_UNIT = ROOT / "units" / "migrestore.service"
RELOAD_UNIT = ROOT / "units" / "migrestore-reload.service"
START = ["/bin/systemctl", "--no-block", "start", "migrestore-reload.service"]
# What the reload unit sets differently from the boot unit in [Service], each for a reason: it
# goes inactive when done (no RemainAfterExit=) so the next reload starts it again.
OWN_SERVICE_KEYS = {"RemainAfterExit"}


def settings(name: str, section: str) -> list[str]:
    """The `key=value` lines of one section of a unit file, comments dropped, in file order."""
    found, current = [], ""
    for line in RELOAD_UNIT.parent.joinpath(name).read_text().splitlines():
        if line.startswith("["):
            current = line
        elif current == f"[{section}]" and line and not line.startswith("#"):
            found.append(line)
    return found


def values(name: str, section: str, key: str) -> set[str]:
    """Every unit named by `key=` lines (repeated keys add up)."""
    lines = settings(name, section)
    return {
        name
        for line in lines
        if line.startswith(f"{key}=")
        for name in line[len(key) + 1 :].split()
    }


def test_the_rule_starts_the_unit_when_the_nvidia_module_is_loaded() -> None:
    """The kernel's add event for the nvidia module runs one non-blocking start of the unit."""
    assert udev_standin.commands(udev_standin.module_event("add", "nvidia")) == [START]


@pytest.mark.parametrize(
    ("action", "module"),
    [
        ("remove", "nvidia"),
        ("add", "nvidia_uvm"),
        ("add", "nvidia_modeset"),
        ("add", "nvidia_drm"),
        ("add", "nvidiafb"),
        ("add", "nouveau"),
    ],
)
def test_the_rule_ignores_other_module_events(action: str, module: str) -> None:
    """An unload, or a load of another module (nvidia_uvm, nvidia_drm, ...), starts nothing."""
    assert udev_standin.commands(udev_standin.module_event(action, module)) == []


def test_the_rule_ignores_device_events() -> None:
    """A PCI event of a GPU bound to nvidia (not the module) starts nothing."""
    event = {"ACTION": "add", "SUBSYSTEM": "pci", "KERNEL": "0000:07:00.0", "DRIVER": "nvidia"}
    assert udev_standin.commands(event) == []


def test_the_reload_unit_is_hardened_as_the_boot_unit() -> None:
    """Every [Service] setting of the boot unit is the reload unit's too, but RemainAfterExit=,
    so the reload restore runs with the same sandbox, notify protocol and start timeout."""
    boot = [
        s
        for s in settings("migrestore.service", "Service")
        if s.split("=")[0] not in OWN_SERVICE_KEYS
    ]
    assert settings("migrestore-reload.service", "Service") == boot


def test_the_reload_unit_waits_for_the_driver_and_the_boot_restore() -> None:
    """After= the driver's daemons and the boot unit, the kill switch, a start limit, and no
    [Install] section (only the udev rule starts it)."""
    after = values("migrestore-reload.service", "Unit", "After")
    assert set(consumers.STARTED_BEFORE) | {"migrestore.service"} <= after
    unit = settings("migrestore-reload.service", "Unit")
    assert "ConditionKernelCommandLine=!migrestore=off" in unit
    assert {"StartLimitIntervalSec=10min", "StartLimitBurst=3"} <= set(unit)
    assert "[Install]" not in RELOAD_UNIT.read_text().splitlines()
    assert "migrestore-reload.service" in values("migrestore.service", "Unit", "Before")
