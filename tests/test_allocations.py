"""A live `apply` does not change GPUs whose MIG devices a pod or a Slurm job holds (issue 16 #4).

kubelet is a real gRPC server (grpcio) on a unix socket below a short sysroot, answering
`v1.PodResourcesLister/List` with the pods a test gives it; Slurm is `scontrol` and `squeue`
scripts on PATH; the pre-apply check is a script.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from migrestore import allocations, config, host, simulator
from migrestore.consumers import SLURMD
from migrestore.context import Context
from migrestore.plan import plan_node
from migrestore.verbs import apply

from .fakes import FakeUnits
from .simhost import H100, Host, mutations

ONE_ON_EACH = f"""version = 1
[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "3g.40gb"
placement = 4
"""
# Every GPU again, but GPU 1 takes a 2g.20gb at 0 as well: a change to GPU 1 only.
MORE_ON_GPU_1 = (
    ONE_ON_EACH
    + """[[gpu]]
select = { index = 1 }
[[gpu.instance]]
profile = "3g.40gb"
placement = 4
[[gpu.instance]]
profile = "2g.20gb"
placement = 0
"""
)
# Both GPUs: the 3g.40gb at 4 goes, a 7g.80gb takes the whole GPU.
WHOLE = f"""version = 1
[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "7g.80gb"
"""


@pytest.fixture
def root() -> Iterator[Path]:
    """A sysroot with a short path: a unix socket path must fit in 108 bytes. apply with
    --sysroot makes /dev/nvidia-caps nodes there, which needs root."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    path = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def host_at(tmp_path: Path, root: Path, layout: str = ONE_ON_EACH) -> Host:
    """Two H100s, each with a 3g.40gb at 4, device nodes below `root`."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    simulator.init_host(host.state, [(H100, 2)], sysroot=root)
    host.write_layout(layout)
    assert host.run("--sysroot", str(root), "apply").code == 0
    return host


def plain_host(tmp_path: Path) -> Host:
    """The same without a sysroot (no kubelet to ask, no device nodes: any user)."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    simulator.init_host(host.state, [(H100, 2)])
    host.write_layout(ONE_ON_EACH)
    assert host.run("apply").code == 0
    return host


def mig_uuids(host: Host) -> list[str]:
    """The MIG device UUIDs of each GPU, in index order (one each here)."""
    status = json.loads(host.run("status", "--json").out)
    return [ci["uuid"] for g in status["gpus"] for gi in g["instances"] for ci in gi["compute"]]


def kubelet(root: Path, pods: list[tuple[str, str, list[str]]]) -> Any:
    """A PodResources server at root's kubelet socket: (namespace, name, device ids) per pod."""
    grpc = pytest.importorskip("grpc")
    request, response = allocations.messages()

    def list_pods(_request: Any, _context: Any) -> Any:
        answer = response()
        for namespace, name, ids in pods:
            pod = answer.pod_resources.add(name=name, namespace=namespace)
            container = pod.containers.add(name="main")
            container.devices.add(resource_name="nvidia.com/mig-3g.40gb", device_ids=ids)
        return answer

    path = root / allocations.POD_RESOURCES_SOCKET
    path.parent.mkdir(parents=True, exist_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.unary_unary_rpc_method_handler(
        list_pods,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("v1.PodResourcesLister", {"List": handler}),)
    )
    server.add_insecure_port(f"unix:{path}")
    server.start()
    return server


@pytest.fixture
def served(root: Path) -> Iterator[list[Any]]:
    """Servers a test starts, stopped after it."""
    servers: list[Any] = []
    yield servers
    for server in servers:
        server.stop(None)


def test_a_pod_holding_a_mig_device_refuses_the_change(
    tmp_path: Path, root: Path, served: list[Any]
) -> None:
    """A MIG device listed by kubelet: apply exits 1 naming pod and device, and changes nothing."""
    host = host_at(tmp_path, root)
    held = mig_uuids(host)[0]
    served.append(kubelet(root, [("ml", "train-0", [held])]))
    host.write_layout(WHOLE)
    simulator.reset_counters(host.state)
    refused = host.run("--sysroot", str(root), "apply")
    assert refused.code == 1
    assert f"MIG device {held} is allocated to pod ml/train-0 (container main)" in refused.err
    assert "GPU 0" in refused.err
    assert "--force" in refused.err
    assert mutations(host.counters()) == 0


def test_a_change_to_another_gpu_goes_ahead(tmp_path: Path, root: Path, served: list[Any]) -> None:
    """A pod on GPU 0 does not hold back a change that touches GPU 1 only."""
    host = host_at(tmp_path, root)
    served.append(kubelet(root, [("ml", "train-0", [mig_uuids(host)[0]])]))
    host.write_layout(MORE_ON_GPU_1)
    assert host.run("--sysroot", str(root), "apply").code == 0
    assert host.run("verify").code == 0


def test_a_whole_gpu_given_to_a_pod_is_held_too(
    tmp_path: Path, root: Path, served: list[Any]
) -> None:
    """A GPU-... UUID in the list (a whole GPU allocated) holds that GPU against a change."""
    host = host_at(tmp_path, root)
    gpu = json.loads(host.run("status", "--json").out)["gpus"][1]["uuid"]
    served.append(kubelet(root, [("ml", "whole", [gpu])]))
    host.write_layout(MORE_ON_GPU_1)
    refused = host.run("--sysroot", str(root), "apply")
    assert refused.code == 1
    assert "GPU 1" in refused.err
    assert "the GPU is allocated to pod ml/whole" in refused.err


def test_force_goes_ahead_with_a_warning(tmp_path: Path, root: Path, served: list[Any]) -> None:
    """--force changes the held GPU and logs allocations_overridden naming the pod."""
    host = host_at(tmp_path, root)
    served.append(kubelet(root, [("ml", "train-0", [mig_uuids(host)[0]])]))
    host.write_layout(WHOLE)
    forced = host.run("--sysroot", str(root), "apply", "--force")
    assert forced.code == 0
    assert "allocations_overridden" in forced.err
    assert "ml/train-0" in forced.err
    assert host.run("verify").code == 0


def test_the_boot_restore_does_not_ask(tmp_path: Path, root: Path, served: list[Any]) -> None:
    """`apply --boot` runs before any scheduler: a listed device does not stop it."""
    host = host_at(tmp_path, root)
    served.append(kubelet(root, [("ml", "train-0", mig_uuids(host))]))
    host.write_layout(WHOLE)
    assert host.run("--sysroot", str(root), "apply", "--boot").code == 0
    assert host.run("verify").code == 0


def stale_socket(root: Path) -> None:
    """kubelet's socket file left behind with nobody listening on it."""
    path = root / allocations.POD_RESOURCES_SOCKET
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))


