"""units/: the shipped unit and drop-in pass systemd's own checks and keep their design."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from migrestore import consumers

from .usermanager import ROOT, UserManager

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"),
]

UNIT = ROOT / "units" / "migrestore.service"
VERIFY_SERVICE = ROOT / "units" / "migrestore-verify.service"
VERIFY_TIMER = ROOT / "units" / "migrestore-verify.timer"
RELOAD_UNIT = ROOT / "units" / "migrestore-reload.service"


def systemd_version() -> int:
    """The major version of this machine's systemd (0 when systemd-analyze cannot tell)."""
    done = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=False
    )
    found = re.match(r"systemd (\d+)", done.stdout)
    return int(found.group(1)) if found else 0


# `verify --root=` and `security --offline=` arrived in systemd 250; on older systemd (Debian
# 11's 247) the matrix runs `systemd-analyze verify` on the installed unit in a booted root
# (tests/packaging/test_matrix.py).
OFFLINE_ANALYZE = pytest.mark.skipif(
    shutil.which("systemd-analyze") is not None and systemd_version() < 250,
    reason="systemd-analyze verify --root / security --offline need systemd 250",
)
GATE = ROOT / "units" / "gate-consumers.conf"
MAX_EXPOSURE = 2.5


def installed_root(tmp_path: Path) -> Path:
    """A root with the unit installed and stub binaries, as a package would leave it."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in (UNIT, RELOAD_UNIT, VERIFY_SERVICE, VERIFY_TIMER):
        shutil.copy(unit, units)
    # The drift check's units keep their default dependencies, which need this target to exist.
    (units / "sysinit.target").write_text("[Unit]\nDescription=stand-in\n")
    (units / "kubelet.service").write_text(
        "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/kubelet\n"
    )
    (units / "kubelet.service.d").mkdir()
    shutil.copy(GATE, units / "kubelet.service.d" / "50-migrestore-gate.conf")
    for binary in ("usr/bin/migrestore", "usr/bin/kubelet", "bin/sh"):
        (root / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / binary).write_text("#!/bin/sh\n")
        (root / binary).chmod(0o755)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze."""
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, check=False, timeout=30
    )


