"""A simulated host's state: records, the JSON file, and the transactions NVML calls make.

Several processes (a CLI run, a systemd unit, a test) share one host through the file: reads
are cached and re-read when the file changes (stat), updates take an flock on a lock file and
replace the state file atomically. Importing this module does not import pynvml.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from migrestore.errors import ConfigError
from migrestore.model import MigMode, Placement, StrEnum
from migrestore.profiles import ModelInfo, find_model
from migrestore.simulator import gpu_table
from migrestore.simulator import procfs as simproc
from migrestore.simulator.rules import (
    NvmlFailure,
    Ret,
    SimClient,
    SimComputeInstance,
    SimGpu,
    SimGpuInstance,
)

T = TypeVar("T")

FORMAT: Final = "migrestore-simulated-host/1"
RACY_NS: Final = 50_000_000  # a file younger than this may change within one mtime tick


class FaultAction(StrEnum):
    """What an injected fault does to the calling process."""

    RAISE = "raise"  # the call fails with the error, without effect
    KILL_BEFORE = "kill-before"  # SIGKILL before the call has any effect
    KILL_AFTER = "kill-after"  # SIGKILL right after the call's effect was persisted
    LOSE = "lose"  # GPU `gpu` falls off the bus just before the call (which then runs)


@dataclass(frozen=True)
class Driver:
    """The kernel driver: its version, and whether (or from when) it is loaded."""

    version: str
    loaded: bool = True
    reload_at: float | None = None  # epoch seconds at which an unloaded driver appears


@dataclass(frozen=True)
class Session:
    """A process between nvmlInit and nvmlShutdown (`count` nested inits)."""

    pid: int
    count: int


@dataclass(frozen=True)
class Fault:
    """The `remaining`-th next call of `function` fails with NVML return code `error`."""

    function: str
    remaining: int
    error: int
    action: FaultAction = FaultAction.RAISE
    gpu: int = -1  # LOSE: the index of the GPU that is lost


@dataclass(frozen=True)
class Latency:
    """Seconds each call sleeps, times `scale`."""

    seconds: Mapping[str, float]
    scale: float = 1.0

    def delay(self, function: str) -> float:
        """How long a call of `function` takes."""
        return self.seconds.get(function, 0.0) * self.scale


@dataclass(frozen=True)
class Host:
    """Everything a simulated host is."""

    driver: Driver
    gpus: tuple[SimGpu, ...]
    sysroot: str | None = None
    sessions: tuple[Session, ...] = ()
    faults: tuple[Fault, ...] = ()
    latency: Latency | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    # An HGX baseboard: its NVSwitches (6 on an HGX A100) link every GPU to every other, and
    # whether nvidia-fabricmanager runs (Ampere resets one GPU alone only through it).
    nvswitches: int = 0
    fabric_manager: bool = True

    def gpu(self, gpu_uuid: str) -> SimGpu | None:
        """The GPU with this UUID."""
        return next((g for g in self.gpus if g.uuid == gpu_uuid), None)

    def with_gpu(self, gpu: SimGpu) -> Host:
        """This host with one GPU replaced (matched by index)."""
        return replace(self, gpus=tuple(gpu if g.index == gpu.index else g for g in self.gpus))


def _tree_changed(old: Host, new: Host) -> bool:
    """Whether the fake /proc below the sysroot shows something that changed."""
    seen = (old.gpus, old.driver, old.nvswitches, old.fabric_manager)
    return seen != (new.gpus, new.driver, new.nvswitches, new.fabric_manager)


def _sync_tree(host: Host) -> None:
    if host.sysroot:
        loaded = host.driver.version if host.driver.loaded else None
        fabric_manager = bool(host.nvswitches) and host.fabric_manager
        simproc.sync(
            Path(host.sysroot),
            loaded,
            host.gpus,
            nvswitches=host.nvswitches,
            fabric_manager=fabric_manager,
        )


# ---- the JSON file ----


def _gi_json(gi: SimGpuInstance) -> dict[str, Any]:
    compute = [
        {"id": c.id, "profile_id": c.profile_id, "placement": [c.placement.start, c.placement.size]}
        for c in gi.compute
    ]
    placement = [gi.placement.start, gi.placement.size]
    return {"id": gi.id, "profile_id": gi.profile_id, "placement": placement, "compute": compute}


def _gpu_json(gpu: SimGpu) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "model": gpu.model_name,
        "uuid": gpu.uuid,
        "pci_bus_id": gpu.pci_bus_id,
        "minor": gpu.minor,
        "mig": {"current": gpu.mig.current, "pending": gpu.mig.pending},
        "instances": [_gi_json(gi) for gi in gpu.instances],
        "clients": [
            {"name": c.name, "pid": c.pid, "gi": c.gi_id, "ci": c.ci_id} for c in gpu.clients
        ],
        **({"lost": True} if gpu.lost else {}),
        "persistence": gpu.persistence,
        **({"pci_subsystem_id": gpu.pci_subsystem_id} if gpu.pci_subsystem_id is not None else {}),
    }


def _latency_json(latency: Latency | None) -> dict[str, Any] | None:
    return None if latency is None else {"scale": latency.scale, "seconds": dict(latency.seconds)}


def _custom_models(gpus: tuple[SimGpu, ...]) -> dict[str, ModelInfo]:
    """The GPUs' own models (catalogue-unknown GPUs), by name."""
    return {g.custom_model.name: g.custom_model for g in gpus if g.custom_model is not None}


