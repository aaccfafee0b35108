"""`/dev/nvidia-caps` device nodes for MIG instances, as `nvidia-modprobe -f` would make them.

The driver publishes, per instance, `/proc/driver/nvidia/capabilities/gpuN/mig/giX[/ciY]/access`
(N = the GPU's device minor) with `DeviceFileMinor` and `DeviceFileMode`; the minors are also
listed in `/proc/driver/nvidia-caps/mig-minors`. The driver cannot create `/dev` nodes itself, so
after creating instances someone must, or containers given a MIG device find no node.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from migrestore.model import NodeState

MIG_MINORS = "proc/driver/nvidia-caps/mig-minors"
CAPS_DIR = "dev/nvidia-caps"


@dataclass(frozen=True)
class Capability:
    """One capability file's device node: which minor, with which mode."""

    name: str
    minor: int
    mode: int


def uses_dev_nodes(sysroot: Path) -> bool:
    """The driver exposes capabilities as /dev nodes (the default since R450's devfs mode)."""
    return (sysroot / MIG_MINORS).is_file()


def mig_minors(sysroot: Path) -> dict[str, int]:
    """`gpu0/gi1/access` -> 12, from /proc/driver/nvidia-caps/mig-minors."""
    table: dict[str, int] = {}
    for line in (sysroot / MIG_MINORS).read_text().splitlines():
        name, _, minor = line.rpartition(" ")
        if name and minor.isdigit():
            table[name] = int(minor)
    return table


def _access_file(sysroot: Path, name: str) -> Path:
    return sysroot / "proc/driver/nvidia/capabilities" / name


def read_capability(sysroot: Path, name: str, minors: dict[str, int]) -> Capability | None:
    """A capability (`gpu0/gi1/access`) from its proc access file, else from mig-minors."""
    fields: dict[str, str] = {}
    gpu, _, rest = name.partition("/")
    path = _access_file(sysroot, f"{gpu}/mig/{rest}")
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    minor = int(fields["DeviceFileMinor"]) if "DeviceFileMinor" in fields else minors.get(name)
    if minor is None:
        return None
    return Capability(name, minor, int(fields.get("DeviceFileMode", "292")))


def wanted_capabilities(state: NodeState) -> tuple[str, ...]:
    """Capability names for every GPU and compute instance on the host."""
    names: list[str] = []
    for gpu in state.gpus:
        for gi in gpu.instances:
            names.append(f"gpu{gpu.minor}/gi{gi.id}/access")
            names.extend(f"gpu{gpu.minor}/gi{gi.id}/ci{ci.id}/access" for ci in gi.compute)
    return tuple(names)


def caps_major(sysroot: Path) -> int | None:
    """The character-device major of nvidia-caps, from /proc/devices."""
    devices = sysroot / "proc/devices"
    if not devices.is_file():
        return None
    for line in devices.read_text().splitlines():
        number, _, name = line.strip().partition(" ")
        if name.strip() == "nvidia-caps" and number.isdigit():
            return int(number)
    return None


def ensure_nodes(state: NodeState, sysroot: Path) -> tuple[Path, ...]:
    """Create missing /dev/nvidia-caps nodes for the host's instances; returns the nodes made."""
    major = caps_major(sysroot)
    if not uses_dev_nodes(sysroot) or major is None:
        return ()
    minors = mig_minors(sysroot)
    directory = sysroot / CAPS_DIR
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    made: list[Path] = []
    for name in wanted_capabilities(state):
        cap = read_capability(sysroot, name, minors)
        if cap is None:
            continue
        node = directory / f"nvidia-cap{cap.minor}"
        if not node.exists():
            os.mknod(node, stat.S_IFCHR | cap.mode, os.makedev(major, cap.minor))
            made.append(node)
    return tuple(made)


def remove_stale_nodes(before: NodeState, after: NodeState, sysroot: Path) -> tuple[Path, ...]:
    """Remove the /dev/nvidia-caps nodes of instances that existed `before` and are gone `after`
    (their minors from mig-minors: the proc access files went with the instances); returns the
    nodes removed. A node a remaining instance also uses is kept."""
    if not uses_dev_nodes(sysroot):
        return ()
    gone = set(wanted_capabilities(before)) - set(wanted_capabilities(after))
    if not gone:
        return ()
    minors = mig_minors(sysroot)
    kept = {minors[name] for name in wanted_capabilities(after) if name in minors}
    removed: list[Path] = []
    for name in sorted(gone):
        minor = minors.get(name)
        if minor is None or minor in kept:
            continue
        node = sysroot / CAPS_DIR / f"nvidia-cap{minor}"
        if node.exists():
            node.unlink()
            removed.append(node)
    return tuple(removed)