@OFFLINE_ANALYZE
@pytest.mark.parametrize(
    "unit",
    [
        "migrestore.service",
        "migrestore-reload.service",
        "kubelet.service",
        "migrestore-verify.service",
        "migrestore-verify.timer",
    ],
)
def test_verify_is_clean(tmp_path: Path, unit: str) -> None:
    """`systemd-analyze verify` prints nothing (it exits 0 even on unknown keys) for the units,
    the reload unit, the drift timer and its service, and for a consumer carrying the gate
    drop-in."""
    result = analyze("verify", "--man=no", f"--root={installed_root(tmp_path)}", unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@OFFLINE_ANALYZE
@pytest.mark.parametrize("unit", [UNIT, RELOAD_UNIT, VERIFY_SERVICE], ids=lambda path: path.name)
def test_security_exposure(unit: Path) -> None:
    """The hardening keeps `systemd-analyze security` exposure at or below 2.5 (every service)."""
    result = analyze("security", "--offline=yes", str(unit))
    found = re.search(rf"Overall exposure level for {unit.name}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE


def test_loaded_unit_keeps_its_design(booted: UserManager) -> None:
    """A real manager reads the shipped unit as designed: notify, ordering, kill switch,
    bounded start, capabilities, and no device allow-list that would hide /dev/nvidia*."""
    booted.write_unit("migrestore.service", UNIT.read_text())
    booted.reload()
    shown = booted.show(
        "migrestore.service",
        "Type",
        "NotifyAccess",
        "RemainAfterExit",
        "Before",
        "After",
        "Conflicts",
        "TimeoutStartUSec",
        "CapabilityBoundingSet",
        "DevicePolicy",
        "DeviceAllow",
        "StateDirectory",
        "RuntimeDirectory",
        "ExecStart",
    )
    assert (shown["Type"], shown["NotifyAccess"], shown["RemainAfterExit"]) == (
        "notify",
        "main",
        "yes",
    )
    before = {*consumers.STARTED_AFTER, "nvidia-gpu-reset.target", "shutdown.target"}
    before.add("migrestore-reload.service")
    assert before <= set(shown["Before"].split())
    assert set(consumers.STARTED_BEFORE) <= set(shown["After"].split())
    assert not {"sysinit.target", "basic.target"} & set(shown["Before"].split())
    assert set(shown["Conflicts"].split()) == {"shutdown.target", "nvidia-mig-manager.service"}
    assert shown["TimeoutStartUSec"] == "5min"
    assert set(shown["CapabilityBoundingSet"].split()) == {
        "cap_sys_admin",
        "cap_mknod",
        "cap_sys_ptrace",
    }
    assert (shown["DevicePolicy"], shown.get("DeviceAllow", "")) == ("auto", "")
    assert (shown["StateDirectory"], shown["RuntimeDirectory"]) == ("migrestore", "migrestore")
    assert (
        "path=/usr/bin/migrestore ; argv[]=/usr/bin/migrestore apply --boot" in shown["ExecStart"]
    )


def test_no_device_allow_list() -> None:
    """No setting that restricts /dev to an allow-list: PrivateDevices=, DeviceAllow=,
    DevicePolicy= and ProtectClock= (which adds `DeviceAllow=char-rtc r`) would hide
    /dev/nvidia* and the /dev/nvidia-caps nodes created at run time."""
    settings = [line.split("=", 1)[0] for line in UNIT.read_text().splitlines() if "=" in line]
    active = [key for key in settings if not key.startswith("#")]
    assert not {"PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock"} & set(active)


@pytest.mark.parametrize("unit", [UNIT, RELOAD_UNIT, VERIFY_SERVICE], ids=lambda p: p.name)
def test_the_layout_directory_stays_readable(unit: Path) -> None:
    """No sandboxing setting hides /etc or /etc/migrestore (the layout file and its conf.d
    drop-ins): no InaccessiblePaths=, TemporaryFileSystem= or bind mount over them, and
    ProtectSystem= leaves /etc readable."""
    lines = [line for line in unit.read_text().splitlines() if re.match(r"[A-Z]\w*=", line)]
    settings = [tuple(line.split("=", 1)) for line in lines]
    hiding = {"InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths"}
    paths = [p.lstrip("-+").split(":")[0] for k, v in settings if k in hiding for p in v.split()]
    assert [p for p in paths if "/etc/migrestore/conf.d".startswith(p)] == []
    assert {v for k, v in settings if k == "ProtectSystem"} <= {"strict", "full", "yes"}


def test_enabled_for_boot_and_for_the_dgx_reset_target(manager: UserManager) -> None:
    """`systemctl enable` links the unit into multi-user.target and nvidia-gpu-reset.target (which
    NVIDIA's packages provide on DGX OS; enabling works without it)."""
    manager.write_unit("migrestore.service", UNIT.read_text())
    manager.enable("migrestore.service")
    for target in ("multi-user.target", "nvidia-gpu-reset.target"):
        assert (manager.unit_dir / f"{target}.wants" / "migrestore.service").is_symlink(), target


def test_ships_no_reset_target_of_its_own() -> None:
    """units/ holds no nvidia-gpu-reset.target (nor a drop-in for it): that file is NVIDIA's."""
    assert sorted(p.name for p in UNIT.parent.iterdir()) == [
        "90-migrestore-reload.rules",
        "gate-consumers.conf",
        "migrestore-reload.service",
        "migrestore-verify.service",
        "migrestore-verify.timer",
        "migrestore.service",
    ]


def test_loaded_drift_check_keeps_its_design(booted: UserManager) -> None:
    """The drift timer fires 5 minutes after boot and 5 minutes after each check; its service
    only reads (verify, skipping during an apply), after the restore, with CAP_SYS_ADMIN alone,
    sharing /run/migrestore (kept when it stops) and writing only the collector directory."""
    booted.write_unit("migrestore-verify.service", VERIFY_SERVICE.read_text())
    booted.write_unit("migrestore-verify.timer", VERIFY_TIMER.read_text())
    booted.reload()
    timer = booted.show("migrestore-verify.timer", "Unit", "UnitFileState")
    assert timer == {"Unit": "migrestore-verify.service", "UnitFileState": "disabled"}
    # One TimersMonotonic= line per timer (show() would keep only the last).
    timers = booted.systemctl("show", "migrestore-verify.timer", "-p", "TimersMonotonic").stdout
    assert "{ OnBootUSec=5min ;" in timers
    assert "{ OnUnitActiveUSec=5min ;" in timers
    shown = booted.show(
        "migrestore-verify.service",
        "Type",
        "ExecStart",
        "After",
        "CapabilityBoundingSet",
        "RuntimeDirectory",
        "RuntimeDirectoryPreserve",
        "ReadWritePaths",
        "ProtectSystem",
        "UnitFileState",
    )
    assert shown["Type"] == "oneshot"
    command = "argv[]=/usr/bin/migrestore verify --skip-during-apply ;"
    assert command in shown["ExecStart"]
    assert "migrestore.service" in shown["After"].split()
    assert shown["CapabilityBoundingSet"] == "cap_sys_admin"
    assert (shown["RuntimeDirectory"], shown["RuntimeDirectoryPreserve"]) == ("migrestore", "yes")
    assert shown["ReadWritePaths"] == "-/var/lib/prometheus/node-exporter"
    assert shown["ProtectSystem"] == "strict"
    assert shown["UnitFileState"] == "static"