def encode(host: Host) -> bytes:
    """The state file's bytes."""
    custom = _custom_models(host.gpus)
    document = {
        "format": FORMAT,
        "simulated": True,
        **({"models": [gpu_table.entry_json(m) for m in custom.values()]} if custom else {}),
        "driver": {
            "version": host.driver.version,
            "loaded": host.driver.loaded,
            "reload_at": host.driver.reload_at,
        },
        "sysroot": host.sysroot,
        "gpus": [_gpu_json(g) for g in host.gpus],
        "sessions": [{"pid": s.pid, "count": s.count} for s in host.sessions],
        "faults": [
            {
                "function": f.function,
                "remaining": f.remaining,
                "error": f.error,
                "action": f.action,
                **({"gpu": f.gpu} if f.gpu >= 0 else {}),
            }
            for f in host.faults
        ],
        "latency": _latency_json(host.latency),
        "counters": dict(sorted(host.counters.items())),
        **(
            {"nvswitch": {"count": host.nvswitches, "fabric_manager": host.fabric_manager}}
            if host.nvswitches
            else {}
        ),
    }
    return (json.dumps(document, indent=1) + "\n").encode()


def _placement(row: list[int]) -> Placement:
    start, size = row
    return Placement(int(start), int(size))


def _gpu(row: dict[str, Any], custom: Mapping[str, ModelInfo]) -> SimGpu:
    if row["model"] not in custom and find_model(row["model"]) is None:
        raise ValueError(f"unknown GPU model {row['model']!r}")
    instances = tuple(
        SimGpuInstance(
            gi["id"],
            gi["profile_id"],
            _placement(gi["placement"]),
            tuple(
                SimComputeInstance(c["id"], c["profile_id"], _placement(c["placement"]))
                for c in gi["compute"]
            ),
        )
        for gi in row["instances"]
    )
    clients = tuple(SimClient(c["name"], c["pid"], c["gi"], c["ci"]) for c in row["clients"])
    mig = MigMode(bool(row["mig"]["current"]), bool(row["mig"]["pending"]))
    return SimGpu(
        index=row["index"],
        model_name=row["model"],
        uuid=row["uuid"],
        pci_bus_id=row["pci_bus_id"],
        minor=row["minor"],
        mig=mig,
        instances=instances,
        clients=clients,
        lost=bool(row.get("lost", False)),
        persistence=bool(row.get("persistence", True)),
        pci_subsystem_id=row.get("pci_subsystem_id"),
        custom_model=custom.get(row["model"]),
    )


def _latency(row: dict[str, Any] | None) -> Latency | None:
    if row is None:
        return None
    seconds = {str(k): float(v) for k, v in row["seconds"].items()}
    return Latency(MappingProxyType(seconds), float(row["scale"]))


