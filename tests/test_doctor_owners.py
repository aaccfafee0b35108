"""doctor names the other owners of MIG: an enabled nvidia-mig-manager (its enablement symlinks in
a temporary root, and a real private systemd that runs it), and a driver that runs in a container
(/run/nvidia/driver, no NVML on the host)."""

from __future__ import annotations

from pathlib import Path

from migrestore import cli, simulator
from migrestore.systemd import SystemdUnits
from migrestore.verbs import doctor
from migrestore.verbs.doctor import Status
from tests.fakes import FakeUnits
from tests.systemd.bootrig import MIG_MANAGER, MIG_MANAGER_UNIT
from tests.systemd.conftest import fixture_booted, fixture_manager  # noqa: F401
from tests.systemd.usermanager import UserManager
from tests.test_doctor import H100, by_id, context, simulated


def enable_mig_manager(root: Path, target: str = "multi-user.target") -> None:
    """What `systemctl enable nvidia-mig-manager` leaves below `root`."""
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / MIG_MANAGER).symlink_to(f"/lib/systemd/system/{MIG_MANAGER}")


def test_enabled_mig_manager_fails(tmp_path: Path) -> None:
    """nvidia-mig-manager enabled (as DGX OS does): FAIL naming it and where, exit 1."""
    state = simulated(tmp_path, (H100, 1))
    enable_mig_manager(tmp_path / "root")
    enable_mig_manager(tmp_path / "root", "nvidia-gpu-reset.target")
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    check = checks["owner.mig-manager"]
    assert check.status is Status.FAIL
    assert f"{MIG_MANAGER} is enabled (multi-user.target, nvidia-gpu-reset.target)" in (
        check.message
    )
    assert "two owners of MIG" in check.message
    assert check.hint.startswith(f"systemctl disable --now {MIG_MANAGER}")
    args = ["--simulate", str(state), "--sysroot", str(tmp_path / "root"), "doctor"]
    assert cli.main([*args, "--json"]) == 1


def test_mig_manager_not_enabled_or_masked_passes(tmp_path: Path) -> None:
    """Installed but not enabled, or enabled and masked in /etc: pass."""
    state = simulated(tmp_path, (H100, 1))
    root = tmp_path / "root"
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system" / MIG_MANAGER).write_text(MIG_MANAGER_UNIT)
    checks = by_id(doctor.diagnose(context(tmp_path, state, root), FakeUnits(read_only=True)))
    assert checks["owner.mig-manager"].status is Status.PASS
    enable_mig_manager(root)
    (root / "etc/systemd/system" / MIG_MANAGER).symlink_to("/dev/null")
    checks = by_id(doctor.diagnose(context(tmp_path, state, root), FakeUnits(read_only=True)))
    assert checks["owner.mig-manager"].status is Status.PASS
    assert "masked" in checks["owner.mig-manager"].message


def test_running_mig_manager_seen_through_systemd_fails(
    booted: UserManager, tmp_path: Path
) -> None:
    """Started by hand in a real (private) systemd, not enabled: doctor asks systemd and fails."""
    booted.write_unit(MIG_MANAGER, MIG_MANAGER_UNIT)
    booted.reload()
    booted.systemctl("start", MIG_MANAGER)
    state = simulated(tmp_path, (H100, 1))
    (tmp_path / "root").mkdir(exist_ok=True)
    units = SystemdUnits(user_mode=True)
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), units))
    check = checks["owner.mig-manager"]
    assert check.status is Status.FAIL
    assert f"{MIG_MANAGER} is running" in check.message


def test_containerized_driver_has_its_own_message(tmp_path: Path) -> None:
    """The GPU operator's driver container (/run/nvidia/driver) and no NVML on the host: one
    FAIL saying the driver runs in a container, not "load the driver"."""
    state = simulated(tmp_path, (H100, 1))
    simulator.unload_driver(state)
    (tmp_path / "root/run/nvidia/driver").mkdir(parents=True)
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    driver = checks["driver"]
    assert driver.status is Status.FAIL
    assert driver.message.startswith("the NVIDIA driver runs in a container (/run/nvidia/driver)")
    assert "no NVML on the host" in driver.message
    assert "modprobe" not in driver.hint


def test_containerized_driver_with_nvml_is_not_flagged(tmp_path: Path) -> None:
    """/run/nvidia/driver present but NVML works on the host: the usual driver line."""
    state = simulated(tmp_path, (H100, 1))
    (tmp_path / "root/run/nvidia/driver").mkdir(parents=True)
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    assert checks["driver"].status is Status.PASS


def test_simulated_host_without_sysroot_checks_no_owner_files(tmp_path: Path) -> None:
    """No --sysroot on a simulated host: the owner checks are skipped, not run on this machine."""
    state = simulated(tmp_path, (H100, 1))
    checks = by_id(doctor.diagnose(context(tmp_path, state, None), FakeUnits(read_only=True)))
    assert checks["owner"].status is Status.SKIP
