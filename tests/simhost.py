"""Test helpers: simulated hosts and the migrestore command line run in-process or as a process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from migrestore import cli, simulator

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    """What one migrestore run printed and returned."""

    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Host:
    """A simulated host and a layout file next to it."""

    state: Path
    config: Path

    def write_layout(self, text: str) -> None:
        """Replace the layout file."""
        self.config.write_text(text)

    def run(self, *args: str) -> Result:
        """`migrestore --simulate STATE --config CONFIG ARGS...` in this process."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--simulate", str(self.state), "--config", str(self.config), *args])
        return Result(code, out.getvalue(), err.getvalue())

    def run_offline(self, *args: str) -> Result:
        """`migrestore --config CONFIG ARGS...` in this process, without the simulated host (as
        on a host with no driver: `check` then checks offline)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--config", str(self.config), *args])
        return Result(code, out.getvalue(), err.getvalue())

    def spawn(self, *args: str) -> Result:
        """The same as a separate process (for runs that may be killed)."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "migrestore",
                "--simulate",
                str(self.state),
                "--config",
                str(self.config),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def counters(self) -> dict[str, int]:
        """Simulated NVML calls so far."""
        return simulator.counters(self.state)


H100 = "NVIDIA H100 80GB HBM3"
# One 3g.40gb instance at placement 4 on every H100: the smallest layout that changes a GPU.
ONE_INSTANCE_ON_H100 = f"""version = 1
[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "3g.40gb"
placement = 4
"""

MUTATING = (
    "nvmlDeviceSetMigMode",
    "nvmlDeviceCreateGpuInstanceWithPlacement",
    "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
    "nvmlComputeInstanceDestroy",
    "nvmlGpuInstanceDestroy",
)


def mutations(counters: dict[str, int]) -> int:
    """How many mutating NVML calls these counters hold."""
    return sum(counters.get(name, 0) for name in MUTATING)


def make_host(
    directory: Path,
    *gpus: tuple[str, int],
    layout: str = "version = 1\n",
    driver: str = simulator.DEFAULT_DRIVER,
    nvswitches: int = 0,
) -> Host:
    """A new simulated host with these (model, count) GPUs, driver and a layout file (with
    `nvswitches`, an HGX baseboard, Fabric Manager active)."""
    host = Host(directory / "host.json", directory / "layout.toml")
    simulator.init_host(host.state, list(gpus), driver=driver, nvswitches=nvswitches)
    host.write_layout(layout)
    return host
