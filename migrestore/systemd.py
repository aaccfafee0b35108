"""systemd through pystemd: the driver-client units (D-Bus) and readiness/progress (sd_notify).

The only module that imports pystemd, lazily: `verify` and `status` never pay
for it. pystemd (0.7 on Debian 11 and Ubuntu 22.04, 0.11 on Debian 12, up to 0.15) speaks
bytes; names and states are str everywhere else. Only calls without container arguments are
made: pystemd 0.7 cannot send one on arm64 (its close-container check compares a plain `char`,
unsigned there, with -1), so unit states come from ListUnits rather than ListUnitsByNames.

`SystemdUnits` talks to the system manager, or to the calling user's manager when constructed
with `user_mode=True` or when MIGRESTORE_SYSTEMD_USER=1 (tests run a private `systemd --user`).
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from migrestore.errors import NoSuchUnit, UnitError
from migrestore.events import log
from migrestore.interfaces import UNIT_START_TIMEOUT, UNIT_STOP_TIMEOUT

SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
JOB = b"org.freedesktop.systemd1.Job"
UNIT = b"org.freedesktop.systemd1.Unit"
RUNNING_STATES = frozenset({"active", "activating", "reloading"})
STOPPED_STATES = frozenset({"inactive", "failed"})
POLL_INTERVAL = 0.05
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"


@dataclass(frozen=True)
class UnitStatus:
    """One unit as the manager reports it (ListUnits)."""

    name: str
    load_state: str
    active_state: str
    job_type: str  # "" when no job is queued for the unit
    sub_state: str = ""

    @property
    def running(self) -> bool:
        """Loaded and active, starting or reloading: a driver client that may hold a GPU."""
        return self.load_state == "loaded" and self.active_state in RUNNING_STATES

    @property
    def stopped(self) -> bool:
        """No longer running (a unit that failed while stopping has no process left either)."""
        return self.active_state in STOPPED_STATES


def restart_order(stopped: tuple[str, ...]) -> tuple[str, ...]:
    """Units are started again in the reverse of the order they were stopped in."""
    return tuple(reversed(stopped))


def user_bus_requested(environ: Mapping[str, str]) -> bool:
    """MIGRESTORE_SYSTEMD_USER=1 (or yes/true): talk to the user manager, not the system one."""
    return environ.get("MIGRESTORE_SYSTEMD_USER", "").strip().lower() in {"1", "yes", "true"}


def stop_problem(status: UnitStatus) -> str | None:
    """Why waiting for a stop is pointless: the stop job is gone and the unit still runs."""
    if status.stopped or status.job_type:
        return None
    return f"the stop job for {status.name} ended but the unit is {status.active_state}"


def parse_statuses(rows: Sequence[Sequence[Any]]) -> dict[str, UnitStatus]:
    """ListUnits rows (bytes, pystemd 0.7 to 0.15) -> statuses by unit name."""
    statuses = {}
    for row in rows:
        name, _description, load, active, sub, _following, _path, _job_id, job_type = (
            text(field) for field in row[:9]
        )
        statuses[name] = UnitStatus(name, load, active, job_type, sub)
    return statuses


def start_problem(status: UnitStatus, ran_since: bool) -> str | None:
    """Why a unit whose start job is gone did not start, if it did not. `ran_since`: it left the
    inactive state after the job was queued (a oneshot that ran and exited is inactive again)."""
    if status.running or (status.active_state == "inactive" and ran_since):
        return None
    if status.active_state == "failed":
        return f"{status.name} failed to start ({status.sub_state or 'failed'})"
    if status.active_state == "inactive":
        return (
            f"{status.name} did not start (inactive: a dependency failed or a condition is unmet)"
        )
    return f"{status.name} is {status.active_state} after its start job"


def statuses_of(rows: Sequence[Sequence[Any]], names: tuple[str, ...]) -> dict[str, UnitStatus]:
    """The status of each of `names`; one the manager has not loaded is inactive, with no job."""
    loaded = parse_statuses(rows)
    return {
        name: loaded.get(name, UnitStatus(name, "not-loaded", "inactive", "")) for name in names
    }


def dbus_message(exc: BaseException) -> str:
    """What systemd or the bus said, on one line, with the D-Bus error name and without pystemd's
    decoration: its DBusBaseError reads `b'org.freedesktop...'[err -22]: b'Operation refused, ...'`
    plus a second line about itself; newer ones carry `err_name` and `err_message`."""
    raw = str(exc).split("\nThis is DBusBaseError", 1)[0]
    message = text(getattr(exc, "err_message", b"") or b"")
    found = _RAW_DBUS_ERROR.match(raw)
    if found:
        message = message or found["message"]
    message = " ".join((message or raw).split())
    name = dbus_error_name(exc)
    return f"{message} ({name})" if name and name not in message else message


def dbus_error_name(exc: BaseException) -> str:
    """The D-Bus error name of pystemd's error (`org.freedesktop.systemd1.OnlyByDependency`).
    pystemd drops the name of errors it maps to a class of its own by errno (its
    DBusNoSuchUnitError is ENOENT): then the errno's name (`ENOENT`), else ""."""
    name = text(getattr(exc, "err_name", b"") or b"")
    found = _RAW_DBUS_ERROR.match(str(exc).split("\nThis is DBusBaseError", 1)[0])
    if name or found:
        return name or (found["name"] if found else "")
    number = getattr(exc, "errno", None)
    return errno.errorcode.get(-number, "") if isinstance(number, int) and number < 0 else ""