def decode(data: bytes, where: Path) -> Host:
    """Parse a state file; anything malformed is a ConfigError naming the file."""
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        driver = doc["driver"]
        models = (gpu_table.parse(m, f"{where}: models") for m in doc.get("models", ()))
        custom = {m.name: m for m in models}
        return Host(
            driver=Driver(driver["version"], bool(driver["loaded"]), driver["reload_at"]),
            gpus=tuple(_gpu(g, custom) for g in doc["gpus"]),
            sysroot=doc["sysroot"],
            sessions=tuple(Session(s["pid"], s["count"]) for s in doc["sessions"]),
            faults=tuple(
                Fault(
                    f["function"],
                    f["remaining"],
                    f["error"],
                    FaultAction(f["action"]),
                    f.get("gpu", -1),
                )
                for f in doc["faults"]
            ),
            latency=_latency(doc["latency"]),
            counters={str(k): int(v) for k, v in doc["counters"].items()},
            nvswitches=int(doc.get("nvswitch", {}).get("count", 0)),
            fabric_manager=bool(doc.get("nvswitch", {}).get("fabric_manager", True)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: not a simulated host state file ({exc})") from exc


@dataclass(frozen=True)
class _Cached:
    signature: tuple[int, int, int]
    data: bytes
    host: Host
    at_ns: int


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class HostStore:
    """One simulated host's state file: cached reads, locked atomic updates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._cached: _Cached | None = None

    def read(self) -> Host:
        """The host as the file says now (a stat per call while the file does not change)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no simulated host here") from None
        cached = self._cached
        signature = _signature(stat)
        if cached and cached.signature == signature and cached.at_ns - stat.st_mtime_ns > RACY_NS:
            return cached.host
        data = self.path.read_bytes()
        host = cached.host if cached and cached.data == data else decode(data, self.path)
        self._cached = _Cached(signature, data, host, time.time_ns())
        return host

    def update(self, change: Callable[[Host], tuple[Host, T]]) -> T:
        """Apply `change` to the current host under the lock; write if it changed anything."""
        with self._locked():
            current = self.read()
            new, result = change(current)
            if new != current:
                self._write(new)
                if new.sysroot and _tree_changed(current, new):
                    _sync_tree(new)
        return result

    def create(self, host: Host) -> None:
        """Write a new host, replacing whatever the file held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._write(host)
            if host.sysroot:
                _sync_tree(host)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, host: Host) -> None:
        data = encode(host)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self.path)
        stat = os.stat(self.path)
        self._cached = _Cached(_signature(stat), data, host, time.time_ns())


# ---- operations used by the pynvml surface ----


def pid_alive(pid: int) -> bool:
    """A running (not zombie) process has this pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def live_sessions(host: Host) -> list[Session]:
    return [s for s in host.sessions if pid_alive(s.pid)]


def open_session(store: HostStore, pid: int) -> None:
    """nvmlInit: record the session, or DRIVER_NOT_LOADED (a late driver appears on time)."""

    def change(host: Host) -> tuple[Host, None]:
        driver = host.driver
        if not driver.loaded and driver.reload_at is not None and time.time() >= driver.reload_at:
            host = replace(host, driver=Driver(driver.version))
        if not host.driver.loaded:
            raise NvmlFailure(Ret.DRIVER_NOT_LOADED)
        others = [s for s in live_sessions(host) if s.pid != pid]
        count = sum(s.count for s in host.sessions if s.pid == pid) + 1
        return replace(host, sessions=(*others, Session(pid, count))), None

    store.update(change)


def close_session(store: HostStore, pid: int, counts: Mapping[str, int]) -> None:
    """nvmlShutdown: one session level less, and this process's call counts merged."""

    def change(host: Host) -> tuple[Host, None]:
        left = [s if s.pid != pid else replace(s, count=s.count - 1) for s in live_sessions(host)]
        sessions = tuple(s for s in left if s.count > 0)
        return replace(host, sessions=sessions, counters=_merged(host.counters, counts)), None

    store.update(change)


def _merged(counters: Mapping[str, int], counts: Mapping[str, int]) -> dict[str, int]:
    merged = dict(counters)
    for name, count in counts.items():
        merged[name] = merged.get(name, 0) + count
    return merged


def merge_counters(store: HostStore, counts: Mapping[str, int]) -> None:
    """Add a process's call counts to the host's."""
    store.update(lambda host: (replace(host, counters=_merged(host.counters, counts)), None))


def take_fault(store: HostStore, function: str) -> Fault | None:
    """Count one call of `function` against its armed faults; the fault that fires, if any."""

    def change(host: Host) -> tuple[Host, Fault | None]:
        fired: Fault | None = None
        kept: list[Fault] = []
        for fault in host.faults:
            if fault.function == function and fired is None and fault.remaining <= 1:
                fired = fault
            elif fault.function == function:
                kept.append(replace(fault, remaining=fault.remaining - 1))
            else:
                kept.append(fault)
        return replace(host, faults=tuple(kept)), fired

    return store.update(change)


def update_gpu(store: HostStore, gpu_uuid: str, change: Callable[[SimGpu], tuple[SimGpu, T]]) -> T:
    """Apply a MIG rule to one GPU of the host, atomically."""

    def apply(host: Host) -> tuple[Host, T]:
        gpu = host.gpu(gpu_uuid)
        if gpu is None:
            raise NvmlFailure(Ret.INVALID_ARGUMENT)
        changed, result = change(gpu)
        return host.with_gpu(changed), result

    return store.update(apply)
