"""doctor names the other owners of MIG: an enabled nvidia-mig-manager (its enablement symlinks in
a temporary root, and a real private systemd that runs it), a driver that runs in a container
(/run/nvidia/driver, no NVML on the host), and the Kubernetes owners: the GPU operator's MIG
manager (the node's label through a fake kubectl below the sysroot, or its process in a fake
/proc), the DRA driver with DynamicMIG and HAMi."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest

from migrestore import cli, simulator
from migrestore.systemd import SystemdUnits
from migrestore.verbs import doctor
from migrestore.verbs.doctor import Status
from tests.fakes import FakeUnits, fake_process
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


# ---- Kubernetes owners: the GPU operator's MIG manager, the DRA driver, HAMi ----

HOSTNAME = socket.gethostname().lower()


@pytest.fixture(name="clean_path")
def fixture_clean_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed $PATH (doctor looks commands up on it below the sysroot), no kubeconfig of ours."""
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def fake_kubectl(root: Path, stdout: str, code: int = 0, stderr: str = "") -> Path:
    """root/usr/bin/kubectl: prints `stdout` (and `stderr`), exits `code`, and keeps its
    arguments in root/kubectl.args, one a line."""
    kubectl = root / "usr/bin/kubectl"
    kubectl.parent.mkdir(parents=True, exist_ok=True)
    args = root / "kubectl.args"
    kubectl.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {shlex.quote(str(args))}\n"
        f"printf '%s' {shlex.quote(stdout)}\n"
        f"printf '%s' {shlex.quote(stderr)} >&2\n"
        f"exit {code}\n"
    )
    kubectl.chmod(0o755)
    return args


def node_json(**labels: str) -> str:
    """`kubectl get node -o json` of a node with these labels."""
    return json.dumps({"kind": "Node", "metadata": {"name": HOSTNAME, "labels": labels}})


def owner_checks(tmp_path: Path, layout: Path | None = None) -> dict[str, doctor.Check]:
    """doctor's checks on one simulated H100 with tmp_path/root as its sysroot."""
    state = simulated(tmp_path, (H100, 1))
    ctx = context(tmp_path, state, tmp_path / "root", layout)
    return by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))


@pytest.mark.usefixtures("clean_path")
def test_operator_label_on_this_node_fails(tmp_path: Path) -> None:
    """kubectl says the node carries nvidia.com/mig.config: FAIL naming node and value, exit 1."""
    args = fake_kubectl(tmp_path / "root", node_json(**{"nvidia.com/mig.config": "all-disabled"}))
    check = owner_checks(tmp_path)["owner.gpu-operator"]
    assert check.status is Status.FAIL
    assert check.message == (
        f"the GPU operator's MIG manager manages node {HOSTNAME} "
        "(nvidia.com/mig.config=all-disabled): it repartitions the GPUs after every boot"
    )
    assert "nvidia.com/gpu.deploy.mig-manager=false" in check.hint
    assert args.read_text().splitlines()[:5] == ["get", "node", HOSTNAME, "-o", "json"]
    state = tmp_path / "host.json"
    assert cli.main(["--simulate", str(state), "--sysroot", str(tmp_path / "root"), "doctor"]) == 1


@pytest.mark.usefixtures("clean_path")
def test_operator_label_with_mig_manager_not_deployed_passes(tmp_path: Path) -> None:
    """nvidia.com/gpu.deploy.mig-manager=false keeps the operator's MIG manager off the node."""
    labels = {"nvidia.com/mig.config": "all-disabled", "nvidia.com/gpu.deploy.mig-manager": "false"}
    fake_kubectl(tmp_path / "root", node_json(**labels))
    check = owner_checks(tmp_path)["owner.gpu-operator"]
    assert check.status is Status.PASS
    assert "nvidia.com/gpu.deploy.mig-manager=false keeps" in check.message


@pytest.mark.usefixtures("clean_path")
def test_node_without_the_label_passes(tmp_path: Path) -> None:
    """A node without nvidia.com/mig.config: pass, saying so."""
    fake_kubectl(tmp_path / "root", node_json(**{"kubernetes.io/os": "linux"}))
    check = owner_checks(tmp_path)["owner.gpu-operator"]
    assert (check.status, check.message) == (
        Status.PASS,
        f"node {HOSTNAME} has no nvidia.com/mig.config label",
    )


@pytest.mark.usefixtures("clean_path")
def test_kubectl_that_cannot_answer_is_said_in_one_line(tmp_path: Path) -> None:
    """kubectl fails (no cluster): pass on the process scan, with kubectl's last error line."""
    refused = "The connection to the server localhost:8080 was refused"
    fake_kubectl(tmp_path / "root", "", code=1, stderr=f"E1 memcache.go: first\n{refused}\n")
    check = owner_checks(tmp_path)["owner.gpu-operator"]
    assert check.status is Status.PASS
    assert (
        check.message == f"no nvidia-mig-manager process; node labels not read (kubectl: {refused})"
    )


@pytest.mark.usefixtures("clean_path")
def test_no_kubectl_below_the_sysroot(tmp_path: Path) -> None:
    """No kubectl on $PATH below the sysroot (this machine's own is never run): said so."""
    check = owner_checks(tmp_path)["owner.gpu-operator"]
    assert check.status is Status.PASS
    assert check.message.endswith("node labels not read (kubectl is not installed)")


