"""The one table of systemd units that use the GPUs, by role, and what migrestore does with each.

Every list of unit names in migrestore is derived from `UNITS`: the `[restore]` defaults
(`stop-units`, `refresh-units`), the units named when a reset is refused, the CDI refresh oneshot.
`units/migrestore.service` orders itself after the `DRIVER` units and before all the others;
tests/test_consumers.py holds the unit file to this table. Standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    """What a unit is to the GPUs."""

    DRIVER = "the driver's own daemons: started before the restore"
    MONITORING = "management and telemetry (NVSM, DCGM): driver clients"
    KUBERNETES_DEVICES = "advertise MIG devices to Kubernetes (device plugin, feature discovery)"
    CDI = "writes the container toolkit's CDI spec, which lists MIG devices"
    NODE_AGENT = "Kubernetes node agents: start pods with MIG devices"
    CONTAINER_ENGINE = "start containers with GPUs at boot"
    SCHEDULER = "Slurm: registers the node's MIG devices once at start"
    DISPLAY = "Xorg opens every GPU"


@dataclass(frozen=True)
class Unit:
    """A unit that uses the GPUs.

    `stop_for_reset`: stopped by default before an Ampere mode-change reset and started after;
    `refresh`: restarted by default after a live relayout (it caches the MIG devices);
    `holds_gpus`: named when a GPU reset is refused while it runs;
    `oneshot`: does its work when started, so a refresh runs it again even when inactive.
    """

    name: str
    role: Role
    stop_for_reset: bool = False
    refresh: bool = False
    holds_gpus: bool = False
    oneshot: bool = False


def _monitoring(name: str, refresh: bool = False) -> Unit:
    return Unit(name, Role.MONITORING, stop_for_reset=True, refresh=refresh, holds_gpus=True)


def _devices(name: str) -> Unit:
    return Unit(name, Role.KUBERNETES_DEVICES, stop_for_reset=True, refresh=True, holds_gpus=True)


# The Slurm node daemon: a live apply asks Slurm for allocated GPUs while it runs (allocations.py).
SLURMD = "slurmd.service"
# Ampere NVSwitch baseboards (HGX/DGX A100) reset one GPU alone only through it (execute.py).
FABRIC_MANAGER = "nvidia-fabricmanager.service"

UNITS: tuple[Unit, ...] = (
    Unit("nvidia-persistenced.service", Role.DRIVER, holds_gpus=True),
    Unit(FABRIC_MANAGER, Role.DRIVER),
    _monitoring("nvsm.service"),
    _monitoring("nvsm-core.service"),
    _monitoring("nvsm-api-gateway.service"),
    _monitoring("nvsm-mqtt.service"),
    _monitoring("nvsm-notifier.service"),
    # DCGM and dcgm-exporter list the MIG devices once at start: refreshed after a relayout.
    _monitoring("nvidia-dcgm.service", refresh=True),
    _monitoring("dcgm.service"),
    _monitoring("dcgm-exporter.service", refresh=True),
    _devices("nvidia-device-plugin.service"),
    _devices("gpu-feature-discovery.service"),
    Unit("nvidia-cdi-refresh.service", Role.CDI, refresh=True, oneshot=True),
    Unit("kubelet.service", Role.NODE_AGENT, holds_gpus=True),
    Unit("k3s.service", Role.NODE_AGENT, holds_gpus=True),
    Unit("k3s-agent.service", Role.NODE_AGENT, holds_gpus=True),
    Unit("rke2-server.service", Role.NODE_AGENT),
    Unit("rke2-agent.service", Role.NODE_AGENT),
    Unit("docker.service", Role.CONTAINER_ENGINE),
    Unit("containerd.service", Role.CONTAINER_ENGINE),
    Unit("podman-restart.service", Role.CONTAINER_ENGINE),
    Unit("crio.service", Role.CONTAINER_ENGINE),
    Unit(SLURMD, Role.SCHEDULER),
    Unit("display-manager.service", Role.DISPLAY, holds_gpus=True),
)


# The refresh order: the CDI spec first (the plugin reads it), then the plugin and discovery.
_REFRESH_ORDER = sorted((u for u in UNITS if u.refresh), key=lambda u: u.role is not Role.CDI)

DEFAULT_STOP_UNITS: tuple[str, ...] = tuple(u.name for u in UNITS if u.stop_for_reset)
DEFAULT_REFRESH_UNITS: tuple[str, ...] = tuple(u.name for u in _REFRESH_ORDER)
KNOWN_GPU_CLIENTS: tuple[str, ...] = tuple(u.name for u in UNITS if u.holds_gpus)
ONESHOT_REFRESH_UNITS: tuple[str, ...] = tuple(u.name for u in UNITS if u.oneshot)
STARTED_BEFORE: tuple[str, ...] = tuple(u.name for u in UNITS if u.role is Role.DRIVER)
STARTED_AFTER: tuple[str, ...] = tuple(u.name for u in UNITS if u.role is not Role.DRIVER)
