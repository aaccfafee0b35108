"""doctor: the readiness checklist on simulated hosts and fixture trees (one from the real H200)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from migrestore import cli, runs, simulator
from migrestore.context import Context
from migrestore.verbs import doctor
from migrestore.verbs.doctor import Check, Status
from tests.fakes import FakeUnits, fake_process

HARDWARE = Path(__file__).parent / "fixtures" / "simulator" / "h200-driver-580"
H200_UUID = "GPU-5fff1434-755c-2f33-9fa1-fb59d3346498"
H200_BUS = "00000000:00:06.0"
A100 = "NVIDIA A100-SXM4-40GB"
H100 = "NVIDIA H100 80GB HBM3"
UNIT_TEXT = "[Unit]\nDescription=Restore NVIDIA MIG partitioning\n"


def context(
    tmp_path: Path, state: Path, sysroot: Path | None, layout: Path | None = None
) -> Context:
    """The global options of `migrestore --simulate STATE [--sysroot DIR] --config LAYOUT`."""
    return Context(
        config=layout or tmp_path / "no-layout.toml",
        simulate=state,
        state_dir=tmp_path / "lib",
        run_dir=tmp_path / "run",
        sysroot=sysroot or Path("/"),
        sysroot_given=sysroot is not None,
        allow_insecure_config=False,
        debug=False,
    )


def by_id(checks: tuple[Check, ...]) -> dict[str, Check]:
    """Checks by their id."""
    return {c.id: c for c in checks}


def simulated(tmp_path: Path, *gpus: tuple[str, int], driver: str = "580.159.04") -> Path:
    """A simulated host keeping a fake /proc below tmp_path/root; returns the state file."""
    state = tmp_path / "host.json"
    simulator.init_host(state, list(gpus), driver=driver, sysroot=tmp_path / "root")
    return state


def make_node(path: Path, minor: int, mode: int) -> None:
    """A character device like the driver's /dev/nvidia-caps nodes (major 241)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(241, minor))


def probe_section(name: str) -> list[str]:
    """The lines of one `== name` section of the real H200's read-only probe."""
    lines = (HARDWARE / "host-readonly-probe.txt").read_text().splitlines()
    start = lines.index(f"== {name}") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("== "))
    return lines[start:end]