def no_such_unit(exc: BaseException) -> bool:
    """systemd has no such unit: the D-Bus name, or pystemd's class for it."""
    return dbus_error_name(exc) == NO_SUCH_UNIT or type(exc).__name__ == "DBusNoSuchUnitError"


# pystemd's str() of a DBusBaseError: `b'NAME'[err -22]: b'MESSAGE'` (bytes reprs, or plain).
_RAW_DBUS_ERROR = re.compile(
    r"^b?'(?P<name>[A-Za-z_][\w.]*)'\s*\[err -?\d+\]:\s*b?'(?P<message>.*)'\s*$", re.DOTALL
)


def text(value: Any) -> str:
    """pystemd returns bytes for D-Bus strings and object paths."""
    return value.decode() if isinstance(value, bytes) else str(value)


class SystemdUnits:
    """interfaces.Units over D-Bus: which driver clients run, stop them, start them again."""

    def __init__(
        self,
        user_mode: bool | None = None,
        stop_timeout: float = UNIT_STOP_TIMEOUT,
        start_timeout: float = UNIT_START_TIMEOUT,
    ) -> None:
        self.user_mode = user_bus_requested(os.environ) if user_mode is None else user_mode
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout

    @property
    def bus_name(self) -> str:
        """Which bus we talk to, for messages."""
        return "user bus" if self.user_mode else "system bus"

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The subset of `names` that is running now, in the given order (unknown units are not)."""
        if not names:
            return ()
        with self._bus() as bus:
            statuses = self._statuses(bus, names)
        return tuple(name for name in names if name in statuses and statuses[name].running)

    def stop(self, names: tuple[str, ...]) -> None:
        """Queue stop jobs for all, then wait (bounded) until every one is inactive or failed."""
        if not names:
            return
        with self._bus() as bus:
            for name in names:
                self._queue_job(bus, "stop", name)
            self._wait_stopped(bus, names)

    def start(self, names: tuple[str, ...]) -> None:
        """Queue start jobs in the given order, wait (bounded) until each has finished, and raise
        one UnitError naming every unit that did not start: refused, failed, inactive after its
        job, or still starting at the timeout. Every unit is tried.

        A job that waits, directly or through other jobs, for the start job of the unit this
        process runs in is not waited for: it can only run once we are done (`systemctl restart
        migrestore` starting a unit ordered after migrestore.service). It is logged instead.
        """
        if not names:
            return
        failures = []
        missing = 0
        with self._bus() as bus:
            queued_at = time.monotonic()
            jobs = {}
            for name in names:
                self._pin(bus, name)
                try:
                    jobs[name] = text(self._queue_job(bus, "start", name))
                except UnitError as exc:
                    failures.append(str(exc))
                    missing += isinstance(exc, NoSuchUnit)
            behind_us = self._waiting_for_us(bus, set(jobs.values()))
            for name in (n for n, job in jobs.items() if job in behind_us):
                log.info("start_not_awaited", unit=name, reason="ordered after this run's unit")
            awaited = {n: job for n, job in jobs.items() if job not in behind_us}
            failures += self._wait_started(bus, awaited, queued_at)
        if failures and missing == len(failures):
            raise NoSuchUnit("; ".join(failures))
        if failures:
            raise UnitError("; ".join(failures))

    def _wait_started(self, bus: Any, jobs: dict[str, str], queued_at: float) -> list[str]:
        """Poll until each unit's start job is gone; what went wrong, per unit."""
        deadline = time.monotonic() + self.start_timeout
        pending = dict(jobs)
        failures = []
        while pending:
            live = {text(row[4]) for row in self._call(bus, "list jobs", b"ListJobs", b"", [])}
            done = tuple(name for name, job in pending.items() if job not in live)
            statuses = self._statuses(bus, done) if done else {}
            for name in done:
                del pending[name]
                ran = self._left_inactive_since(bus, name, queued_at)
                problem = start_problem(statuses[name], ran)
                if problem:
                    failures.append(problem)
                else:
                    log.debug("unit_started", unit=name, state=statuses[name].active_state)
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                failures.append(f"still starting after {self.start_timeout:g}s: {names}")
                break
            if pending:
                time.sleep(POLL_INTERVAL)
        return failures

    def _pin(self, bus: Any, name: str) -> None:
        """Keep the unit loaded while this connection lives (RefUnit), so that a oneshot that ran
        and exited still shows when it ran instead of being unloaded at once."""
        try:
            self._call(bus, f"pin {name}", b"RefUnit", b"s", [name.encode()])
        except UnitError as exc:
            log.debug("unit_not_pinned", unit=name, error=str(exc))

    def _left_inactive_since(self, bus: Any, name: str, since: float) -> bool:
        """Whether the unit left the inactive state after `since` (time.monotonic(), the clock
        systemd's monotonic timestamps use)."""
        try:
            path = self._call(bus, f"find {name}", b"GetUnit", b"s", [name.encode()])
            left = bus.get_property(SYSTEMD, path, UNIT, b"InactiveExitTimestampMonotonic", b"t")
        except (UnitError, self._dbus_error()):
            return False
        return bool(int(left) > since * 1_000_000)

    def _waiting_for_us(self, bus: Any, jobs: set[str]) -> set[str]:
        """Those of `jobs` that wait, directly or not, for a job of the unit we run in."""
        if not jobs:
            return set()
        try:
            ours = text(self._call(bus, "find our unit", b"GetUnitByPID", b"u", [os.getpid()]))
        except UnitError:
            return set()  # not in a unit of this manager
        listed = self._call(bus, "list jobs", b"ListJobs", b"", [])
        frontier = [text(row[4]) for row in listed if text(row[5]) == ours]
        behind: set[str] = set()
        while frontier:
            job = frontier.pop()
            try:
                after = self._call(
                    bus, "list waiting jobs", b"GetAfter", b"", [], job.encode(), JOB
                )
            except UnitError:
                continue  # the job finished meanwhile
            for row in after:
                waiting = text(row[4])
                if waiting not in behind:
                    behind.add(waiting)
                    frontier.append(waiting)
        return behind & jobs

    def _wait_stopped(self, bus: Any, names: tuple[str, ...]) -> None:
        deadline = time.monotonic() + self.stop_timeout
        pending = names
        while True:
            statuses = self._statuses(bus, pending)
            for name in pending:
                problem = stop_problem(statuses[name])
                if problem:
                    raise UnitError(f"cannot stop {name}: {problem}")
            for name in pending:
                if statuses[name].stopped:
                    log.debug("unit_stopped", unit=name, state=statuses[name].active_state)
            pending = tuple(name for name in pending if not statuses[name].stopped)
            if not pending:
                return
            if time.monotonic() > deadline:
                states = ", ".join(f"{n} {statuses[n].active_state}" for n in pending)
                raise UnitError(f"units did not stop within {self.stop_timeout:g}s: {states}")
            time.sleep(POLL_INTERVAL)

    def _queue_job(self, bus: Any, verb: str, name: str) -> Any:
        """Queue a stop or start job; its object path."""
        method = b"StopUnit" if verb == "stop" else b"StartUnit"
        return self._call(bus, f"{verb} {name}", method, b"ss", [name.encode(), b"replace"])

    def _statuses(self, bus: Any, names: tuple[str, ...]) -> dict[str, UnitStatus]:
        rows = self._call(bus, "list units", b"ListUnits", b"", [])
        return statuses_of(rows, names)

    def _call(
        self,
        bus: Any,
        what: str,
        method: bytes,
        signature: bytes,
        args: list[Any],
        path: bytes = MANAGER_PATH,
        interface: bytes = MANAGER,
    ) -> Any:
        from pystemd.dbuslib import apply_signature

        try:
            reply = bus.call_method(
                SYSTEMD, path, interface, method, apply_signature(signature, args)
            )
        except self._dbus_error() as exc:
            problem = f"systemd refused to {what} on the {self.bus_name}: {dbus_message(exc)}"
            if no_such_unit(exc):
                raise NoSuchUnit(problem) from exc
            raise UnitError(problem) from exc
        return reply.body

    @staticmethod
    def _dbus_error() -> type[Exception]:
        from pystemd.dbusexc import DBusBaseError

        error: type[Exception] = DBusBaseError
        return error

    @contextmanager
    def _bus(self) -> Iterator[Any]:
        try:
            from pystemd.dbusexc import DBusBaseError
            from pystemd.dbuslib import DBus
        except ImportError as exc:
            raise UnitError(
                f"cannot reach systemd: pystemd cannot be imported ({exc})",
                hint="install python3-pystemd",
            ) from exc

        bus = DBus(user_mode=self.user_mode)
        try:
            bus.open()
        except DBusBaseError as exc:
            raise UnitError(
                f"cannot reach systemd on the {self.bus_name} (D-Bus unavailable): "
                f"{dbus_message(exc)}",
                hint="is dbus running? units that hold the GPUs cannot be stopped without it",
            ) from exc
        try:
            yield bus
        finally:
            bus.close()


