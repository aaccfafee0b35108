"""The narrow interfaces the pure core needs from the outside world (adapters implement them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from migrestore.model import MigMode, ModeChange, NodeState, Placement

Detail = Literal["layout", "processes", "full"]
"""How much of each GPU to read: the layout only; plus processes; plus UUIDs, minors, memory."""

# How long one GPU reset may take, and one unit's stop or start job: the adapters give up after
# this, and the executor extends systemd's start timeout by it (for each reset batch, for stops,
# and for starting the stopped units again, which is awaited).
RESET_TIMEOUT = 120.0
UNIT_STOP_TIMEOUT = 120.0
UNIT_START_TIMEOUT = 120.0


class Gpus(Protocol):
    """The GPUs, through NVML (real or simulated). Implemented by `nvml.NvmlGpus`."""

    def open(self) -> None:
        """Start a session with the driver."""
        ...

    def close(self) -> None:
        """End the session."""
        ...

    def wait_for_driver(self, timeout: float, on_wait: Callable[[float], None]) -> None:
        """Open the session, waiting at most `timeout` seconds for the driver to load."""
        ...

    def read_state(self, *, details: Detail = "full") -> NodeState:
        """Every GPU with its MIG mode, profile table, instances (and UUIDs, processes)."""
        ...

    def reread(self, before: NodeState, changed: set[str]) -> NodeState:
        """The state after changes to the `changed` GPUs; the others as in `before`."""
        ...

    def mig_mode(self, uuid: str) -> MigMode:
        """Current and pending MIG mode of one GPU."""
        ...

    def set_mig_mode(self, uuid: str, enabled: bool) -> ModeChange:
        """Ask for MIG on or off; on Ampere the change may stay pending until a reset."""
        ...

    def reset(self, pci_ids: tuple[str, ...]) -> None:
        """Reset these GPUs (what `nvidia-smi -r -i` does), with NVML shut down around it."""
        ...

    def nvswitch_attached(self, uuid: str) -> bool:
        """Whether an active NVLink of this GPU goes to an NVSwitch (an HGX/DGX baseboard); False
        when that cannot be told."""
        ...

    def persistence(self, uuid: str) -> bool:
        """Whether persistence mode is on (it holds the GPU like a client: resets are refused)."""
        ...

    def set_persistence(self, uuid: str, enabled: bool) -> None:
        """Turn persistence mode on or off for this GPU alone."""
        ...

    def destroy_compute_instance(self, uuid: str, gi_id: int, ci_id: int) -> None:
        """Destroy one compute instance."""
        ...

    def destroy_gpu_instance(self, uuid: str, gi_id: int) -> None:
        """Destroy one GPU instance (its compute instances must be gone)."""
        ...

    def create_gpu_instance(self, uuid: str, profile_id: int, placement: Placement) -> int:
        """Create a GPU instance at an exact placement; returns the id the driver gave it."""
        ...

    def create_compute_instance(
        self, uuid: str, gi_id: int, profile_id: int, placement: Placement
    ) -> int:
        """Create a compute instance at an exact placement inside a GPU instance; returns its id."""
        ...


class Units(Protocol):
    """systemd units that hold the GPUs (driver clients). Implemented by `systemd.SystemdUnits`."""

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The subset of `names` that is active now, in the given order."""
        ...

    def stop(self, names: tuple[str, ...]) -> None:
        """Stop these units and wait until they are inactive."""
        ...

    def start(self, names: tuple[str, ...]) -> None:
        """Start these units and wait for their start jobs (not for those that wait for this
        run's own unit); UnitError names every unit that did not start."""
        ...


class Notifier(Protocol):
    """Progress for the service manager (sd_notify). Implemented by `systemd.SdNotifier`."""

    def status(self, text: str) -> None:
        """`STATUS=` line."""
        ...

    def extend_timeout(self, seconds: float) -> None:
        """`EXTEND_TIMEOUT_USEC=`: the next step may take this long."""
        ...

    def ready(self) -> None:
        """`READY=1`."""
        ...