def test_kubelet_not_answering_refuses_unless_forced(tmp_path: Path, root: Path) -> None:
    """A socket nobody answers on: not knowing refuses (exit 1, one line); --force goes ahead."""
    pytest.importorskip("grpc")
    host = host_at(tmp_path, root)
    stale_socket(root)
    host.write_layout(WHOLE)
    refused = host.run("--sysroot", str(root), "apply")
    assert refused.code == 1
    assert "did not answer List: UNAVAILABLE" in refused.err
    assert refused.err.count("migrestore: error:") == 1
    assert host.run("--sysroot", str(root), "apply", "--force").code == 0


def test_an_apply_with_nothing_to_change_asks_nobody(tmp_path: Path, root: Path) -> None:
    """In layout: no question to kubelet, so a dead socket does not fail the run."""
    host = host_at(tmp_path, root)
    stale_socket(root)
    assert host.run("--sysroot", str(root), "apply").code == 0


def test_without_grpcio_the_check_says_what_to_install(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubelet's socket but no grpcio: refused, naming python3-grpcio; doctor names it too."""
    host = host_at(tmp_path, root)
    stale_socket(root)
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError
    assert allocations.grpc_available() == "python3-grpcio"
    host.write_layout(WHOLE)
    refused = host.run("--sysroot", str(root), "apply")
    assert refused.code == 1
    assert "python3-grpcio is not installed" in refused.err


# ---- [restore] pre-apply ----


def check_script(tmp_path: Path, body: str) -> Path:
    """An executable shell script."""
    script = tmp_path / "check"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_a_failing_pre_apply_check_refuses_with_its_reason(tmp_path: Path) -> None:
    """Non-zero exit: refused (1), its first output line quoted, nothing changed."""
    host = plain_host(tmp_path)
    script = check_script(tmp_path, 'echo "node gpu7 is not drained"\necho second-line\nexit 3\n')
    host.write_layout(
        WHOLE.replace("version = 1", f'version = 2\n[restore]\npre-apply = ["{script}"]')
    )
    simulator.reset_counters(host.state)
    refused = host.run("apply")
    assert refused.code == 1
    assert f"the pre-apply check {script} refused the change" in refused.err
    assert "node gpu7 is not drained" in refused.err
    assert "second-line" not in refused.err
    assert mutations(host.counters()) == 0


def test_a_pre_apply_reason_that_is_not_utf8_is_still_one_line(tmp_path: Path) -> None:
    """A check printing bytes that are not UTF-8: refused (1) with its reason, not an internal
    error."""
    host = plain_host(tmp_path)
    script = check_script(tmp_path, "printf 'drain \\377 first\\n'\nexit 1\n")
    host.write_layout(
        WHOLE.replace("version = 1", f'version = 2\n[restore]\npre-apply = ["{script}"]')
    )
    refused = host.run("apply")
    assert refused.code == 1
    assert "internal error" not in refused.err
    assert "drain \ufffd first" in refused.err


def test_a_passing_pre_apply_check_sees_the_gpus_and_devices(tmp_path: Path) -> None:
    """Exit 0 lets the change go; the check got the changed GPUs and their MIG devices."""
    host = plain_host(tmp_path)
    seen = tmp_path / "seen"
    script = check_script(tmp_path, f'echo "$MIGRESTORE_GPUS|$MIGRESTORE_MIG_DEVICES" > {seen}\n')
    restore = f'version = 2\n[restore]\npre-apply = ["{script}", "--quiet"]'
    host.write_layout(MORE_ON_GPU_1.replace("version = 1", restore))
    devices = mig_uuids(host)
    gpus = [g["uuid"] for g in json.loads(host.run("status", "--json").out)["gpus"]]
    assert host.run("apply").code == 0
    assert seen.read_text().strip() == f"{gpus[1]}|{devices[1]}"


def test_a_pre_apply_check_that_cannot_run_refuses(tmp_path: Path) -> None:
    """A program that is not there: refused (1), saying it could not be run; --force goes on."""
    host = plain_host(tmp_path)
    missing = tmp_path / "no-such-check"
    restore = f'version = 2\n[restore]\npre-apply = ["{missing}"]'
    host.write_layout(WHOLE.replace("version = 1", restore))
    refused = host.run("apply")
    assert refused.code == 1
    assert f"the pre-apply check could not be run: {missing}" in refused.err
    assert host.run("apply", "--force").code == 0


def test_pre_apply_must_be_an_absolute_command(tmp_path: Path) -> None:
    """A relative program is a layout error (exit 2) naming the key; so is pre-apply in a
    version 1 file."""
    layout = tmp_path / "layout.toml"
    layout.write_text('version = 2\n[restore]\npre-apply = ["check"]\n')
    host = Host(tmp_path / "host.json", layout)
    simulator.init_host(host.state, [(H100, 1)])
    result = host.run("check")
    assert result.code == 2
    assert "restore.pre-apply: must start with an absolute program path" in result.err
    layout.write_text('version = 1\n[restore]\npre-apply = ["/bin/true"]\n')
    result = host.run("check")
    assert result.code == 2
    assert "restore.pre-apply: needs version = 2" in result.err


# ---- Slurm ----


def fake_slurm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gres: str, fail: bool = False
) -> None:
    """`scontrol` printing a node with this GresUsed (or failing) and `squeue` listing job 42."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = "echo 'slurm_load_node error: Unable to contact slurm controller' >&2; exit 1\n"
    if not fail:
        scontrol = (
            f'echo "NodeName=$6 Arch=x86_64 Gres=gpu:3g.40gb:2 GresUsed={gres} State=MIXED"\n'
        )
    for name, body in (("scontrol", scontrol), ("squeue", 'echo "42 alice"\n')):
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_slurm_jobs_with_gpus_in_use_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GresUsed with a GPU in use: the running job is the holder, of no device in particular."""
    fake_slurm(tmp_path, monkeypatch, "gpu:3g.40gb:1(IDX:0),gpu:1g.10gb:0(IDX:N/A)")
    held = allocations.from_slurm("node1")
    assert [(a.holder, a.device) for a in held] == [("Slurm job 42 (user alice)", "")]
    assert "GresUsed=gpu:3g.40gb:1(IDX:0)" in held[0].detail


