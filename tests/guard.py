"""A tripwire for every test: reaching the real NVML library or the host's system bus fails it.

NVML: pynvml loads libnvidia-ml in one place, `_LoadNvmlLibrary`; the guard replaces it for the
test's duration with one that records the attempt and fails as a host without the driver does.
System bus: DBUS_SYSTEM_BUS_ADDRESS (which sd-bus, and so pystemd, honours) points at a stand-in
(tests/bus_tripwire.py, its own process: pystemd holds the GIL while sd-bus waits) that counts
every connection, from the test or any process it starts, and refuses it at once. A private
`systemd --user` manager (tests/systemd) probes the system bus as it starts; it finds the stand-in,
so those connections are not counted.
Tests that mean to touch the real host opt out with `@pytest.mark.real_host`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TRIPWIRE = Path(__file__).with_name("bus_tripwire.py")
PRIVATE_MANAGER = "systemd"  # the command name of `systemd --user`


@dataclass(frozen=True)
class SystemBus:
    """The stand-in system bus: its D-Bus address and the file counting its connections."""

    address: str
    log: Path

    def connections(self) -> int:
        """How many connections it has had so far, but a private systemd manager's."""
        if not self.log.exists():
            return 0
        clients = (line.split(maxsplit=1)[-1] for line in self.log.read_text().splitlines())
        return sum(1 for command in clients if command != PRIVATE_MANAGER)


@contextmanager
def stand_in_system_bus() -> Iterator[SystemBus]:
    """Run the stand-in for as long as the context lasts (one per test session)."""
    directory = Path(tempfile.mkdtemp(prefix="mr-bus-"))
    socket_path, log = directory / "bus", directory / "connections"
    process = subprocess.Popen(
        [sys.executable, str(TRIPWIRE), str(socket_path), str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "listening\n"
        yield SystemBus(f"unix:path={socket_path}", log)
    finally:
        process.kill()
        process.wait()
        for path in (socket_path, log):
            path.unlink(missing_ok=True)
        directory.rmdir()


def guarded(request: Any, monkeypatch: pytest.MonkeyPatch, system_bus: SystemBus) -> Iterator[None]:
    """The body of the autouse fixture (conftest.py)."""
    if request.node.get_closest_marker("real_host"):
        yield
        return
    reached: list[str] = []
    _guard_nvml(monkeypatch, reached)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus.address)
    before = system_bus.connections()
    yield
    if system_bus.connections() > before:
        reached.append("the system bus (D-Bus)")
    if reached:
        pytest.fail(
            f"this test reached {', '.join(sorted(set(reached)))}; "
            "use the simulator and a private systemd manager, or mark it real_host",
            pytrace=False,
        )


def _guard_nvml(monkeypatch: pytest.MonkeyPatch, reached: list[str]) -> None:
    """pynvml's library loader records the attempt and fails as without a driver."""
    import pynvml

    def refuse() -> None:
        reached.append("the real NVML library (libnvidia-ml)")
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "_LoadNvmlLibrary", refuse)
