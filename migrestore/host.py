"""Building the adapters for this run: real NVML or the simulator, systemd units, the notifier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrestore.errors import ConfigError, GpuError, NoSuchUnit, UnitError
from migrestore.events import log
from migrestore.nvml import NvmlGpus, load_pynvml

if TYPE_CHECKING:  # annotations only: a verb that reads the GPUs loads no Protocol classes
    from migrestore.context import Context
    from migrestore.interfaces import Notifier, Units


def nvidia_smi_reset(pci_ids: tuple[str, ...]) -> None:
    """Reset GPUs the way NVIDIA documents (there is no public NVML reset call)."""
    import subprocess

    from migrestore.interfaces import RESET_TIMEOUT

    command = ["nvidia-smi", "--gpu-reset", "-i", ",".join(pci_ids)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=RESET_TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise GpuError(
            "nvidia-smi not found: cannot reset GPUs", nvml_error="ResetRequired"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise GpuError(f"nvidia-smi --gpu-reset timed out after {RESET_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        reason = "; ".join(lines[-3:]) or f"exit status {done.returncode}"
        from migrestore import holders

        held = holders.describe(holders.holders())
        raise GpuError(
            f"GPU reset refused: {reason}; holding /dev/nvidia*: {held}", nvml_error="InUse"
        )


def _simulated_nvml(state: Path) -> tuple[Any, Any]:
    from migrestore import simulator

    def reset(pci_ids: tuple[str, ...]) -> None:
        simulator.reset_gpus(state, list(pci_ids))

    return simulator.Simulator(state), reset


def gpus(ctx: Context) -> NvmlGpus:
    """The GPU adapter: the same NvmlGpus code over pynvml or over the simulator."""
    if ctx.simulate is not None:
        if not ctx.simulate.is_file():
            hint = "create one with `migrestore simulate init`"
            raise ConfigError(f"{ctx.simulate}: no simulated host here ({hint})")
        nvml, reset = _simulated_nvml(ctx.simulate)
        return NvmlGpus(nvml, reset, simulated=True)
    return NvmlGpus(load_pynvml(), nvidia_smi_reset)


class NoUnits:
    """A simulated run on a real host must not stop or start the host's real GPU clients. The
    only units it reports are the simulated host's own daemons (Fabric Manager of a simulated
    NVSwitch baseboard), which are never stopped."""

    def __init__(self, daemons: tuple[str, ...] = ()) -> None:
        self._daemons = daemons

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The simulated host's daemons among `names`; no GPU client runs in a simulation."""
        from migrestore.consumers import FABRIC_MANAGER

        clients = tuple(n for n in names if n not in (*self._daemons, FABRIC_MANAGER))
        if clients:
            log.info("simulated_run_leaves_units_alone", units=",".join(clients))
        return tuple(n for n in names if n in self._daemons)

    def stop(self, names: tuple[str, ...]) -> None:
        """Refused: a simulation stops none of the host's units (its daemons run on)."""
        raise UnitError(f"a simulated run does not stop {', '.join(names)}")

    def start(self, names: tuple[str, ...]) -> None:
        """Refused: a simulation starts none of the host's units (nothing was stopped either):
        to it they do not exist, so a CDI refresh oneshot is skipped as on a host without one."""
        raise NoSuchUnit(f"a simulated run does not start {', '.join(names)}")


def _simulated_daemons(state: Path | None) -> tuple[str, ...]:
    """The units a simulated host runs: nvidia-fabricmanager on an NVSwitch baseboard with
    Fabric Manager active."""
    if state is None or not state.is_file():
        return ()
    from migrestore.consumers import FABRIC_MANAGER
    from migrestore.simulator.state import HostStore

    host = HostStore(state).read()
    return (FABRIC_MANAGER,) if host.nvswitches and host.fabric_manager else ()


def units(ctx: Context) -> Units:
    """systemd units through D-Bus (lazily connected).

    A simulated run touches units only on a private user manager (MIGRESTORE_SYSTEMD_USER=1, as the
    tests and demos set up); otherwise it would stop the real host's DCGM for a pretend reset.
    """
    from migrestore.systemd import SystemdUnits, user_bus_requested

    if ctx.simulated and not user_bus_requested(os.environ):
        return NoUnits(_simulated_daemons(ctx.simulate))
    return SystemdUnits()


def notifier(boot: bool, verbosity: int = 0) -> Notifier:
    """sd_notify at boot (no-op without NOTIFY_SOCKET); by hand, a progress line when stderr is
    a person's terminal (not the journal, not with -q), else nothing."""
    import sys

    from migrestore.logs import is_terminal, journal_attached
    from migrestore.systemd import NullNotifier, SdNotifier

    if boot:
        return SdNotifier()
    attended = is_terminal(sys.stderr) and not journal_attached(
        os.environ.get("JOURNAL_STREAM"), sys.stderr
    )
    if attended and verbosity == 0:
        from migrestore.progress import TerminalProgress

        return TerminalProgress(sys.stderr)
    return NullNotifier()