@pytest.mark.usefixtures("clean_path")
def test_kubelet_kubeconfig_is_used_when_kubectl_has_none(tmp_path: Path) -> None:
    """No KUBECONFIG, no ~/.kube/config: kubectl is given the kubelet's kubeconfig."""
    root = tmp_path / "root"
    args = fake_kubectl(root, node_json())
    (root / "etc/kubernetes").mkdir(parents=True)
    (root / "etc/kubernetes/kubelet.conf").write_text("apiVersion: v1\n")
    owner_checks(tmp_path)
    assert args.read_text().splitlines()[-2:] == [
        "--kubeconfig",
        str(root / "etc/kubernetes/kubelet.conf"),
    ]


@pytest.mark.usefixtures("clean_path")
def test_operator_mig_manager_process_fails_without_kubectl(tmp_path: Path) -> None:
    """The operator's nvidia-mig-manager program runs here: FAIL naming its pid."""
    state = simulated(tmp_path, (H100, 1))
    fake_process(tmp_path / "root", 4242, "nvidia-mig-mana", cmdline=b"nvidia-mig-manager\0")
    ctx = context(tmp_path, state, tmp_path / "root")
    check = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))["owner.gpu-operator"]
    assert check.status is Status.FAIL
    assert "(nvidia-mig-manager, pid 4242)" in check.message


DRA = b"/usr/bin/gpu-kubelet-plugin\0-v\x004\0"


@pytest.mark.usefixtures("clean_path")
@pytest.mark.parametrize(
    ("environ", "status", "words"),
    [
        ({"FEATURE_GATES": "DynamicMIG=true,"}, Status.FAIL, "runs with DynamicMIG"),
        ({"FEATURE_GATES": "MPSSupport=true,DynamicMIG=false,"}, Status.PASS, "without DynamicMIG"),
        ({"NODE_NAME": "n1"}, Status.PASS, "without DynamicMIG"),
        (None, Status.WARN, "cannot tell whether DynamicMIG is on"),
    ],
)
def test_dra_driver_dynamic_mig(
    tmp_path: Path, environ: dict[str, str] | None, status: Status, words: str
) -> None:
    """The DRA driver's kubelet plugin: FAIL only with its DynamicMIG gate on; hidden: warn."""
    state = simulated(tmp_path, (H100, 1))
    fake_process(tmp_path / "root", 5151, "gpu-kubelet-plu", cmdline=DRA, environ=environ)
    ctx = context(tmp_path, state, tmp_path / "root")
    check = by_id(doctor.diagnose(ctx, FakeUnits(read_only=True)))["owner.dra"]
    assert check.status is status
    assert words in check.message
    assert "(gpu-kubelet-plugin, pid 5151)" in check.message


@pytest.mark.usefixtures("clean_path")
def test_dra_plugin_directory_without_the_plugin_passes(tmp_path: Path) -> None:
    """Its kubelet plugin directory left behind, no plugin running: pass, naming the directory."""
    (tmp_path / "root/var/lib/kubelet/plugins/gpu.nvidia.com").mkdir(parents=True)
    check = owner_checks(tmp_path)["owner.dra"]
    assert check.status is Status.PASS
    assert check.message.startswith("/var/lib/kubelet/plugins/gpu.nvidia.com is there")


@pytest.mark.usefixtures("clean_path")
def test_hami_device_plugin_fails(tmp_path: Path) -> None:
    """HAMi's monitor runs beside its device plugin: FAIL; hami-core alone on disk: pass."""
    root = tmp_path / "root"
    (root / "usr/local/vgpu").mkdir(parents=True)
    (root / "usr/local/vgpu/libvgpu.so").write_bytes(b"\x7fELF")
    assert owner_checks(tmp_path)["owner.hami"].status is Status.PASS
    fake_process(root, 6161, "vGPUmonitor", cmdline=b"vGPUmonitor\0")
    check = owner_checks(tmp_path)["owner.hami"]
    assert check.status is Status.FAIL
    assert "(vGPUmonitor, pid 6161)" in check.message
    assert "managed = false" in check.hint


@pytest.mark.usefixtures("clean_path")
def test_nothing_of_kubernetes_passes(tmp_path: Path) -> None:
    """A plain host: the three Kubernetes owner checks pass."""
    checks = owner_checks(tmp_path)
    assert [checks[k].status for k in ("owner.gpu-operator", "owner.dra", "owner.hami")] == [
        Status.PASS
    ] * 3


@pytest.mark.usefixtures("clean_path")
def test_layout_leaving_every_gpu_to_the_other_owner_passes(tmp_path: Path) -> None:
    """Every [[gpu]] entry managed = false: the operator's MIG manager is then no conflict."""
    fake_kubectl(tmp_path / "root", node_json(**{"nvidia.com/mig.config": "all-balanced"}))
    layout = tmp_path / "layout.toml"
    layout.write_text('version = 2\n[[gpu]]\nselect = "all"\nmanaged = false\n')
    check = owner_checks(tmp_path, layout)["owner.gpu-operator"]
    assert check.status is Status.PASS
    assert check.message.endswith("; the layout leaves every GPU to it (managed = false)")
    layout.write_text(
        'version = 2\n[[gpu]]\nselect = "all"\nmanaged = false\n'
        "[[gpu]]\nselect = { index = 0 }\nmig = false\n"
    )
    assert owner_checks(tmp_path, layout)["owner.gpu-operator"].status is Status.FAIL