@pytest.fixture(name="h200")
def fixture_h200(tmp_path: Path) -> Context:
    """The real H200 (driver 580.159.04, MIG off) as a simulated host and a sysroot of its files."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    state = tmp_path / "h200.json"
    root = tmp_path / "root"
    simulator.init_host(
        state, [("NVIDIA H200", 1)], identities=[(H200_UUID, H200_BUS)], sysroot=root
    )
    shutil.copy(
        HARDWARE / "proc-driver-nvidia-caps-mig-minors.txt",
        root / "proc/driver/nvidia-caps/mig-minors",
    )
    (root / "proc/modules").write_text("\n".join(probe_section("modules")) + "\n")
    make_node(root / "dev/nvidia-caps/nvidia-cap1", 1, 0o400)
    make_node(root / "dev/nvidia-caps/nvidia-cap2", 2, 0o444)
    return context(tmp_path, state, root)


def test_real_h200_mig_disabled_driver_ok_no_reset_blockers(h200: Context) -> None:
    """The H200 readings: MIG mode disabled, driver 580.159.04 fine for H200, nothing blocks."""
    checks = by_id(doctor.diagnose(h200, FakeUnits(read_only=True)))
    assert checks["gpu0.model"].status is Status.PASS
    assert H200_BUS in checks["gpu0.model"].message
    assert checks["gpu0.mig-mode"].message == "MIG mode disabled"
    minimum = checks["driver.nvidia-h200"]
    assert minimum.status is Status.PASS
    assert minimum.message == "driver 580.159.04 meets 550.90.07, the MIG minimum for H200"
    resets = [c for name, c in checks.items() if name.startswith("reset.")]
    assert len(resets) == 5
    assert all(c.status is Status.PASS for c in resets), resets
    assert checks["reset.processes"].message == "no process holds /dev/nvidia*"
    assert checks["reset.nvidia-drm"].message == "nvidia_drm is not loaded"
    assert checks["caps.interface"].status is Status.PASS
    assert checks["caps.nodes"].message == "config, monitor and 0 instance node(s) present"


def test_real_h200_through_the_cli(h200: Context, capsys: pytest.CaptureFixture[str]) -> None:
    """`migrestore --simulate S --sysroot R doctor --json`: exit 0, SIMULATED, no failure."""
    assert h200.simulate is not None
    argv = ["--simulate", str(h200.simulate), "--sysroot", str(h200.sysroot)]
    argv += ["--config", str(h200.config), "--state-dir", str(h200.state_dir), "doctor", "--json"]
    assert cli.main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["simulated"] is True
    assert document["ok"] is True
    assert document["summary"]["fail"] == 0
    ids = [c["id"] for c in document["checks"]]
    assert "driver.nvidia-h200" in ids
    assert "reset.units" in ids  # D-Bus may be unavailable here: a warning, never a crash


def test_text_output_names_the_simulation(
    h200: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text checklist starts with the SIMULATED banner and ends with the counts."""
    assert h200.simulate is not None
    argv = ["--simulate", str(h200.simulate), "--sysroot", str(h200.sysroot), "doctor"]
    assert cli.main([*argv[:4], "--config", str(h200.config), *argv[4:]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("SIMULATED HOST")
    assert any(line.startswith("PASS  gpu0.mig-mode") for line in out)
    assert out[-1].startswith("doctor: ")
    assert out[-1].endswith("(SIMULATED host)")


def ampere_blockers(tmp_path: Path, *gpus: tuple[str, int]) -> Path:
    """A host whose /proc has a GPU client, nvidia_drm, nvidia-persistenced and an NVSwitch."""
    state = simulated(tmp_path, *gpus)
    simulator.attach(state, 0, "nv-hostengine", pid=812)
    root = tmp_path / "root"
    with (root / "proc/modules").open("a") as modules:
        modules.write("nvidia_drm 102400 0 - Live 0x0000000000000000 (O)\n")
    fake_process(root, 700, "nvidia-persistenced", ("/dev/nvidiactl", "/dev/nvidia0"))
    (root / "proc/driver/nvidia-nvswitch/devices/0000:05:00.0").mkdir(parents=True)
    return state


def test_reset_blockers_on_ampere_are_named(tmp_path: Path) -> None:
    """On an A100 each blocker is a warning naming it; running client units are listed."""
    state = ampere_blockers(tmp_path, (A100, 1))
    units = FakeUnits(read_only=True, running=("nvsm.service", "nvidia-persistenced.service"))
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), units))
    assert checks["reset.units"].status is Status.PASS
    assert "nvsm.service" in checks["reset.units"].message
    processes = checks["reset.processes"]
    assert processes.status is Status.WARN
    assert "nvidia-persistenced (pid 700)" in processes.message
    assert "nv-hostengine (pid 812)" in processes.message
    assert checks["reset.nvidia-drm"].status is Status.WARN
    assert "rmmod nvidia_drm" in checks["reset.nvidia-drm"].hint
    persistence = checks["reset.persistence"]
    assert persistence.status is Status.PASS  # apply lifts it for each GPU it resets
    assert persistence.message == (
        "persistence mode is on: GPU 0: apply turns persistence mode off for each GPU it resets, "
        "and on again"
    )
    fabric = checks["reset.fabric-manager"]
    assert fabric.status is Status.FAIL
    assert "nvidia-fabricmanager.service is not running" in fabric.message
    assert fabric.hint == "systemctl enable --now nvidia-fabricmanager.service"


def test_fabric_manager_running_passes(tmp_path: Path) -> None:
    """With fabric manager active the NVSwitch Ampere host passes that check."""
    state = ampere_blockers(tmp_path, (A100, 1))
    units = FakeUnits(read_only=True, running=("nvidia-fabricmanager.service",))
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), units))
    assert checks["reset.fabric-manager"].status is Status.PASS


def test_the_same_blockers_do_not_matter_on_hopper(tmp_path: Path) -> None:
    """On an H100-only host nothing needs a reset: the findings are reported, not warned about."""
    state = ampere_blockers(tmp_path, (H100, 1))
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    for name in ("reset.processes", "reset.nvidia-drm", "reset.persistence"):
        assert checks[name].status is Status.PASS, checks[name]
        assert "no GPU here needs a reset" in checks[name].message
    assert checks["reset.nvidia-drm"].message.startswith("nvidia_drm is loaded")
    assert checks["reset.fabric-manager"].message == "not needed: no Ampere GPU"