@pytest.mark.parametrize(
    ("gres", "held"),
    [
        ("gpu:3g.40gb:0(IDX:N/A),gpu:1g.10gb:0(IDX:N/A)", False),
        ("gpu:0,mps:100", False),
        ("(null)", False),
        ("gpu:2(IDX:0-1)", True),
        ("gpu:1g.10gb:0(IDX:N/A),gpu:1g.10gb:3(IDX:1,3-4),mps:0", True),
    ],
)
def test_slurm_gres_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gres: str, held: bool
) -> None:
    """Only a GPU count above zero in GresUsed (typed or not) is an allocation."""
    fake_slurm(tmp_path, monkeypatch, gres)
    assert bool(allocations.from_slurm("node1")) is held


def test_slurm_that_cannot_be_asked_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scontrol failing is AllocationsUnknown with its first error line."""
    fake_slurm(tmp_path, monkeypatch, "", fail=True)
    with pytest.raises(allocations.AllocationsUnknown, match="Unable to contact slurm controller"):
        allocations.from_slurm("node1")


def test_running_slurmd_holds_every_changed_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With slurmd active and a GPU in use, apply's check refuses, naming the job; without
    slurmd Slurm is not asked; with systemd out of reach, scontrol on PATH is asked."""
    fake_slurm(tmp_path, monkeypatch, "gpu:3g.40gb:1(IDX:0)")
    state = tmp_path / "host.json"
    simulator.init_host(state, [(H100, 1)])
    ctx = Context(
        config=tmp_path / "layout.toml",
        simulate=state,
        state_dir=tmp_path / "lib",
        run_dir=tmp_path / "run",
        sysroot=tmp_path,
        sysroot_given=True,
        allow_insecure_config=False,
        debug=False,
    )
    desired = config.parse(ONE_ON_EACH, "layout.toml")
    gpus = host.gpus(ctx)
    gpus.open()
    try:
        node = plan_node(desired, gpus.read_state())
    finally:
        gpus.close()
    with pytest.raises(allocations.AllocatedError, match=r"Slurm job 42 \(user alice\)"):
        apply._check_allocations(ctx, False, desired, node, FakeUnits(running=[SLURMD]))
    apply._check_allocations(ctx, False, desired, node, FakeUnits())
    with pytest.raises(allocations.AllocatedError, match="Slurm job 42"):  # systemd unreachable
        apply._check_allocations(ctx, False, desired, node, FakeUnits(reachable=False))


