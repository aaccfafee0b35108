"""Shared fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from migrestore import events


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts with logging unconfigured: no logger writes to a closed capture stream."""
    structlog.reset_defaults()
    events.setup("text", debug=False)
    yield
    structlog.reset_defaults()
    events.setup("text", debug=False)
