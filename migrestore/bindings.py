"""Which Python NVML bindings a run uses, for `--version`, `doctor` and the run records.

Apart from `nvml` (which loads pynvml) so that a verb reading the GPUs loads none of this.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore.errors import DriverError
from migrestore.nvml import load_pynvml, vendor_dir

# The nvidia-ml-py the packages carry (packaging/vendor/requirements.txt; a test keeps them equal).
PACKAGED_BINDINGS = "13.615.71"
BINDINGS_DISTRIBUTIONS = ("nvidia-ml-py", "nvidia-ml-py3", "pynvml")
MIG_CALL = "nvmlDeviceCreateGpuInstanceWithPlacement"  # bindings without it cannot restore
DRIVER_VERSION_FILE = "sys/module/nvidia/version"  # below the root; the module's own version


@dataclass(frozen=True)
class Bindings:
    """Which Python NVML bindings a run uses: version, file, and whether it is the packaged copy."""

    version: str
    path: str
    packaged: bool
    mig_calls: bool = True  # nvidia-ml-py3 7.352 (2017) has none

    def __str__(self) -> str:
        origin = "packaged" if self.packaged else "from the Python path"
        return f"nvidia-ml-py {self.version} ({origin}, {self.path})"


def bindings(module: Any) -> Bindings:
    """The version and file of a loaded pynvml module."""
    path = Path(getattr(module, "__file__", "") or "?")
    mig_calls = hasattr(module, MIG_CALL)
    if path.parent == vendor_dir():
        return Bindings(PACKAGED_BINDINGS, str(path), packaged=True, mig_calls=mig_calls)
    return Bindings(_distribution_version(path), str(path), packaged=False, mig_calls=mig_calls)


def loaded_bindings() -> Bindings | None:
    """The pynvml this process imported (the real one, or the one the simulator wraps)."""
    module = sys.modules.get("pynvml")
    return bindings(module) if module is not None else None


def _distribution_version(module_file: Path) -> str:
    """The version of the installed distribution that owns `module_file` ("unknown": none)."""
    from importlib import metadata

    for name in BINDINGS_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        owned = (Path(str(dist.locate_file(f))) for f in dist.files or ())
        if module_file in owned:
            return dist.version
    return "unknown"


def describe_bindings() -> str:
    """The bindings `load_pynvml` picks, or why there are none (for --version and doctor)."""
    try:
        return str(bindings(load_pynvml()))
    except DriverError as exc:
        return f"none: {exc}"


def version_text(program: str) -> str:
    """`migrestore --version`: the program, the NVML bindings it would use, the loaded driver."""
    driver = driver_version_file() or "not loaded"
    return f"migrestore {program}\nNVML bindings: {describe_bindings()}\nNVIDIA driver: {driver}"


def driver_version_file(sysroot: Path = Path("/")) -> str:
    """The loaded kernel driver's version, without NVML ("" when no driver is loaded)."""
    try:
        return (sysroot / DRIVER_VERSION_FILE).read_text().strip()
    except OSError:
        return ""
