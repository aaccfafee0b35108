"""The run lock under /run and the record of each apply under /var/lib/migrestore."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrestore import audit
from migrestore.errors import ConfigError, LockError
from migrestore.selection import Slot

RECORD_NAME = "last-run.json"
HISTORY_NAME = "runs.jsonl"
HISTORY_KEEP = 100
STOPPED_NAME = "stopped-units.json"  # driver clients a run stopped and has not started again
PERSISTENCE_NAME = "persistence-off.json"  # GPUs a run turned persistence mode off on, not yet on


@dataclass(frozen=True)
class GpuRecord:
    """One GPU's result in a run."""

    uuid: str
    index: int
    name: str
    result: str
    error: str = ""
    mig_devices: tuple[str, ...] = ()
    pci: str = ""
    steps: tuple[str, ...] = ()  # the steps done on this GPU, in order
    on_failure: str = ""  # what on-failure = "disable-mig" did after the GPU failed
    serial: str = ""  # the board's serial number, "" if NVML reports none
    replaces: str = ""  # the UUID of the `uuid` entry whose GPU this one replaced in its slot


@dataclass(frozen=True)
class RunRecord:
    """What one `apply` did."""

    time: str
    config: str
    config_sha256: str
    result: str
    simulated: bool
    gpus: tuple[GpuRecord, ...] = ()
    boot: bool = False
    notes: tuple[str, ...] = field(default=())
    driver: str = ""  # the NVIDIA driver version NVML reported
    nvml_bindings: str = ""  # the pynvml used: version, packaged or not, file
    # The audit (audit.py): what was asked, by whom, with which versions.
    verb: str = ""
    flags: tuple[str, ...] = ()
    who: audit.Actor = field(default_factory=audit.Actor)
    migrestore_version: str = ""
    nvml_bindings_version: str = ""
    nvml_bindings_path: str = ""

    def mig_devices(self) -> dict[str, tuple[str, ...]]:
        """MIG device UUIDs per GPU UUID."""
        return {g.uuid: g.mig_devices for g in self.gpus}


def slots(record: RunRecord | None) -> tuple[Slot, ...]:
    """Where each GPU of the record sat: what tells a GPU replaced in its slot from one missing."""
    if record is None:
        return ()
    return tuple(
        Slot(tuple(u for u in (g.uuid, g.replaces) if u), g.pci, g.name, g.serial)
        for g in record.gpus
        if g.pci
    )


def last_slots(state_dir: Path) -> tuple[Slot, ...]:
    """The slots of the last run that read the GPUs: the last record's, or, when that run
    aborted before reading them (no GPU in its record), the latest such record of the history."""
    found = slots(last(state_dir))
    if found:
        return found
    for record in reversed(_history(state_dir)):
        found = slots(record)
        if found:
            return found
    return ()


def _history(state_dir: Path) -> list[RunRecord]:
    """The readable records of the run history, oldest first."""
    try:
        lines = (state_dir / HISTORY_NAME).read_text().splitlines()
    except (OSError, ValueError):
        return []
    records = []
    for line in lines:
        try:
            records.append(_record(json.loads(line)))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # damaged or written by another version: skipped
    return records


