"""The parts of migrestore.systemd that need no systemd: ordering, parsing, sd_notify datagrams."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrestore.interfaces import Notifier, Units
from migrestore.systemd import (
    NullNotifier,
    SdNotifier,
    SystemdUnits,
    UnitStatus,
    dbus_message,
    parse_statuses,
    restart_order,
    start_problem,
    statuses_of,
    stop_problem,
    user_bus_requested,
)


def test_restart_order_reverses_stop_order() -> None:
    """Units come back in the reverse of the order they were stopped in."""
    assert restart_order(("kubelet.service", "dcgm-exporter.service", "nvidia-dcgm.service")) == (
        "nvidia-dcgm.service",
        "dcgm-exporter.service",
        "kubelet.service",
    )
    assert restart_order(()) == ()


def test_parse_statuses_decodes_pystemd_bytes() -> None:
    """ListUnits rows as pystemd returns them (bytes) become str statuses."""
    rows = [
        (b"nvsm.service", b"", b"loaded", b"active", b"running", b"", b"/o/1", 0, b"", b"/"),
        (b"nope.service", b"", b"not-found", b"inactive", b"dead", b"", b"/o/2", 7, b"stop", b"/j"),
    ]
    assert parse_statuses(rows) == {
        "nvsm.service": UnitStatus("nvsm.service", "loaded", "active", "", "running"),
        "nope.service": UnitStatus("nope.service", "not-found", "inactive", "stop", "dead"),
    }


def test_statuses_of_keeps_the_asked_units_and_fills_in_unloaded_ones() -> None:
    """Only the named units are kept; one the manager has not loaded is inactive with no job."""
    rows = [
        [b"nvsm.service", b"", b"loaded", b"active", b"running", b"", b"/o/1", 0, b"", b"/"],
        [b"ssh.service", b"", b"loaded", b"active", b"running", b"", b"/o/2", 0, b"", b"/"],
    ]
    assert statuses_of(rows, ("nvsm.service", "dcgm.service")) == {
        "nvsm.service": UnitStatus("nvsm.service", "loaded", "active", "", "running"),
        "dcgm.service": UnitStatus("dcgm.service", "not-loaded", "inactive", ""),
    }


@pytest.mark.parametrize(
    ("load", "active", "running"),
    [
        ("loaded", "active", True),
        ("loaded", "activating", True),
        ("loaded", "reloading", True),
        ("loaded", "deactivating", False),
        ("loaded", "inactive", False),
        ("loaded", "failed", False),
        ("not-found", "active", False),
        ("masked", "inactive", False),
    ],
)
def test_running(load: str, active: str, running: bool) -> None:
    """Running means loaded and active, activating or reloading."""
    assert UnitStatus("u.service", load, active, "").running is running


def test_stop_problem() -> None:
    """Waiting is pointless only when no stop job is left and the unit still runs."""
    assert stop_problem(UnitStatus("u.service", "loaded", "deactivating", "stop")) is None
    assert stop_problem(UnitStatus("u.service", "loaded", "inactive", "")) is None
    assert stop_problem(UnitStatus("u.service", "loaded", "failed", "")) is None
    assert stop_problem(UnitStatus("u.service", "loaded", "active", "")) == (
        "the stop job for u.service ended but the unit is active"
    )


@pytest.mark.parametrize(
    ("active", "sub", "ran", "problem"),
    [
        ("active", "running", False, None),
        ("activating", "start", False, None),
        ("inactive", "dead", True, None),  # a oneshot that ran and exited
        ("failed", "failed", True, "u.service failed to start (failed)"),
        ("failed", "", False, "u.service failed to start (failed)"),
        (
            "inactive",
            "dead",
            False,
            "u.service did not start (inactive: a dependency failed or a condition is unmet)",
        ),
        ("deactivating", "stop-sigterm", True, "u.service is deactivating after its start job"),
    ],
)
def test_start_problem(active: str, sub: str, ran: bool, problem: str | None) -> None:
    """Once its start job is gone a unit started unless it failed, never ran, or is going away."""
    assert start_problem(UnitStatus("u.service", "loaded", active, "", sub), ran) == problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("yes", True), (" TRUE ", True), ("0", False), ("", False), (None, False)],
)
def test_user_bus_requested(value: str | None, expected: bool) -> None:
    """MIGRESTORE_SYSTEMD_USER=1 selects the user manager's bus."""
    environ = {} if value is None else {"MIGRESTORE_SYSTEMD_USER": value}
    assert user_bus_requested(environ) is expected


