"""The fake `/proc` a simulated host keeps below its sysroot, shaped like the real driver's.

Formats and numbers come from the real H200 (tests/fixtures/simulator/h200-driver-580/): the
`nvidia-caps/mig-minors` table, the capability files, `gpus/<bus>/information`, and the device
majors of /dev/nvidia0 (195), /dev/nvidia-uvm (238) and /dev/nvidia-caps (241).
Driver clients also appear as `/proc/PID/{comm,fd/*}` with descriptors on /dev/nvidia*.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from migrestore.simulator.rules import SimGpu

MIG_MINORS_GPUS = 32  # the table always covers gpu0..gpu31
MIG_MINORS_GIS = 15  # gi0..gi14: the 15 swizzIds
MIG_MINORS_CIS = 8  # ci0..ci7
CONFIG_MINOR = 1
MONITOR_MINOR = 2
MODE_CONFIG = 0o400  # cr-------- nvidia-cap1 on the real host
MODE_READ_ALL = 0o444  # cr--r--r-- nvidia-cap2 and the per-instance access files (292)
DEVICES = "Character devices:\n195 nvidia-frontend\n238 nvidia-uvm\n241 nvidia-caps\n"
MODULES = (
    "nvidia_uvm 1830912 - - Live 0x0000000000000000 (O)\n"
    "nvidia 14299136 - - Live 0x0000000000000000 (O)\n"
)
VIDEO_BIOS = "96.00.a5.00.1a"
CLIENT_MARKER = ".migrestore-simulated"
NVSWITCH_DIR = "driver/nvidia-nvswitch"
NVSWITCH_FIRST_BUS = 0xC4  # made up: the simulated baseboard's NVSwitches sit at c4:00.0 on
# nv-fabricmanager, the daemon of nvidia-fabricmanager.service, as the kernel cuts its comm
FABRIC_MANAGER_COMM = "nv-fabricmanage"
FABRIC_MANAGER_PID = 3900  # made up, below the pids given to attached clients


def mig_minor(gpu_minor: int, gi_id: int, ci_id: int | None = None) -> int:
    """The predetermined capability minor of `gpuN/giX/access` or `gpuN/giX/ciY/access`."""
    per_gi = 1 + MIG_MINORS_CIS
    base = MONITOR_MINOR + 1 + (gpu_minor * MIG_MINORS_GIS + gi_id) * per_gi
    return base if ci_id is None else base + 1 + ci_id


def mig_minors_text() -> str:
    """`/proc/driver/nvidia-caps/mig-minors`, byte for byte as the driver writes it."""
    lines = [f"config {CONFIG_MINOR}", f"monitor {MONITOR_MINOR}"]
    for gpu in range(MIG_MINORS_GPUS):
        for gi in range(MIG_MINORS_GIS):
            lines.append(f"gpu{gpu}/gi{gi}/access {mig_minor(gpu, gi)}")
            lines += [
                f"gpu{gpu}/gi{gi}/ci{ci}/access {mig_minor(gpu, gi, ci)}"
                for ci in range(MIG_MINORS_CIS)
            ]
    return "\n".join(lines) + "\n"


def capability_text(minor: int, mode: int) -> str:
    """A `/proc/driver/nvidia/capabilities/...` file."""
    return f"DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n"


def proc_bus_id(pci_bus_id: str) -> str:
    """`00000000:07:00.0` -> `0000:07:00.0` (how /proc and sysfs name the device)."""
    domain, _, rest = pci_bus_id.partition(":")
    return f"{int(domain, 16):04x}:{rest.lower()}"


def information_text(gpu: SimGpu, driver_version: str) -> str:
    """`/proc/driver/nvidia/gpus/<bus>/information`."""
    bus = proc_bus_id(gpu.pci_bus_id)
    return (
        f"Model: \t\t {gpu.model.name}\nIRQ:   \t\t {41 + gpu.index}\n"
        f"GPU UUID: \t {gpu.uuid}\nVideo BIOS: \t {VIDEO_BIOS}\nBus Type: \t PCIe\n"
        "DMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\n"
        f"Bus Location: \t {bus}\nDevice Minor: \t {gpu.minor}\n"
        f"GPU Firmware: \t {driver_version}\nGPU Excluded:\t No\n"
    )


def _write(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_others(directory: Path, pattern: str, keep: set[str]) -> None:
    for path in directory.glob(pattern):
        if path.name not in keep:
            _remove(path)


def sync(
    sysroot: Path,
    driver_version: str | None,
    gpus: Sequence[SimGpu],
    *,
    nvswitches: int = 0,
    fabric_manager: bool = False,
) -> None:
    """Make the tree match the host; `driver_version` None means the driver is not loaded."""
    proc = sysroot / "proc"
    if driver_version is None:
        _remove(proc / "driver/nvidia")
        _remove(proc / "driver/nvidia-caps")
        _remove(proc / NVSWITCH_DIR)
        _write(proc / "devices", "Character devices:\n")
        _write(proc / "modules", "")
        _sync_clients(proc, ())
        _sync_fabric_manager(proc, running=False)
        return
    _write_driver(proc, driver_version, gpus)
    for gpu in gpus:
        _sync_instances(proc / f"driver/nvidia/capabilities/gpu{gpu.minor}/mig", gpu)
    _sync_clients(proc, gpus)
    _sync_nvswitches(proc, nvswitches)
    _sync_fabric_manager(proc, running=fabric_manager)


def nvswitch_bus_ids(count: int) -> list[str]:
    """Made-up PCI addresses of a baseboard's NVSwitches, as /proc names them."""
    return [f"0000:{NVSWITCH_FIRST_BUS + i:02x}:00.0" for i in range(count)]