def test_systemd_out_of_reach_is_a_warning(tmp_path: Path) -> None:
    """D-Bus unavailable: the unit check warns; the others still run from the files."""
    state = ampere_blockers(tmp_path, (A100, 1))
    units = FakeUnits(read_only=True, reachable=False)
    checks = by_id(doctor.diagnose(context(tmp_path, state, tmp_path / "root"), units))
    assert checks["reset.units"].status is Status.WARN
    assert "D-Bus unavailable" in checks["reset.units"].message
    assert checks["reset.persistence"].message.startswith("persistence mode is on: GPU 0")
    assert checks["reset.fabric-manager"].status is Status.WARN


def test_simulated_host_without_sysroot_skips_file_checks(tmp_path: Path) -> None:
    """Without --sysroot a simulated host has no files: those checks say skip, nothing fails."""
    state = simulated(tmp_path, (H100, 2))
    checks = doctor.diagnose(context(tmp_path, state, None), FakeUnits(read_only=True))
    skipped = {c.id for c in checks if c.status is Status.SKIP}
    assert {"reset.processes", "reset.nvidia-drm", "caps.interface", "unit", "tooling"} <= skipped
    assert not any(c.status is Status.FAIL for c in checks)
    assert "SIMULATED" in by_id(checks)["driver"].message


def test_old_driver_fails_and_exit_status_is_1(tmp_path: Path) -> None:
    """Driver 535.104.05 is older than the H200's 550.90.07: a failure, exit 1."""
    state = simulated(tmp_path, ("NVIDIA H200", 1), driver="535.104.05")
    checks = by_id(doctor.diagnose(context(tmp_path, state, None), FakeUnits(read_only=True)))
    check = checks["driver.nvidia-h200"]
    assert check.status is Status.FAIL
    assert "older than 550.90.07" in check.message
    assert cli.main(["--simulate", str(state), "doctor"]) == 1


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA A30", "A30"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("NVIDIA B300 SXM6 AC", "B300"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000 Blackwell"),
        ("NVIDIA RTX PRO 5000 Blackwell", "RTX PRO 5000 Blackwell"),
        ("NVIDIA GH200 480GB", None),
        ("Tesla V100-SXM2-16GB", None),
    ],
)
def test_driver_minimum_table_matches_nvml_names(name: str, family: str | None) -> None:
    """Each NVML name finds its family's row (H20 is not H200; GH200 has no documented row)."""
    found = doctor.minimum_for(name)
    assert (found.gpu if found else None) == family


def test_driver_minimum_values() -> None:
    """The table holds NVIDIA's documented minimums."""
    table = {m.gpu: m.minimum for m in doctor.driver_minimums()}
    assert table["A100"] == "450.80.02"
    assert table["H200"] == "550.90.07"
    assert table["B200"] == table["GB200"] == "570.133.20"
    assert table["B300"] == "580.82.07"
    assert table["RTX PRO 5000 Blackwell"] == "575.57.08"


def test_version_key_orders_driver_and_package_versions() -> None:
    """Numeric, not textual, comparison; Debian epochs, revisions and ~rc suffixes dropped."""
    assert doctor.version_key("580.159.04") == (580, 159, 4)
    assert doctor.version_key("575.64") < doctor.version_key("575.64.05")
    assert doctor.version_key("1:2.13.0-1") == (2, 13, 0)
    assert doctor.version_key("1.17.0~rc.1-1") == (1, 17, 0)
    assert doctor.version_key("2.4.0-1") < doctor.version_key("2.5.0")


@pytest.mark.parametrize(
    ("euid", "cap_eff", "status"),
    [
        (0, 0x1FFFFFFFFFF, Status.PASS),
        (1000, 1 << 21, Status.WARN),
        (1000, 0, Status.FAIL),
        (1000, None, Status.FAIL),
    ],
)
def test_privileges(euid: int, cap_eff: int | None, status: Status) -> None:
    """Root passes; CAP_SYS_ADMIN alone warns (instances need root); neither fails."""
    assert doctor.privileges(euid, cap_eff).status is status


def write_layout(tmp_path: Path, text: str) -> Path:
    """A layout file."""
    path = tmp_path / "migrestore.toml"
    path.write_text(text)
    return path


LAYOUT = """version = 1
[[gpu]]
select = { model = "NVIDIA H100 80GB HBM3" }
  [[gpu.instance]]
  profile = "3g.40gb"
  count = 2
"""


