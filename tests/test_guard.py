"""The tripwire (tests/guard.py) fails a test that reaches real NVML or the system bus."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from migrestore.errors import UnitError
from migrestore.systemd import SystemdUnits
from tests import guard


class _Node:
    """The part of a pytest item the guard reads: no markers."""

    def get_closest_marker(self, name: str) -> None:
        """No opt-out marker."""
        return


class _Request:
    node = _Node()


def _guarded_run(monkeypatch: pytest.MonkeyPatch, body: Callable[[], None]) -> None:
    """Run `body` the way the autouse fixture wraps a test (with a stand-in bus of its own)."""
    with guard.stand_in_system_bus() as bus:
        _run_with(monkeypatch, body, bus)


def _run_with(
    monkeypatch: pytest.MonkeyPatch, body: Callable[[], None], bus: guard.SystemBus
) -> None:
    steps = guard.guarded(_Request(), monkeypatch, bus)
    next(steps)
    body()
    next(steps, None)


def _system_units() -> None:
    with pytest.raises(UnitError):
        SystemdUnits(user_mode=False).active(("nvsm.service",))


def _real_nvml() -> None:
    import pynvml

    with pytest.raises(pynvml.NVMLError):
        pynvml.nvmlInit()


@pytest.mark.real_host
@pytest.mark.parametrize(
    ("body", "reached"),
    [(_system_units, "the system bus"), (_real_nvml, "the real NVML library")],
)
def test_the_guard_fails_a_test_that_reaches_the_host(
    monkeypatch: pytest.MonkeyPatch, body: Callable[[], None], reached: str
) -> None:
    """A connection to the system bus, or loading libnvidia-ml, fails the test by name."""
    with pytest.raises(pytest.fail.Exception, match=reached):
        _guarded_run(monkeypatch, body)


@pytest.mark.real_host
def test_the_guard_passes_a_test_that_stays_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that only computes leaves the tripwire untouched."""
    _guarded_run(monkeypatch, lambda: None)
