"""Which MIG devices a scheduler has handed out: a live change must not pull them from under it.

A MIG device given to a pod or a Slurm job can be idle between processes, so NVML's process list
does not show it; the scheduler's own record does. Three sources, each used when it applies:

- kubelet's PodResources API (`v1.PodResourcesLister/List`, gRPC on the unix socket
  /var/lib/kubelet/pod-resources/kubelet.sock): the device plugin reports MIG devices by their
  `MIG-...` UUIDs (and whole GPUs by `GPU-...`). Read through grpcio and protobuf when both import
  (python3-grpcio, python3-protobuf): they are optional, the messages are described at run time
  (no generated code, which would tie itself to one protobuf release);
- Slurm, when slurmd runs: `scontrol --details --oneliner show node NODE` (GresUsed) and
  `squeue --nodelist NODE` for the jobs. Slurm's GRES index does not name a MIG device, so a GPU
  GRES in use on the node holds every GPU the change touches;
- `[restore] pre-apply`: a command the site writes; a non-zero exit refuses, its first line of
  output says why.

A source that applies but cannot be read is an error too: not knowing is no permission.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore.errors import MigrestoreError, one_line
from migrestore.plan import GpuPlan

POD_RESOURCES_SOCKET = "var/lib/kubelet/pod-resources/kubelet.sock"  # under the sysroot
LIST_METHOD = "/v1.PodResourcesLister/List"
KUBELET_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0
_MAX_REASON = 200
_FORCE = "use --force to go ahead without knowing"


class AllocationsUnknown(MigrestoreError):
    """A scheduler that may hold MIG devices could not be asked."""


class AllocatedError(MigrestoreError):
    """The change would pull MIG devices from under a pod or a job (exit 1)."""


@dataclass(frozen=True)
class Allocation:
    """One device (or, with `device` "", an unnamed share of the node's GPUs) held by someone."""

    holder: str  # "pod ns/name (container c)", "Slurm job 42 (user alice)", "pre-apply check ..."
    device: str = ""  # a MIG-... or GPU-... UUID; "" when the source does not name one
    detail: str = ""  # what the source said, for the message
    refusal: bool = False  # the pre-apply check said no: `detail` is its reason


@dataclass(frozen=True)
class Conflict:
    """A GPU the plan changes, and who holds a device on it."""

    gpu: str  # the GPU's label
    allocation: Allocation

    def describe(self) -> str:
        """One clause for the refusal."""
        held = self.allocation
        if held.refusal:
            return f"{held.holder} refused the change to {self.gpu}: {held.detail}"
        what = f"MIG device {held.device}" if held.device.startswith("MIG-") else "the GPU"
        if not held.device:
            what = "its MIG devices may be"
            detail = f" ({held.detail})" if held.detail else ""
            return f"{self.gpu}: {what} allocated to {held.holder}{detail}"
        return f"{self.gpu}: {what} is allocated to {held.holder}"


# ---- kubelet PodResources ----


def grpc_available() -> str:
    """What of grpcio and protobuf does not import ("" when both do), for doctor and refusals."""
    missing = []
    for module, package in (("grpc", "python3-grpcio"), ("google.protobuf", "python3-protobuf")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return " and ".join(missing)


def messages() -> tuple[Any, Any]:
    """The `ListPodResourcesRequest` and `ListPodResourcesResponse` message classes, described
    at run time: only the fields read here (pod name and namespace, container name, device
    resource name and ids); protobuf skips the others."""
    descriptor_pb2 = importlib.import_module("google.protobuf.descriptor_pb2")
    descriptor_pool = importlib.import_module("google.protobuf.descriptor_pool")
    message_factory = importlib.import_module("google.protobuf.message_factory")
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="migrestore/podresources_v1.proto", package="v1", syntax="proto3"
    )
    text, nested, optional, repeated = (
        field.TYPE_STRING,
        field.TYPE_MESSAGE,
        field.LABEL_OPTIONAL,
        field.LABEL_REPEATED,
    )
    shapes: dict[str, tuple[tuple[int, str, int, int, str], ...]] = {
        "ListPodResourcesRequest": (),
        "ListPodResourcesResponse": ((1, "pod_resources", nested, repeated, "PodResources"),),
        "PodResources": (
            (1, "name", text, optional, ""),
            (2, "namespace", text, optional, ""),
            (3, "containers", nested, repeated, "ContainerResources"),
        ),
        "ContainerResources": (
            (1, "name", text, optional, ""),
            (2, "devices", nested, repeated, "ContainerDevices"),
        ),
        "ContainerDevices": (
            (1, "resource_name", text, optional, ""),
            (2, "device_ids", text, repeated, ""),
        ),
    }
    for name, fields in shapes.items():
        message = proto.message_type.add(name=name)
        for number, field_name, kind, label, type_name in fields:
            added = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = f".v1.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    make = getattr(message_factory, "GetMessageClass", None)  # protobuf 4.21 and later
    if make is None:
        make = message_factory.MessageFactory(pool).GetPrototype
    return (
        make(pool.FindMessageTypeByName("v1.ListPodResourcesRequest")),
        make(pool.FindMessageTypeByName("v1.ListPodResourcesResponse")),
    )


def kubelet_socket(sysroot: Path) -> Path | None:
    """The PodResources socket when one exists (kubelet runs or ran here), else None."""
    path = sysroot / POD_RESOURCES_SOCKET
    try:
        return path if stat.S_ISSOCK(path.stat().st_mode) else None
    except OSError:
        return None


def from_kubelet(path: Path) -> tuple[Allocation, ...]:
    """Every device kubelet has allocated to a container, from `List`."""
    missing = grpc_available()
    if missing:
        raise AllocationsUnknown(
            f"kubelet's PodResources socket {path} exists but {missing} is not installed: "
            "cannot tell which MIG devices pods hold",
            hint=f"install {missing}, or use --force to go ahead without knowing",
        )
    grpc = importlib.import_module("grpc")
    request, response = messages()
    try:
        with grpc.insecure_channel(f"unix:{path}") as channel:
            call = channel.unary_unary(
                LIST_METHOD,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            answer = call(request(), timeout=KUBELET_TIMEOUT)
    except grpc.RpcError as exc:
        code = exc.code().name if callable(getattr(exc, "code", None)) else "error"
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        raise AllocationsUnknown(
            f"kubelet's PodResources API at {path} did not answer List: {code}: {details}",
            hint=f"is kubelet running? (or {_FORCE})",
        ) from None
    return tuple(
        Allocation(
            holder=f"pod {pod.namespace}/{pod.name} (container {container.name})",
            device=device_id,
            detail=devices.resource_name,
        )
        for pod in answer.pod_resources
        for container in pod.containers
        for devices in container.devices
        for device_id in devices.device_ids
    )


# ---- Slurm ----

# `gpu:COUNT` or `gpu:TYPE:COUNT`, each followed by `(IDX:...)` or the next entry.
_GRES_GPU_COUNT = re.compile(r"(?:^|,)gpu(?::[^:(,]+)*?:(\d+)(?=\(|,|$)")


def slurm_node() -> str:
    """The node name slurmd uses by default: the short host name."""
    return socket.gethostname().split(".")[0]


def from_slurm(node: str) -> tuple[Allocation, ...]:
    """Jobs holding GPU GRES on this node, when slurmd runs here."""
    shown = _output(["scontrol", "--details", "--oneliner", "show", "node", node], "Slurm")
    used = re.search(r"\bGresUsed=(\S+)", shown)
    if not used or not any(int(n) for n in _GRES_GPU_COUNT.findall(used.group(1))):
        return ()
    states = "--states=RUNNING,SUSPENDED,COMPLETING"
    listed = _output(
        ["squeue", "--noheader", f"--nodelist={node}", states, "--format=%i %u"], "Slurm"
    )
    detail = f"GresUsed={used.group(1)}"
    jobs = [line.split() for line in listed.splitlines() if line.strip()]
    holders = [
        f"Slurm job {j[0]} (user {j[1]})" if len(j) > 1 else f"Slurm job {j[0]}" for j in jobs
    ]
    return tuple(Allocation(h, detail=detail) for h in holders or [f"Slurm on node {node}"])


def _output(command: list[str], source: str) -> str:
    done = _run(command, f"{source} allocations could not be read")
    if done.returncode != 0:
        said = _first_line(done.stderr) or f"exit status {done.returncode}"
        raise AllocationsUnknown(
            f"{source} allocations could not be read: {command[0]}: {said}", hint=_FORCE
        )
    return done.stdout


def _run(
    command: list[str], failed: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (bounded, no input); one that cannot run is AllocationsUnknown."""
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",  # a site's script may print anything; never a decoding error
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AllocationsUnknown(f"{failed}: {command[0]}: {exc}", hint=_FORCE) from None


# ---- [restore] pre-apply ----


def from_command(command: tuple[str, ...], plans: tuple[GpuPlan, ...]) -> tuple[Allocation, ...]:
    """Run the site's check with the GPUs and MIG devices the change touches in its environment
    (MIGRESTORE_GPUS, MIGRESTORE_MIG_DEVICES: space-separated UUIDs); a non-zero exit is a
    refusal whose reason is the first line it printed."""
    env = {
        **os.environ,
        "MIGRESTORE_GPUS": " ".join(p.gpu.uuid for p in plans),
        "MIGRESTORE_MIG_DEVICES": " ".join(
            ci.uuid for p in plans for gi in p.gpu.instances for ci in gi.compute if ci.uuid
        ),
    }
    done = _run(list(command), "the pre-apply check could not be run", env)
    if done.returncode == 0:
        return ()
    reason = _first_line(done.stdout) or f"exit status {done.returncode}"
    return (Allocation(f"the pre-apply check {command[0]}", detail=reason, refusal=True),)


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return one_line(line[:_MAX_REASON])


# ---- the check ----


def conflicts(plans: tuple[GpuPlan, ...], held: tuple[Allocation, ...]) -> tuple[Conflict, ...]:
    """The allocations on GPUs these plans change: a named device on that GPU (one of its MIG
    devices, or the GPU itself); an unnamed share (Slurm, the pre-apply check) once, for all the
    GPUs the plans change."""
    changing = tuple(p.gpu for p in plans if p.steps)
    if not changing:
        return ()
    found = [Conflict(", ".join(g.label for g in changing), a) for a in held if not a.device]
    for gpu in changing:
        mine = {gpu.uuid, *(ci.uuid for gi in gpu.instances for ci in gi.compute if ci.uuid)}
        found += [Conflict(gpu.label, a) for a in held if a.device and a.device in mine]
    return tuple(found)


def read(
    plans: tuple[GpuPlan, ...],
    sysroot: Path | None,
    slurmd_running: bool,
    command: tuple[str, ...],
) -> tuple[Allocation, ...]:
    """Every allocation the sources that apply here report (AllocationsUnknown if one fails);
    kubelet is not asked without a sysroot (a simulated host has none of its own)."""
    held: list[Allocation] = []
    path = kubelet_socket(sysroot) if sysroot is not None else None
    if path is not None:
        held += from_kubelet(path)
    if slurmd_running:
        held += from_slurm(slurm_node())
    if command:
        held += from_command(command, tuple(p for p in plans if p.steps))
    return tuple(held)
