"""A simulated GPU host booted by a private user manager: the shipped unit plus fake consumers.

The shipped `units/migrestore.service` is installed unchanged; one drop-in only points it at this
checkout and the simulated host (`ExecStart=`, `Environment=`), lets it write there
(`ReadWritePaths=`) and turns off `PrivateTmp=` because pytest's temporary directories are in
/tmp. Every other hardening option applies, so a test boot also proves the program runs under it.

Fake consumers (nvsm, nvidia-dcgm, kubelet, ...) run `consumer.py`: on start they run
`migrestore verify` against the simulated host, append a line to the events file (did they see
the restored layout?), then attach to every simulated GPU as a driver client; on stop they
detach. They are ordinary units with default dependencies and `WantedBy=multi-user.target`.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .usermanager import ROOT, UserManager

PYTHON = sys.executable
UNIT = ROOT / "units" / "migrestore.service"
RELOAD_UNIT = ROOT / "units" / "migrestore-reload.service"
GATE = ROOT / "units" / "gate-consumers.conf"
VERIFY_SERVICE = ROOT / "units" / "migrestore-verify.service"
VERIFY_TIMER = ROOT / "units" / "migrestore-verify.timer"

CONSUMER_SCRIPT = """\
# consumer.py start|stop NAME: a GPU consumer (driver client) on the simulated host.
# One interpreter runs the CLI several times (a Python start per call would triple boot times).
import contextlib
import io
import os
import sys
import time

from migrestore import cli

action, name = sys.argv[1:3]
state = os.environ["MIGRESTORE_SIMULATE"]


def run(*args):
    with contextlib.redirect_stdout(io.StringIO()):
        return cli.main(list(args))


def record(text):
    with open(os.environ["EVENTS"], "a") as events:
        events.write(f"{time.time():.6f} {text}\\n")


if action == "start":
    record(f"start {name} verify={run('verify')}")
    for gpu in os.environ["GPUS"].split():
        if run("simulate", "attach", state, "--gpu", gpu, "--client", name) != 0:
            sys.exit(1)
else:
    for gpu in os.environ["GPUS"].split():
        run("simulate", "detach", state, "--gpu", gpu, "--client", name)
    record(f"stop {name}")
"""

STAND_IN_MULTI_USER = """[Unit]
Description=Stand-in for the system manager's multi-user.target
[Install]
WantedBy=default.target
"""


@dataclass(frozen=True)
class Event:
    """One line of the events file: a consumer started (with its verify result) or stopped."""

    time: float
    action: str
    unit: str
    verify: int | None


# A stand-in for NVIDIA's nvidia-mig-manager (the other owner of MIG), enabled like the real one.
MIG_MANAGER = "nvidia-mig-manager.service"
MIG_MANAGER_UNIT = """[Unit]
Description=Stand-in for NVIDIA's nvidia-mig-manager
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