def test_bus_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The constructor argument wins over the environment, which wins over the system bus."""
    monkeypatch.setenv("MIGRESTORE_SYSTEMD_USER", "1")
    assert SystemdUnits().user_mode
    assert not SystemdUnits(user_mode=False).user_mode
    monkeypatch.delenv("MIGRESTORE_SYSTEMD_USER")
    assert SystemdUnits().bus_name == "system bus"


@pytest.fixture(name="notify_socket")
def fixture_notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(2)
        yield listener


def test_sd_notifier_sends_datagrams(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATUS= (one line), EXTEND_TIMEOUT_USEC= in microseconds and READY=1 reach the socket."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    notifier = SdNotifier()
    assert notifier.enabled
    notifier.status("GPU 3/8 NVIDIA H100 80GB HBM3: creating 3g.40gb at 4\nsecond line")
    notifier.extend_timeout(90)
    notifier.ready()
    received = [notify_socket.recv(4096).decode() for _ in range(3)]
    assert received == [
        "STATUS=GPU 3/8 NVIDIA H100 80GB HBM3: creating 3g.40gb at 4 second line",
        "EXTEND_TIMEOUT_USEC=90000000",
        "READY=1",
    ]


def test_sd_notifier_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd (no NOTIFY_SOCKET) notifications are dropped without error."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SdNotifier()
    assert not notifier.enabled
    notifier.status("x")
    notifier.extend_timeout(1)
    notifier.ready()


def test_protocol_conformance() -> None:
    """The adapters satisfy the interfaces the core is written against (checked by mypy)."""
    units: Units = SystemdUnits(user_mode=True)
    notifiers: list[Notifier] = [SdNotifier(), NullNotifier()]
    assert units.active(()) == ()
    for notifier in notifiers:
        notifier.status("s")
        notifier.extend_timeout(1.5)
        notifier.ready()


class _PystemdError(Exception):
    """Stands in for pystemd's DBusBaseError: what its str() and attributes look like."""


@pytest.mark.parametrize(
    ("raw", "attributes", "expected"),
    [
        (
            "b'org.freedesktop.systemd1.UnitMasked'[err -22]: b'Unit x.service is masked.'\n"
            "This is DBusBaseError, a base error for DBus (i bet you did not see that coming)",
            {},
            "Unit x.service is masked. (org.freedesktop.systemd1.UnitMasked)",
        ),
        (
            "whatever pystemd prints",
            {"err_name": b"org.freedesktop.DBus.Error.AccessDenied", "err_message": b"Denied"},
            "Denied (org.freedesktop.DBus.Error.AccessDenied)",
        ),
        (
            "[err -2]: Could not open a bus",
            {"err_message": b"Could not open a bus"},
            "Could not open a bus",
        ),
    ],
)
def test_dbus_message_is_one_line_with_the_error_name(
    raw: str, attributes: dict[str, bytes], expected: str
) -> None:
    """pystemd's error becomes systemd's words and the D-Bus error name, on one line, no bytes."""
    error = _PystemdError(raw)
    for name, value in attributes.items():
        setattr(error, name, value)
    assert dbus_message(error) == expected


def test_dbus_message_of_an_error_pystemd_mapped_by_errno() -> None:
    """pystemd drops the name of errors it maps by errno: the errno's name stands in for it."""
    error = _PystemdError("[err -2]: b'Unit absent.service not found.'")
    error.err_message = b"Unit absent.service not found."  # type: ignore[attr-defined]
    error.errno = -2  # type: ignore[attr-defined]
    assert dbus_message(error) == "Unit absent.service not found. (ENOENT)"