class SdNotifier:
    """interfaces.Notifier over sd_notify(3); does nothing when NOTIFY_SOCKET is unset.

    pystemd.daemon.notify calls libsystemd's sd_notify (pystemd 0.7 and later have it), so
    readiness needs no library beyond the one the D-Bus side already uses.
    """

    def __init__(self) -> None:
        self._notify: Any = None
        if os.environ.get("NOTIFY_SOCKET"):  # sd_notify reads it from the environment itself
            from pystemd.daemon import notify

            self._notify = notify

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._notify is not None

    def status(self, text: str) -> None:
        """`STATUS=` (one line: newlines become spaces)."""
        self._send("STATUS=" + " ".join(text.split("\n")))

    def extend_timeout(self, seconds: float) -> None:
        """`EXTEND_TIMEOUT_USEC=`: the next step may take this long."""
        self._send(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")

    def ready(self) -> None:
        """`READY=1`."""
        self._send("READY=1")

    def _send(self, message: str) -> None:
        if self._notify is not None:
            log.debug("sd_notify", message=message)
            self._notify(False, message)  # False: keep NOTIFY_SOCKET for the next message


class NullNotifier:
    """interfaces.Notifier that drops everything (by-hand runs, tests)."""

    def status(self, text: str) -> None:
        """Nothing."""

    def extend_timeout(self, seconds: float) -> None:
        """Nothing."""

    def ready(self) -> None:
        """Nothing."""