def test_layout_valid_and_feasible(tmp_path: Path) -> None:
    """A valid layout is checked on the GPUs it selects; before apply it has steps to do."""
    state = simulated(tmp_path, (H100, 2))
    ctx = context(tmp_path, state, None, write_layout(tmp_path, LAYOUT))
    checks = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))
    assert checks["layout"].status is Status.PASS
    fit = checks["layout.fit"]
    assert fit.status is Status.PASS
    assert "fits all 2 GPU(s) it selects" in fit.message
    assert "step(s) for `migrestore apply`" in fit.message
    assert cli.main(["--simulate", str(state), "--config", str(ctx.config), "apply"]) == 0
    after = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))
    assert after["layout.fit"].message.endswith("in sync")


def test_layout_that_does_not_fit_fails(tmp_path: Path) -> None:
    """Three 3g.40gb on an H100 cannot fit: the planner's error is the failure, exit 1."""
    state = simulated(tmp_path, (H100, 1))
    layout = write_layout(tmp_path, LAYOUT.replace("count = 2", "count = 3"))
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, None, layout), FakeUnits(read_only=True))
    )
    assert checks["layout.fit"].status is Status.FAIL
    assert "3 x 3g.40gb asked, at most 2 fit" in checks["layout.fit"].message
    assert cli.main(["--simulate", str(state), "--config", str(layout), "doctor"]) == 1


def test_invalid_layout_file_fails(tmp_path: Path) -> None:
    """A layout file with an unknown key is a failure carrying the key path."""
    state = simulated(tmp_path, (H100, 1))
    layout = write_layout(tmp_path, "version = 1\nmystery = 2\n")
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, None, layout), FakeUnits(read_only=True))
    )
    assert checks["layout"].status is Status.FAIL
    assert "mystery: unknown key" in checks["layout"].message
    assert "layout.fit" not in checks


def install_unit(root: Path, enabled: bool) -> None:
    """migrestore.service in /lib/systemd/system, optionally enabled for multi-user.target."""
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/migrestore.service").write_text(UNIT_TEXT)
    if enabled:
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True)
        (wants / "migrestore.service").symlink_to("/lib/systemd/system/migrestore.service")


def test_unit_installed_and_enabled(tmp_path: Path) -> None:
    """The unit below the sysroot, enabled for multi-user.target: pass."""
    state = simulated(tmp_path, (H100, 1))
    install_unit(tmp_path / "root", enabled=True)
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    assert checks["unit"].status is Status.PASS
    assert "enabled (multi-user.target)" in checks["unit"].message


def test_hopper_without_enabled_unit_warns_that_mig_mode_is_lost(tmp_path: Path) -> None:
    """Hopper forgets MIG mode at reboot: a disabled unit warns that the mode will be lost."""
    state = simulated(tmp_path, (H100, 1))
    install_unit(tmp_path / "root", enabled=False)
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    unit = checks["unit"]
    assert unit.status is Status.WARN
    assert "not enabled: MIG mode and instances will be lost at the next reboot" in unit.message
    assert unit.hint == "systemctl enable migrestore.service"


def test_ampere_without_unit_loses_instances_only(tmp_path: Path) -> None:
    """An A100 keeps its mode: the warning speaks of the instances."""
    state = simulated(tmp_path, (A100, 1))
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    assert "not installed: MIG instances will be lost" in checks["unit"].message


