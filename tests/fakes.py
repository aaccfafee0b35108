"""Shared fakes for the adapters the core talks to: systemd units and a /proc tree.

NVML is never faked: tests use the simulator (migrestore.simulator), which runs the same adapter
code (migrestore.nvml) the real bindings do. D-Bus is never faked either where systemd's behaviour
matters: tests/systemd runs a real manager. These fakes stand in for `interfaces.Units` only where
a test is about migrestore's decisions, not systemd's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from migrestore.errors import NoSuchUnit, UnitError


class FakeUnits:
    """`interfaces.Units` in memory: unit states by name, every stop and start recorded.

    A unit absent from the states does not exist: starting it is refused as systemd refuses it
    (NoSuchUnit).
    `refuse_stop` / `refuse_start` name units systemd will not stop / start; `reachable=False` is
    systemd out of reach; `read_only=True` fails the test on any stop or start (doctor, verify).
    """

    def __init__(
        self,
        states: Mapping[str, str] | None = None,
        *,
        running: Iterable[str] = (),
        refuse_stop: Iterable[str] = (),
        refuse_start: Iterable[str] = (),
        reachable: bool = True,
        read_only: bool = False,
    ) -> None:
        self.states = {**dict.fromkeys(running, "active"), **(states or {})}
        self.refuse_stop = frozenset(refuse_stop)
        self.refuse_start = frozenset(refuse_start)
        self.reachable = reachable
        self.read_only = read_only
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.queries: list[tuple[str, ...]] = []

    @property
    def running(self) -> set[str]:
        """The units active now."""
        return {name for name, state in self.states.items() if state == "active"}

    def active(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The running units of `names`, in the given order."""
        if not self.reachable:
            raise UnitError("cannot reach systemd on the system bus (D-Bus unavailable)")
        self.queries.append(names)
        return tuple(n for n in names if self.states.get(n) == "active")

    def stop(self, names: tuple[str, ...]) -> None:
        """Stop them in order; the first refused one raises."""
        self._change("stop", names)
        for name in names:
            if name in self.refuse_stop:
                raise UnitError(f"systemd refused to stop {name}")
            self.states[name] = "inactive"

    def start(self, names: tuple[str, ...]) -> None:
        """Start them in order; a refused or absent one raises."""
        self._change("start", names)
        for name in names:
            if name not in self.states:
                raise NoSuchUnit(f"systemd refused to start {name}: Unit {name} not found.")
            if name in self.refuse_start:
                raise UnitError(f"systemd refused to start {name}")
            self.states[name] = "active"

    def _change(self, verb: str, names: tuple[str, ...]) -> None:
        if self.read_only:
            raise AssertionError(f"a read-only verb must not {verb} {names}")
        self.calls.append((verb, names))


def fake_process(
    sysroot: Path,
    pid: int,
    comm: str | None,
    targets: Iterable[str] = (),
    cmdline: bytes = b"",
    environ: dict[str, str] | None = None,
) -> None:
    """/proc/PID below `sysroot` as the kernel shows it: comm (unless None), cmdline, fd links,
    and environ (unless None: hidden, as from a user who is not root)."""
    pid_dir = sysroot / "proc" / str(pid)
    (pid_dir / "fd").mkdir(parents=True)
    if comm is not None:
        (pid_dir / "comm").write_text(comm + "\n")
    (pid_dir / "cmdline").write_bytes(cmdline)
    if environ is not None:
        (pid_dir / "environ").write_bytes(
            b"".join(f"{k}={v}\0".encode() for k, v in environ.items())
        )
    for number, target in enumerate(targets):
        (pid_dir / "fd" / str(number)).symlink_to(target)
