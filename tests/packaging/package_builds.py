"""The packages under test, built from this checkout by packaging/build-deb and build-rpm."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
BUILD_TIMEOUT = 900
TOOLS = (
    "mmdebstrap",
    "systemd-container",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-pip",
    "python3-setuptools",
    "python3-wheel",
    "rpm",
    "lintian",
    "rpmlint",
    "man-db",
    "zstd",
    "git",
)


@dataclass(frozen=True)
class Build:
    """One built package and what its build script said on stderr (its linter's verdict)."""

    path: Path
    log: str


def install_tools() -> None:
    """The Debian packages the package tier uses, installed when missing."""
    subprocess.run([str(PACKAGING / "apt-install-missing"), *TOOLS], check=True, timeout=900)


def start_build(script: str, out: Path, *args: str) -> subprocess.Popen[str]:
    """Start `packaging/<script> --out OUT ARGS...` (builds run side by side)."""
    command = [str(PACKAGING / script), "--out", str(out), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_build(process: subprocess.Popen[str]) -> Build:
    """Wait for a build; its last stdout line is the package's path."""
    stdout, stderr = process.communicate(timeout=BUILD_TIMEOUT)
    if process.returncode != 0:
        raise AssertionError(f"{process.args!r} failed ({process.returncode}):\n{stderr[-4000:]}")
    return Build(Path(stdout.strip().splitlines()[-1]), stderr)


def output(command: Sequence[str]) -> str:
    """A host command's stdout (it must succeed)."""
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


def deb_paths(deb: Path) -> set[str]:
    """Every path in the .deb's payload, absolute, directories without a trailing slash."""
    names = output(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -t', "sh", str(deb)])
    return {"/" + name.removeprefix("./").rstrip("/") for name in names.split() if name != "./"}


def deb_depends(deb: Path) -> list[str]:
    """The Debian packages the .deb depends on (names only; python3:any as python3)."""
    field = output(["dpkg-deb", "--field", str(deb), "Depends"])
    names = (item.split("|")[0].split()[0] for item in field.split(","))
    return sorted({name.removesuffix(":any") for name in names})


def rpm_paths(rpm: Path) -> set[str]:
    """Every path in the .rpm's payload."""
    return set(output(["rpm", "-qlp", str(rpm)]).split())


def maintainer_scripts(deb: Path) -> dict[str, str]:
    """The .deb's preinst/postinst/prerm/postrm, by name (absent ones left out)."""
    scripts = {}
    for name in ("preinst", "postinst", "prerm", "postrm"):
        done = subprocess.run(
            ["dpkg-deb", "--info", str(deb), name], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            scripts[name] = done.stdout
    return scripts
