"""Other owners of MIG on this host, as far as cheap file checks below a root can tell.

The boot restore uses the first few (no process is started, no cluster asked); `doctor` adds
what /proc and the node's labels (kubectl) tell. Every path is read below `root`, commands
included (looked up on $PATH below it), so that tests and fixture trees bring their own.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from migrestore import holders

MIG_MANAGER = "nvidia-mig-manager.service"
# The GPU operator's driver container bind-mounts its root here; NVML then lives in the container.
CONTAINER_DRIVER = "run/nvidia/driver"
# The GPU operator's toolkit container installs the NVIDIA container toolkit here on the host's
# disk: unlike /run/nvidia/driver it is there at boot, before kubelet starts the driver pod.
OPERATOR_TOOLKIT = "usr/local/nvidia/toolkit"
UNIT_DIRS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)


def enabled_by(root: Path, unit: str) -> list[str]:
    """The units whose .wants/.requires link `unit` below `root` (its enablement symlinks)."""
    found = []
    for directory in UNIT_DIRS:
        base = root / directory
        links = [*base.glob("*.wants"), *base.glob("*.requires")] if base.is_dir() else []
        found += [link.name.rsplit(".", 1)[0] for link in links if os.path.lexists(link / unit)]
    return sorted(set(found))


def masked(root: Path, unit: str) -> bool:
    """`unit` is masked (a link to /dev/null in /etc/systemd/system)."""
    link = root / "etc/systemd/system" / unit
    return link.is_symlink() and os.readlink(link) == "/dev/null"


def mig_manager_enabled(root: Path) -> list[str]:
    """The targets that pull nvidia-mig-manager in at boot ([] if not enabled, or masked)."""
    return [] if masked(root, MIG_MANAGER) else enabled_by(root, MIG_MANAGER)


def driver_container_signs(root: Path) -> list[str]:
    """The GPU operator's traces of a containerized driver below `root`, as absolute paths."""
    return [f"/{p}" for p in (CONTAINER_DRIVER, OPERATOR_TOOLKIT) if (root / p).is_dir()]


def at_boot(root: Path) -> str:
    """The other owner the boot restore names in its status line ("" if none is seen)."""
    targets = mig_manager_enabled(root)
    if targets:
        return f"{MIG_MANAGER} is enabled ({', '.join(targets)}) and repartitions the GPUs too"
    return ""


# ---- what doctor adds: running processes and the node's labels ----

# The GPU operator's MIG manager (its DaemonSet, container and program are all nvidia-mig-manager).
OPERATOR_MIG_MANAGER = "nvidia-mig-manager"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
# The operator deploys its MIG manager only where this label is not "false".
DEPLOY_LABEL = "nvidia.com/gpu.deploy.mig-manager"
# The DRA driver for NVIDIA GPUs (kubernetes-sigs/dra-driver-nvidia-gpu): its kubelet plugin's
# directory, its program, and the feature gate under which it creates and destroys MIG devices.
DRA_PLUGIN_DIR = "var/lib/kubelet/plugins/gpu.nvidia.com"
DRA_PLUGIN = "gpu-kubelet-plugin"
DRA_DYNAMIC_MIG = "DynamicMIG=true"
# HAMi: its device plugin copies hami-core here on the host; its monitor runs beside the plugin.
HAMI_CORE = "usr/local/vgpu/libvgpu.so"
HAMI_MONITOR = "vGPUmonitor"
KUBECONFIGS = ("etc/kubernetes/kubelet.conf", "etc/rancher/k3s/k3s.yaml")
COMMAND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Running:
    """A process seen in /proc: its pid, program name and (if readable) environment."""

    pid: int
    name: str
    environ: dict[str, str] | None  # None: not readable (not root)


def running(root: Path, names: Collection[str]) -> list[Running]:
    """The processes below `root`/proc whose program (argv[0]'s base name) is one of `names`."""
    proc = root / "proc"
    found = []
    for pid in holders.process_ids(proc):
        name = _program(proc / str(pid))
        if name in names:
            found.append(Running(pid, name, _environ(proc / str(pid))))
    return found


def _program(pid_dir: Path) -> str:
    """argv[0]'s base name (comm is cut at 15 characters: "gpu-kubelet-plu")."""
    try:
        argv0 = (pid_dir / "cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return ""
    return os.path.basename(argv0.decode("utf-8", errors="replace"))


def _environ(pid_dir: Path) -> dict[str, str] | None:
    try:
        data = (pid_dir / "environ").read_bytes()
    except OSError:
        return None
    pairs = (item.decode("utf-8", errors="replace").partition("=") for item in data.split(b"\0"))
    return {key: value for key, _, value in pairs if key}


def command(root: Path, name: str) -> Path | None:
    """`name` looked up on $PATH re-rooted below `root` (so a test's root holds fake commands)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = root / directory.lstrip("/") / name
        if directory.startswith("/") and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class NodeLabels:
    """The Kubernetes node's labels as kubectl read them, or why they could not be read."""

    labels: dict[str, str] | None
    problem: str = ""


def node_labels(root: Path, node: str) -> NodeLabels:
    """`kubectl get node NODE -o json`: its labels. The kubeconfig is kubectl's own choice, else
    the kubelet's (kubeadm, k3s) when it exists below `root`."""
    kubectl = command(root, "kubectl")
    if kubectl is None:
        return NodeLabels(None, "kubectl is not installed")
    args = [str(kubectl), "get", "node", node, "-o", "json", "--request-timeout=5s"]
    own = os.environ.get("KUBECONFIG") or (Path.home() / ".kube/config").exists()
    fallback = next((root / k for k in KUBECONFIGS if (root / k).is_file()), None)
    if not own and fallback is not None:
        args += ["--kubeconfig", str(fallback)]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return NodeLabels(None, f"kubectl: {exc}")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return NodeLabels(None, f"kubectl: {lines[-1] if lines else f'exit {done.returncode}'}")
    try:
        labels = json.loads(done.stdout)["metadata"].get("labels") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return NodeLabels(None, "kubectl: not a node object")
    return NodeLabels({str(k): str(v) for k, v in labels.items()})
