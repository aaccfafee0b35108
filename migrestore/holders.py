"""Which processes hold the NVIDIA device files open: named in errors when a reset is refused.

Reads `/proc/PID/fd/*` links (below a sysroot, so tests and the simulator can lay out a fake
`/proc`). Processes that vanish or cannot be inspected while we scan are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

DEVICE_PREFIX = "/dev/nvidia"
SHOWN_AT_MOST = 10


class Holder(NamedTuple):
    """A process with at least one NVIDIA device file open."""

    pid: int
    name: str


def holders(
    sysroot: Path = Path("/"),
    prefix: str = DEVICE_PREFIX,
    exclude: Collection[int] | None = None,
) -> tuple[Holder, ...]:
    """Processes with a file descriptor on a path starting with `prefix`, by pid.

    `exclude` defaults to this process (NVML keeps /dev/nvidia* open while initialised).
    """
    skipped = {os.getpid()} if exclude is None else set(exclude)
    proc = sysroot / "proc"
    found = [
        Holder(pid, process_name(proc / str(pid)))
        for pid in process_ids(proc)
        if pid not in skipped and holds_device(proc / str(pid) / "fd", prefix)
    ]
    return tuple(found)


def process_ids(proc: Path) -> list[int]:
    """The pids listed in a /proc directory, ascending."""
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def holds_device(fd_dir: Path, prefix: str) -> bool:
    """Whether any descriptor link in /proc/PID/fd points below `prefix`."""
    return any(target.startswith(prefix) for target in link_targets(fd_dir))


def link_targets(fd_dir: Path) -> Iterator[str]:
    """The targets of the readable links in a /proc/PID/fd directory."""
    try:
        entries = os.listdir(fd_dir)
    except OSError:
        return
    for entry in entries:
        try:
            yield os.readlink(fd_dir / entry)
        except OSError:
            continue


def process_name(pid_dir: Path) -> str:
    """The command name from /proc/PID/comm, else the first word of cmdline, else "?"."""
    try:
        name = (pid_dir / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        name = ""
    if name:
        return name
    try:
        argv0 = (pid_dir / "cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return "?"
    return os.path.basename(argv0.decode("utf-8", errors="replace")) or "?"


def describe(found: tuple[Holder, ...]) -> str:
    """`nv-hostengine (pid 812), dcgm-exporter (pid 990)`; at most 10, then `and N more`."""
    if not found:
        return "no process holds /dev/nvidia*"
    shown = ", ".join(f"{holder.name} (pid {holder.pid})" for holder in found[:SHOWN_AT_MOST])
    rest = len(found) - SHOWN_AT_MOST
    return f"{shown} and {rest} more" if rest > 0 else shown


def unit_of(pid: int, sysroot: Path = Path("/")) -> str:
    """The systemd unit a process runs in: the innermost `.service` or `.scope` of its cgroup
    path in /proc/PID/cgroup; "" when it cannot be told (gone, not in a unit)."""
    try:
        lines = (sysroot / "proc" / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return ""
