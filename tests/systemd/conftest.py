"""Fixtures: a private user manager per test, and this process pointed at its bus."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .usermanager import UserManager


def missing_requirements() -> str:
    """Why a private user manager cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces)"
    for tool in ("unshare", "systemctl", "journalctl"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd installed"
    return ""


@pytest.fixture(name="manager")
def fixture_manager(tmp_path: Path) -> Iterator[UserManager]:
    """A fresh, not yet booted user manager; stopped after the test."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    manager = UserManager(tmp_path / "manager")
    try:
        yield manager
    finally:
        manager.shutdown()


@pytest.fixture(name="booted")
def fixture_booted(manager: UserManager, monkeypatch: pytest.MonkeyPatch) -> UserManager:
    """A running user manager, and this process's user bus pointed at it (for pystemd)."""
    manager.boot()
    for name in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(name, manager.env[name])
    return manager
