"""Other owners of MIG on this host, as far as cheap file checks below a root can tell.

The boot restore uses these (no process is started, no cluster asked); `doctor` adds what only
commands can tell (kubectl, crictl). Every path is read below `root` so that tests and fixture
trees point at a directory of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

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