def _sync_nvswitches(proc: Path, count: int) -> None:
    """`/proc/driver/nvidia-nvswitch/devices/<bus>/`: one directory per NVSwitch, as the
    nvidia-nvswitch module makes them (doctor and NVIDIA's own units look there)."""
    if not count:
        _remove(proc / NVSWITCH_DIR)
        return
    devices = proc / NVSWITCH_DIR / "devices"
    wanted = set(nvswitch_bus_ids(count))
    if devices.is_dir():
        _remove_others(devices, "*", wanted)
    for bus in sorted(wanted):
        (devices / bus).mkdir(parents=True, exist_ok=True)


def _sync_fabric_manager(proc: Path, *, running: bool) -> None:
    """nv-fabricmanager as a process (`/proc/PID/comm`), while the simulated host runs it."""
    pid_dir = proc / str(FABRIC_MANAGER_PID)
    if not running:
        if (pid_dir / CLIENT_MARKER).exists():
            _remove(pid_dir)
        return
    _write(pid_dir / "comm", FABRIC_MANAGER_COMM + "\n")
    _write(pid_dir / CLIENT_MARKER, "")


def _write_driver(proc: Path, driver_version: str, gpus: Sequence[SimGpu]) -> None:
    minors = proc / "driver/nvidia-caps/mig-minors"
    if not minors.exists():
        _write(minors, mig_minors_text())
    caps = proc / "driver/nvidia/capabilities"
    _write(caps / "mig/config", capability_text(CONFIG_MINOR, MODE_CONFIG))
    _write(caps / "mig/monitor", capability_text(MONITOR_MINOR, MODE_READ_ALL))
    _remove_others(caps, "gpu[0-9]*", {f"gpu{gpu.minor}" for gpu in gpus})
    _remove_others(proc / "driver/nvidia/gpus", "*", {proc_bus_id(g.pci_bus_id) for g in gpus})
    for gpu in gpus:
        (caps / f"gpu{gpu.minor}/mig").mkdir(parents=True, exist_ok=True)
        info = proc / "driver/nvidia/gpus" / proc_bus_id(gpu.pci_bus_id) / "information"
        _write(info, information_text(gpu, driver_version))
    _write(proc / "devices", DEVICES)
    _write(proc / "modules", MODULES)


def _sync_instances(mig_dir: Path, gpu: SimGpu) -> None:
    wanted = {f"gi{gi.id}": gi for gi in gpu.instances}
    for stale in {p.name for p in mig_dir.iterdir()} - wanted.keys():
        _remove(mig_dir / stale)
    for name, gi in wanted.items():
        _write(
            mig_dir / name / "access", capability_text(mig_minor(gpu.minor, gi.id), MODE_READ_ALL)
        )
        cis = {f"ci{ci.id}": ci.id for ci in gi.compute}
        for stale in {p.name for p in (mig_dir / name).iterdir() if p.is_dir()} - cis.keys():
            _remove(mig_dir / name / stale)
        for ci_name, ci_id in cis.items():
            minor = mig_minor(gpu.minor, gi.id, ci_id)
            _write(mig_dir / name / ci_name / "access", capability_text(minor, MODE_READ_ALL))


def _sync_clients(proc: Path, gpus: Sequence[SimGpu]) -> None:
    """Each client is a process with /dev/nvidiactl and /dev/nvidia<minor> open."""
    wanted: dict[int, tuple[str, set[int]]] = {}
    for gpu in gpus:
        for client in gpu.clients:
            wanted.setdefault(client.pid, (client.name, set()))[1].add(gpu.minor)
    ours = {int(p.parent.name) for p in proc.glob(f"[0-9]*/{CLIENT_MARKER}")}
    ours.discard(FABRIC_MANAGER_PID)
    for pid in ours - wanted.keys():
        _remove(proc / str(pid))
    for pid, (name, minors) in wanted.items():
        _lay_out_process(proc / str(pid), name, minors)


def _lay_out_process(pid_dir: Path, name: str, minors: set[int]) -> None:
    fd_dir = pid_dir / "fd"
    _remove(fd_dir)
    fd_dir.mkdir(parents=True)
    _write(pid_dir / "comm", name + "\n")
    _write(pid_dir / CLIENT_MARKER, "")
    targets = ["/dev/nvidiactl", *(f"/dev/nvidia{minor}" for minor in sorted(minors))]
    for number, target in enumerate(targets, start=3):
        os.symlink(target, fd_dir / str(number))
