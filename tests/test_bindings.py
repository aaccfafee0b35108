"""Pinned NVML bindings: the packaged pynvml wins over any other; runs say which one they used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pynvml

from migrestore import bindings, runs

from .simhost import ROOT, make_host

# What nvidia-ml-py3 7.352 (2017) looks like to migrestore: NVML calls, but none for MIG.
STUB = '''\
"""A stand-in for an old system-wide pynvml without MIG calls."""


class NVMLError(Exception):
    pass


def nvmlInit():
    raise NVMLError("stub pynvml: no MIG calls")
'''
LAYOUT = 'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "7g.80gb"\n'
LOAD = (
    "from migrestore import nvml; m = nvml.load_pynvml(); "
    "print(m.__file__, hasattr(m, 'nvmlDeviceCreateGpuInstanceWithPlacement'))"
)


def run(tmp_path: Path, vendor: Path, *args: str, stub: bool) -> str:
    """stdout of `python ARGS` with a vendor directory, and the stub first on the path or not."""
    path = [str(tmp_path / "stub")] if stub else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, str(ROOT)]),
        "MIGRESTORE_VENDOR_DIR": str(vendor),
    }
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return done.stdout


def vendor_and_stub(tmp_path: Path) -> Path:
    """A vendor directory with the real pynvml.py, and a stub pynvml.py in tmp_path/stub."""
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    shutil.copy(pynvml.__file__, vendor / "pynvml.py")
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "pynvml.py").write_text(STUB)
    return vendor


def test_stub_pynvml_on_the_path_changes_nothing(tmp_path: Path) -> None:
    """With a packaged copy installed, a stub pynvml first on the path changes no output."""
    vendor = vendor_and_stub(tmp_path)
    for args in (("-c", LOAD), ("-m", "migrestore", "--version")):
        assert run(tmp_path, vendor, *args, stub=True) == run(tmp_path, vendor, *args, stub=False)
    loaded = run(tmp_path, vendor, "-c", LOAD, stub=True)
    assert loaded == f"{vendor / 'pynvml.py'} True\n"


def test_version_names_the_packaged_bindings_and_driver(tmp_path: Path) -> None:
    """`--version` names the packaged pynvml's version and file, and the driver."""
    vendor = vendor_and_stub(tmp_path)
    lines = run(tmp_path, vendor, "-m", "migrestore", "--version", stub=True).splitlines()
    assert lines[0].startswith("migrestore ")
    assert lines[1] == f"NVML bindings: nvidia-ml-py 13.615.71 (packaged, {vendor / 'pynvml.py'})"
    assert lines[2].startswith("NVIDIA driver: ")


def test_without_a_packaged_copy_the_path_decides(tmp_path: Path) -> None:
    """Without a vendor directory (a pip install) the pynvml on the Python path is used."""
    vendor_and_stub(tmp_path)
    loaded = run(tmp_path, tmp_path / "none", "-c", LOAD, stub=True)
    assert loaded == f"{tmp_path / 'stub' / 'pynvml.py'} False\n"


def test_run_record_names_driver_and_bindings(tmp_path: Path) -> None:
    """The run record keeps the driver version and the pynvml file the run used."""
    host = make_host(tmp_path, ("NVIDIA H100 80GB HBM3", 1), layout=LAYOUT)
    assert host.run("apply").code == 0
    record = runs.last(Path(f"{host.state}.lib"))
    assert record is not None
    assert record.driver == "580.159.04"
    assert record.nvml_bindings.endswith(f"{pynvml.__file__})")


def test_doctor_names_the_bindings(tmp_path: Path) -> None:
    """doctor passes the bindings check and names the pynvml file."""
    host = make_host(tmp_path, ("NVIDIA H100 80GB HBM3", 1))
    line = next(x for x in host.run("doctor").out.splitlines() if " bindings " in x)
    assert line.startswith("PASS")
    assert pynvml.__file__ in line


def test_packaged_version_is_the_pin() -> None:
    """The version migrestore reports for the packaged copy is the one the packages pin."""
    pins = (ROOT / "packaging" / "vendor" / "requirements.txt").read_text()
    assert f"nvidia-ml-py=={bindings.PACKAGED_BINDINGS} " in pins