def test_kill_switch_and_failed_last_run_warn(tmp_path: Path) -> None:
    """migrestore=off on the command line and a failed last run are both warnings."""
    state = simulated(tmp_path, (H100, 1))
    root = tmp_path / "root"
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz ro quiet migrestore=off\n")
    ctx = context(tmp_path, state, root)
    record = runs.RunRecord(
        time="2026-11-28T16:00:00+00:00",
        config="/etc/migrestore/migrestore.toml",
        config_sha256="0" * 64,
        result="failed",
        simulated=True,
        gpus=(runs.GpuRecord("GPU-x", 0, H100, "failed", error="create GI 9: InUse"),),
        boot=True,
    )
    runs.save(record, ctx.state_dir)
    checks = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))
    assert checks["unit.kill-switch"].status is Status.WARN
    last = checks["unit.last-run"]
    assert last.status is Status.WARN
    assert "at boot" in last.message
    assert "GPU 0: create GI 9: InUse" in last.message


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_missing_instance_nodes_are_named(tmp_path: Path) -> None:
    """After apply made the nodes, one deleted node is reported by name."""
    state = simulated(tmp_path, (H100, 1))
    root = tmp_path / "root"
    make_node(root / "dev/nvidia-caps/nvidia-cap1", 1, 0o400)
    make_node(root / "dev/nvidia-caps/nvidia-cap2", 2, 0o444)
    layout = write_layout(tmp_path, LAYOUT.replace("count = 2", "count = 1"))
    base = ["--simulate", str(state), "--sysroot", str(root), "--config", str(layout)]
    assert cli.main([*base, "apply"]) == 0
    ctx = context(tmp_path, state, root, layout)
    assert (
        by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))["caps.nodes"].status is Status.PASS
    )
    nodes = sorted((root / "dev/nvidia-caps").glob("nvidia-cap*"))
    assert len(nodes) == 4  # config, monitor, one GI and its CI
    nodes[-1].unlink()
    check = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))["caps.nodes"]
    assert check.status is Status.WARN
    assert nodes[-1].name in check.message


def test_legacy_proc_capabilities_warn(tmp_path: Path) -> None:
    """No mig-minors but /proc capability files: the legacy interface is a warning."""
    state = simulated(tmp_path, (H100, 1))
    root = tmp_path / "root"
    (root / "proc/driver/nvidia-caps/mig-minors").unlink()
    checks = by_id(doctor.diagnose(context(tmp_path, state, root), FakeUnits(read_only=True)))
    assert checks["caps.interface"].status is Status.WARN
    assert "legacy /proc mode" in checks["caps.interface"].message
    assert "caps.nodes" not in checks


DPKG_STATUS = """Package: nvidia-docker2
Status: install ok installed
Version: 2.4.0-1

Package: nvidia-container-toolkit
Status: install ok installed
Version: 1.17.8-1

Package: libnvidia-container1
Status: deinstall ok config-files
Version: 1.3.0-1
"""


def test_container_tooling_versions(tmp_path: Path) -> None:
    """nvidia-docker2 2.4.0 is older than 2.5.0: warn; the toolkit's version is shown."""
    state = simulated(tmp_path, (H100, 1))
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    checks = by_id(doctor.diagnose(context(tmp_path, state, root), FakeUnits(read_only=True)))
    docker = checks["tooling.nvidia-docker2"]
    assert docker.status is Status.WARN
    assert "2.4.0-1 is older than 2.5.0" in docker.message
    toolkit = checks["tooling.nvidia-container-toolkit"]
    assert toolkit.status is Status.PASS
    assert "1.17.8-1" in toolkit.message
    assert checks["tooling.kubernetes"].status is Status.SKIP
    assert "device plugin >= 0.7.0" in checks["tooling.kubernetes"].message


def test_installed_packages_ignores_removed_ones(tmp_path: Path) -> None:
    """Only packages whose status ends in "installed" count."""
    status = tmp_path / "status"
    status.write_text(DPKG_STATUS)
    assert doctor.installed_packages(status) == {
        "nvidia-docker2": "2.4.0-1",
        "nvidia-container-toolkit": "1.17.8-1",
    }
    assert doctor.installed_packages(tmp_path / "missing") == {}


def test_masked_unit_warns(tmp_path: Path) -> None:
    """A unit masked in /etc (a link to /dev/null) restores nothing: a warning says so."""
    state = simulated(tmp_path, (H100, 1))
    etc = tmp_path / "root/etc/systemd/system"
    etc.mkdir(parents=True)
    (etc / "migrestore.service").symlink_to("/dev/null")
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    assert checks["unit"].status is Status.WARN
    assert "migrestore.service is masked" in checks["unit"].message


def test_driver_not_loaded_fails(tmp_path: Path) -> None:
    """Without the kernel driver NVML cannot read the GPUs: a failure with a hint, exit 1."""
    state = simulated(tmp_path, (H100, 1))
    simulator.unload_driver(state)
    checks = by_id(
        doctor.diagnose(context(tmp_path, state, tmp_path / "root"), FakeUnits(read_only=True))
    )
    driver = checks["driver"]
    assert driver.status is Status.FAIL
    assert "the NVIDIA kernel driver is not loaded" in driver.message
    assert driver.hint == "load the driver: modprobe nvidia"
    assert "gpu0.model" not in checks
    assert cli.main(["--simulate", str(state), "doctor"]) == 1
