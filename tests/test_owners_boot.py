"""The boot restore and other owners of MIG: a containerized driver is "nothing to restore on the
host" (exit 5, READY=1) and "nothing to verify" for verify (exit 5, which the units let pass), and
an enabled nvidia-mig-manager is named in the status line."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from migrestore import simulator
from migrestore.errors import ExitCode

from .simhost import ONE_INSTANCE_ON_H100, make_host, mutations
from .test_apply import H100
from .test_doctor_owners import enable_mig_manager
from .test_lost_gpu import Notifications, fixture_notifications  # noqa: F401

UNITS = Path(__file__).resolve().parents[1] / "units"


def test_containerized_driver_at_boot_is_nothing_to_restore(
    tmp_path: Path, notifications: Notifications
) -> None:
    """/run/nvidia/driver and no NVML: one line, exit 5, READY=1, no GPU call, no driver wait."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    simulator.unload_driver(host.state)
    root = tmp_path / "root"
    (root / "run/nvidia/driver").mkdir(parents=True)
    result = host.run("--sysroot", str(root), "apply", "--boot")
    assert result.code == 5 == int(ExitCode.NOT_ON_HOST), result
    line = "driver runs in a container (/run/nvidia/driver): nothing to restore on the host"
    assert result.out.strip().splitlines()[-1] == line
    assert "driver_in_container" in result.err
    notes = notifications.text()
    assert f"STATUS={line}" in notes
    assert "READY=1" in notes
    assert "waiting for the NVIDIA driver" not in notes


def test_operator_toolkit_alone_is_a_containerized_driver(tmp_path: Path) -> None:
    """At boot /run is empty: the operator's toolkit on disk and no NVML say it as well."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    simulator.unload_driver(host.state)
    root = tmp_path / "root"
    (root / "usr/local/nvidia/toolkit").mkdir(parents=True)
    result = host.run("--sysroot", str(root), "apply", "--boot")
    assert result.code == 5, result
    assert "(/usr/local/nvidia/toolkit)" in result.out


def test_container_traces_with_nvml_on_the_host_restore_as_usual(tmp_path: Path) -> None:
    """/run/nvidia/driver present but NVML opens on the host: the layout is restored, exit 0."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    root = tmp_path / "root"
    (root / "run/nvidia/driver").mkdir(parents=True)
    result = host.run("--sysroot", str(root), "apply", "--boot")
    assert result.code == 0, result
    assert mutations(host.counters()) > 0
    assert host.run("verify").code == 0


def test_no_nvml_without_container_traces_still_fails(tmp_path: Path) -> None:
    """No driver and no trace of a driver container: the usual failure (exit 1), not exit 5."""
    host = make_host(
        tmp_path,
        (H100, 1),
        layout="version = 1\n[restore]\ndriver-timeout = 0.2\n" + ONE_INSTANCE_ON_H100[11:],
    )
    simulator.unload_driver(host.state)
    (tmp_path / "root").mkdir()
    result = host.run("--sysroot", str(tmp_path / "root"), "apply", "--boot")
    assert result.code == 1, result
    assert "nothing to restore" not in result.out


def test_by_hand_apply_is_not_turned_into_exit_5(tmp_path: Path) -> None:
    """Only the boot restore says "nothing to restore on the host"; a by-hand apply fails (1)."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    simulator.unload_driver(host.state)
    (tmp_path / "root/run/nvidia/driver").mkdir(parents=True)
    result = host.run("--sysroot", str(tmp_path / "root"), "apply")
    assert result.code == 1, result


@pytest.mark.parametrize(
    "name", ["migrestore.service", "migrestore-reload.service", "migrestore-verify.service"]
)
def test_units_count_exit_5_as_success(name: str) -> None:
    """The boot and reload restores' and the drift check's SuccessExitStatus= hold exit 5: such a
    host has no failed unit at every boot, driver reload or check."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNITS / name)
    assert unit["Service"]["SuccessExitStatus"].split() == [str(int(ExitCode.NOT_ON_HOST))]


def test_verify_with_a_containerized_driver_says_nothing_to_verify(tmp_path: Path) -> None:
    """verify: /run/nvidia/driver and no NVML is one line and exit 5 (the gate lets it pass);
    with --json, exit 5 and nothing on stdout (no verify document describes it)."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    simulator.unload_driver(host.state)
    (tmp_path / "root/run/nvidia/driver").mkdir(parents=True)
    result = host.run("--sysroot", str(tmp_path / "root"), "verify")
    assert result.code == 5, result
    assert result.out.strip().splitlines()[-1] == (
        "driver runs in a container (/run/nvidia/driver): nothing to verify on the host"
    )
    assert "driver_in_container" in result.err
    as_json = host.run("--sysroot", str(tmp_path / "root"), "verify", "--json")
    assert (as_json.code, as_json.out) == (5, "")


def test_verify_without_nvml_or_container_fails(tmp_path: Path) -> None:
    """verify: no NVML and no driver container is the usual failure (exit 1)."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    simulator.unload_driver(host.state)
    (tmp_path / "root").mkdir()
    result = host.run("--sysroot", str(tmp_path / "root"), "verify")
    assert result.code == 1, result
    assert "nothing to verify" not in result.out


def test_boot_status_line_names_enabled_mig_manager(
    tmp_path: Path, notifications: Notifications
) -> None:
    """nvidia-mig-manager enabled below the root: the final STATUS= names it, the journal too."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    root = tmp_path / "root"
    enable_mig_manager(root)
    result = host.run("--sysroot", str(root), "apply", "--boot")
    assert result.code == 0, result
    assert "other_mig_owner" in result.err
    status = [n for n in notifications.text().splitlines() if n.startswith("STATUS=")][-1]
    assert status.startswith("STATUS=1 GPU(s) in layout")
    assert status.endswith(
        "; other MIG owner: nvidia-mig-manager.service is enabled (multi-user.target) "
        "and repartitions the GPUs too"
    )


def test_boot_status_line_without_other_owner(tmp_path: Path, notifications: Notifications) -> None:
    """Masked nvidia-mig-manager: no owner in the status line, no warning."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    root = tmp_path / "root"
    enable_mig_manager(root)
    (root / "etc/systemd/system/nvidia-mig-manager.service").symlink_to("/dev/null")
    result = host.run("--sysroot", str(root), "apply", "--boot")
    assert result.code == 0, result
    assert "other_mig_owner" not in result.err
    assert "other MIG owner" not in notifications.text()
