"""A private `systemd --user` manager with its own bus and journal, for real-systemd tests.

`dev/user-manager` runs it in a private mount namespace (see that script); this class lays out
the XDG directories, writes units, boots the manager, talks to it with systemctl and reads its
journal. Nothing outside the temporary directory is touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "dev" / "user-manager"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


class ManagerError(AssertionError):
    """The test manager did not do what the test needed (a test failure, not a product error)."""


class UserManager:
    """One private user manager; `boot()` starts it (a simulated boot), `shutdown()` stops it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runtime_dir = base / "runtime"
        self.unit_dir = base / "config" / "systemd" / "user"
        self.journal_dir = base / "journal"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        for path in (base / "config", base / "data", base / "state", self.unit_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_DATA_HOME": str(base / "data"),
            "XDG_STATE_HOME": str(base / "state"),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime_dir}/bus",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
        }

    def write_unit(self, name: str, text: str) -> Path:
        """Install a unit file (before or after boot; call `reload()` after boot)."""
        path = self.unit_dir / name
        path.write_text(text)
        return path

    def write_drop_in(self, unit: str, name: str, text: str) -> Path:
        """Install a drop-in `<unit>.d/<name>`."""
        directory = self.unit_dir / f"{unit}.d"
        directory.mkdir(exist_ok=True)
        path = directory / name
        path.write_text(text)
        return path

    def boot(self) -> float:
        """Start the manager: enabled units start as at boot. Returns seconds until it answers."""
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [str(LAUNCHER), str(self.base)],
            env=self.env,
            stdout=(self.base / "manager.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for socket in (self.runtime_dir / "systemd" / "private", self.runtime_dir / "bus"):
            wait_until(socket.is_socket, START_TIMEOUT)
        return time.monotonic() - self.started_at

    def shutdown(self) -> None:
        """Stop the manager (it stops its units first) and its journald; kill leftovers."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`systemctl --user ARGS` against this manager."""
        return self.run("systemctl", "--user", *args, check=check)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command with this manager's environment (bus, runtime dir)."""
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ManagerError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
        return result

    def enable(self, *units: str) -> None:
        """`systemctl --user enable`, done client-side (it only writes symlinks).

        Client-side because before boot() no manager answers, and on a host whose PID 1 is
        systemd, systemctl would otherwise ask the caller's real user bus, which root has not.
        """
        result = subprocess.run(
            ["systemctl", "--user", "enable", *units],
            env={**self.env, "SYSTEMCTL_INSTALL_CLIENT_SIDE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ManagerError(
                f"systemctl --user enable exited {result.returncode}: {result.stderr}"
            )

    def reload(self) -> None:
        """`systemctl --user daemon-reload`."""
        self.systemctl("daemon-reload")

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl --user show -p ...` as a dict."""
        output = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def state(self, unit: str) -> str:
        """The unit's ActiveState."""
        return self.show(unit, "ActiveState")["ActiveState"]

    def wait_settled(self, *units: str, timeout: float = 30.0) -> None:
        """Wait until no job is queued for these units (started, failed, or skipped)."""
        wait_until(lambda: all(self.show(u, "Job")["Job"] in ("", "0") for u in units), timeout)

    def monotonic(self, unit: str, prop: str) -> float:
        """A unit's *TimestampMonotonic property, in seconds since this manager was started."""
        microseconds = int(self.show(unit, prop)[prop])
        if microseconds == 0:
            raise ManagerError(f"{unit} has no {prop}")
        return microseconds / 1_000_000 - self.started_at

    def journal(self, unit: str) -> list[Mapping[str, str]]:
        """The journal entries of a unit (its stdout/stderr lines), oldest first.

        A line belongs to the unit when journald filed it under the unit, or when it carries the
        unit's SyslogIdentifier= (if it sets one). journald files a line under the unit it finds
        from the sender's cgroup, and falls back to the unit named by the stream only in the root
        cgroup: run inside a service of a booted host, every line would be filed under that
        service, while the identifier travels with each line.
        """
        identifier = self.show(unit, "SyslogIdentifier").get("SyslogIdentifier", "")
        output = self.run("journalctl", "-D", str(self.journal_dir), "-o", "json").stdout
        entries = [json.loads(line) for line in output.splitlines()]
        return [e for e in entries if _filed_under(e, unit) or _sent_as(e, identifier)]

    def journal_messages(self, unit: str) -> list[tuple[int, str]]:
        """(priority, message) of a unit's journal lines."""
        return [(int(e["PRIORITY"]), str(e["MESSAGE"])) for e in self.journal(unit)]


def _filed_under(entry: Mapping[str, str], unit: str) -> bool:
    """journald (or the manager, about the unit) names `unit` in one of its unit fields."""
    fields = ("_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "UNIT", "USER_UNIT")
    return any(entry.get(field) == unit for field in fields)


def _sent_as(entry: Mapping[str, str], identifier: str) -> bool:
    """A line the unit's process sent under the unit's own SyslogIdentifier=."""
    return bool(identifier) and entry.get("SYSLOG_IDENTIFIER") == identifier and "MESSAGE" in entry


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ManagerError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)
