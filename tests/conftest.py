"""Shared fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from migrestore import events
from tests.guard import SystemBus, guarded, stand_in_system_bus


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts with logging unconfigured: no logger writes to a closed capture stream."""
    structlog.reset_defaults()
    events.setup("text", debug=False)
    yield
    structlog.reset_defaults()
    events.setup("text", debug=False)


@pytest.fixture(name="stand_in_system_bus", scope="session")
def fixture_stand_in_system_bus() -> Iterator[SystemBus]:
    """The system bus every test sees: a tripwire (tests/guard.py)."""
    with stand_in_system_bus() as bus:
        yield bus


@pytest.fixture(autouse=True)
def no_real_nvml_or_system_bus(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    stand_in_system_bus: SystemBus,
) -> Iterator[None]:
    """Fail a test that reaches the real NVML library or the host's system bus (tests/guard.py)."""
    yield from guarded(request, monkeypatch, stand_in_system_bus)


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks it finds
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that boot a private systemd manager run one after another on one worker when the
    fast tier runs in parallel (`./dev/test`, or `-n 2 --dist loadgroup`: pytest-xdist): they
    mostly wait, so the other worker runs the rest meanwhile, and they never compete."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("systemd") or {"manager", "booted"} & set(fixtures):
            item.add_marker(pytest.mark.xdist_group("systemd"))