class BootRig:
    """A simulated host, its layout file, and a user manager with the units installed."""

    def __init__(self, manager: UserManager, base: Path) -> None:
        self.manager = manager
        self.base = base
        self.state = base / "host.json"
        self.config = base / "migrestore.toml"
        self.events = base / "events"
        self.consumers: list[str] = []
        for directory in ("state", "run"):
            (base / directory).mkdir(exist_ok=True)
        (base / "consumer.py").write_text(CONSUMER_SCRIPT)
        self.environment = {
            "MIGRESTORE_SIMULATE": str(self.state),
            "MIGRESTORE_CONFIG": str(self.config),
            "MIGRESTORE_STATE_DIR": str(base / "state"),
            "MIGRESTORE_RUN_DIR": str(base / "run"),
            "MIGRESTORE_SYSTEMD_USER": "1",
            "PYTHONPATH": str(ROOT),
        }

    def migrestore(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the CLI of this checkout against the simulated host (and the user manager's bus)."""
        env = {**self.manager.env, **self.environment}
        result = subprocess.run(
            [PYTHON, "-m", "migrestore", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"migrestore {' '.join(args)}: {result.returncode}\n{result}")
        return result

    def simulate(self, action: str, *args: str) -> None:
        """`migrestore simulate ACTION STATE ARGS`."""
        self.migrestore("simulate", action, str(self.state), *args)

    def layout(self, text: str) -> None:
        """Write the layout file (root-owned, 0644, as apply demands)."""
        self.config.write_text(text)
        self.config.chmod(0o644)

    def install_migrestore(self, extra: str = "", unit: Path = UNIT) -> None:
        """A shipped unit (the boot unit unless `unit` says otherwise), plus the drop-in that
        points it at this checkout and host."""
        self.manager.write_unit(unit.name, unit.read_text())
        environment = " ".join(f"{key}={value}" for key, value in self.environment.items())
        self.manager.write_drop_in(
            unit.name,
            "50-test.conf",
            "[Service]\nExecStart=\n"
            f"ExecStart={PYTHON} -m migrestore apply --boot\n"
            f"Environment={environment}\n"
            f"ReadWritePaths={self.base}\n"
            "PrivateTmp=no\n" + _checkout_visible() + _kernel_log_protectable() + extra,
        )
        self.manager.write_unit("multi-user.target", STAND_IN_MULTI_USER)

    def install_verify_timer(self, every: float) -> None:
        """The shipped drift check and its timer; a drop-in points the service at this checkout
        and host, as for migrestore.service, and makes the timer fire every `every` seconds."""
        self.manager.write_unit("migrestore-verify.service", VERIFY_SERVICE.read_text())
        self.manager.write_unit("migrestore-verify.timer", VERIFY_TIMER.read_text())
        environment = " ".join(f"{key}={value}" for key, value in self.environment.items())
        self.manager.write_drop_in(
            "migrestore-verify.service",
            "50-test.conf",
            # Checks every fraction of a second would hit the default start rate limit (5 in 10 s).
            "[Unit]\nStartLimitIntervalSec=0\n"
            "[Service]\nExecStart=\n"
            f"ExecStart={PYTHON} -m migrestore verify --skip-during-apply\n"
            f"Environment={environment}\n"
            f"ReadWritePaths={self.base}\n"
            "PrivateTmp=no\n" + _checkout_visible() + _kernel_log_protectable(),
        )
        # OnBootSec= counts from the machine's boot, long past: the first check comes `every`
        # seconds after the timer starts instead, then `every` seconds after each check began.
        # (One empty assignment resets every monotonic timer of the unit, OnUnitActiveSec= too.)
        self.manager.write_drop_in(
            "migrestore-verify.timer",
            "50-test.conf",
            f"[Timer]\nOnBootSec=\nOnActiveSec={every}s\nOnUnitActiveSec={every}s\n"
            "AccuracySec=10ms\n",
        )

    def install_reload_trigger(self) -> None:
        """The shipped migrestore-reload.service, with the same test drop-in as the boot unit."""
        self.install_migrestore(unit=RELOAD_UNIT)

    def install_consumer(self, name: str, gpus: str = "0", gated: bool = False) -> None:
        """A fake GPU consumer unit; `gated` installs the shipped gate-consumers.conf for it."""
        environment = {**self.environment, "EVENTS": str(self.events)}
        script = self.base / "consumer.py"
        start = f"ExecStartPre={PYTHON} {script} start {name}\n"
        self.manager.write_unit(
            name,
            f"[Unit]\nDescription=fake GPU consumer {name}\n"
            "[Service]\n"
            + "".join(f'Environment="{key}={value}"\n' for key, value in environment.items())
            + f'Environment="GPUS={gpus}"\n'
            + ("" if gated else start)
            + "ExecStart=/bin/sleep infinity\n"
            f"ExecStopPost={PYTHON} {script} stop {name}\n"
            "[Install]\nWantedBy=multi-user.target\n",
        )
        if gated:
            # The gate's check runs first (drop-ins apply in name order), as it would before a
            # real consumer's own start: a refused consumer records no start.
            gate = GATE.read_text().replace("/usr/bin/migrestore", f"{PYTHON} -m migrestore")
            self.manager.write_drop_in(name, "50-migrestore-gate.conf", gate)
            self.manager.write_drop_in(name, "60-consumer-start.conf", f"[Service]\n{start}")
        if name not in self.consumers:
            self.consumers.append(name)

    def enable(self, *units: str) -> None:
        """Enable units as a package/administrator would (plus the stand-in multi-user.target)."""
        self.manager.enable("multi-user.target", *units)

    def read_events(self) -> list[Event]:
        """The consumers' start/stop lines, in file order."""
        if not self.events.exists():
            return []
        events = []
        for line in self.events.read_text().splitlines():
            stamp, action, unit, *rest = line.split()
            verify = int(rest[0].removeprefix("verify=")) if rest else None
            events.append(Event(float(stamp), action, unit, verify))
        return events


def _checkout_visible() -> str:
    """A checkout under /root or /home (a clone in root's home) stays visible to the unit.

    The shipped unit has ProtectHome=yes, which hides those trees and with them this checkout's
    virtualenv: the unit would fail with status 203 (EXEC) before migrestore runs. Read-only is
    the nearest setting that still shows them; the packaged unit is tested unchanged in booted
    roots (tests/packaging).
    """
    hidden = (Path("/root"), Path("/home"), Path("/run/user"))
    if any(top == ROOT or top in ROOT.parents for top in hidden):
        return "ProtectHome=read-only\n"
    return ""


def _kernel_log_protectable() -> str:
    """Inside a container without /dev/kmsg, a user manager of systemd 257 cannot apply
    ProtectKernelLogs= (the unit fails with status 226, NAMESPACE); PID 1 there can, and the
    booted-root package tests run the packaged unit with it."""
    return "" if Path("/dev/kmsg").exists() else "ProtectKernelLogs=no\n"