# ---- doctor ----


def doctor_line(host: Host, root: Path) -> dict[str, str]:
    """doctor's allocations.kubelet check, from --json."""
    result = host.run("--sysroot", str(root), "doctor", "--json")
    checks = json.loads(result.out)["checks"]
    return next(c for c in checks if c["id"] == "allocations.kubelet")


def test_doctor_counts_what_pods_hold(tmp_path: Path, root: Path, served: list[Any]) -> None:
    """kubelet answering: pass, with the number of MIG devices pods hold."""
    host = host_at(tmp_path, root)
    served.append(kubelet(root, [("ml", "a", mig_uuids(host)), ("ml", "b", ["GPU-x"])]))
    check = doctor_line(host, root)
    assert check["status"] == "pass"
    assert "pods hold 2 MIG device(s)" in check["message"]


def test_doctor_warns_without_grpcio(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubelet's socket without grpcio: warn, naming the package to install."""
    host = host_at(tmp_path, root)
    stale_socket(root)
    monkeypatch.setitem(sys.modules, "grpc", None)
    check = doctor_line(host, root)
    assert check["status"] == "warn"
    assert "python3-grpcio is not installed" in check["message"]
    assert "install python3-grpcio" in check["hint"]


def test_doctor_without_kubelet_passes(tmp_path: Path, root: Path) -> None:
    """No socket: pass, nothing to ask."""
    host = host_at(tmp_path, root)
    assert doctor_line(host, root)["status"] == "pass"


def test_a_drop_in_can_add_the_pre_apply_check(tmp_path: Path) -> None:
    """pre-apply from conf.d/ (as a site's provisioning would add it) refuses like the main
    file's."""
    host = plain_host(tmp_path)
    script = check_script(tmp_path, 'echo "maintenance window closed"\nexit 1\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d/10-check.toml").write_text(
        f'version = 2\n[restore]\npre-apply = ["{script}"]\n'
    )
    host.write_layout(WHOLE)
    refused = host.run("apply")
    assert refused.code == 1
    assert "maintenance window closed" in refused.err