@contextlib.contextmanager
def locked(run_dir: Path, timeout: float) -> Iterator[None]:
    """Hold `run_dir/lock` exclusively; wait at most `timeout` seconds for another run to finish."""
    path = run_dir / "lock"
    fd = _open_lock(path, os.O_RDWR)
    try:
        _acquire(fd, path, timeout)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def shared_unless_applying(run_dir: Path) -> Iterator[bool]:
    """Hold `run_dir/lock` shared, beside other readers, and yield True; yield False, holding
    nothing, while a run holds it exclusively (an apply). Never waits: an apply that comes later
    waits for the readers (its --lock-wait), so a reader never holds NVML during its reset."""
    fd = _open_lock(run_dir / "lock", os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            free = True
        except BlockingIOError:
            free = False
        yield free
    finally:
        os.close(fd)


def _open_lock(path: Path, mode: int) -> int:
    """The lock file, created root-only if missing; ConfigError if the directory cannot hold it."""
    try:
        _private_dir(path.parent)
        return os.open(path, mode | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"{path.parent}: cannot keep the lock here: {exc.strerror or exc}"
        ) from None


def _acquire(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = path.read_text().strip() or "?"
                message = f"another migrestore run (pid {holder}) holds {path}"
                raise LockError(f"{message}; gave up after {timeout:g} s") from None
            time.sleep(0.1)


def _private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def save(record: RunRecord, state_dir: Path) -> Path:
    """Write the record as the last run and append it to the history, each file atomically
    (a kill or a full disk leaves the previous version whole); OSError if that fails."""
    _private_dir(state_dir)
    path = state_dir / RECORD_NAME
    write_atomically(path, json.dumps(asdict(record), indent=1) + "\n")
    _append_history(state_dir / HISTORY_NAME, record)
    return path


def _append_history(path: Path, record: RunRecord) -> None:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    lines = [*lines[-(HISTORY_KEEP - 1) :], json.dumps(asdict(record))]
    write_atomically(path, "\n".join(lines) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a temporary file in the same directory, fsync, rename, then
    fsync of the directory. Readers see the old file or the new one, never a part."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remember_stopped(state_dir: Path, units: tuple[str, ...]) -> None:
    """Before stopping driver clients: note them, atomically, so that a run killed before it
    started them again (SIGKILL) leaves the next run what to start."""
    _note(state_dir, STOPPED_NAME, units)


def forget_stopped(state_dir: Path) -> None:
    """The noted units were started again (a note left behind only starts them once more)."""
    _forget(state_dir, STOPPED_NAME)


def left_stopped(state_dir: Path) -> tuple[str, ...]:
    """Units an earlier run stopped and did not start again (a damaged note counts as none)."""
    return _noted(state_dir, STOPPED_NAME)


def remember_persistence_off(state_dir: Path, uuids: tuple[str, ...]) -> None:
    """Before turning persistence mode off for a reset: note the GPUs (as for stopped units)."""
    _note(state_dir, PERSISTENCE_NAME, uuids)


def forget_persistence_off(state_dir: Path) -> None:
    """Persistence mode is on again on the noted GPUs."""
    _forget(state_dir, PERSISTENCE_NAME)


def left_persistence_off(state_dir: Path) -> tuple[str, ...]:
    """GPUs (UUIDs) an earlier run turned persistence mode off on and did not turn it on again."""
    return _noted(state_dir, PERSISTENCE_NAME)


def _note(state_dir: Path, name: str, items: tuple[str, ...]) -> None:
    _private_dir(state_dir)
    write_atomically(state_dir / name, json.dumps(list(items)) + "\n")


def _forget(state_dir: Path, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(state_dir / name)


def _noted(state_dir: Path, name: str) -> tuple[str, ...]:
    try:
        items = json.loads((state_dir / name).read_text())
    except (OSError, ValueError):
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(dict.fromkeys(n for n in items if isinstance(n, str)))


def last(state_dir: Path) -> RunRecord | None:
    """The previous run's record, if there is a readable one."""
    path = state_dir / RECORD_NAME
    try:
        return _record(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, damaged or written by another version: as if there were none


def _record(data: dict[str, Any]) -> RunRecord:
    gpus = tuple(
        GpuRecord(
            **{
                **g,
                "mig_devices": tuple(g.get("mig_devices", ())),
                "steps": tuple(g.get("steps", ())),
            }
        )
        for g in data["gpus"]
    )
    return RunRecord(
        **{
            **data,
            "gpus": gpus,
            "notes": tuple(data.get("notes", ())),
            "flags": tuple(data.get("flags", ())),
            "who": audit.from_json(data.get("who", {})),
        }
    )


def changed_devices(before: RunRecord | None, after: RunRecord) -> tuple[str, ...]:
    """GPUs whose MIG device UUIDs differ from the previous run's (the schedulers will notice)."""
    if before is None:
        return ()
    old = {g.uuid: g.mig_devices for g in before.gpus if g.result == "ok"}
    return tuple(
        g.uuid
        for g in after.gpus
        if g.result == "ok" and g.uuid in old and set(old[g.uuid]) != set(g.mig_devices)
    )
