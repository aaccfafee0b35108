"""After a live relayout: restart the units that cache the list of MIG devices.

The Kubernetes device plugin and gpu-feature-discovery read the MIG devices once, at start, and
keep advertising stale ones until restarted (k8s-device-plugin #240, #992); the container toolkit's
CDI spec lists MIG devices too and is rewritten by its `nvidia-cdi-refresh.service` oneshot. So
after `apply` changed the layout of a running host, the configured `[restore] refresh-units` that
are running are restarted, and the CDI refresh oneshot (normally inactive: it has exited) is run
again if it exists, before any consumer starts. Never at the first boot restore: these units are
ordered after migrestore and start afterwards anyway. Restart is stop-then-start over
`interfaces.Units`; the start is awaited (a unit that fails to start again is named), except where
it waits for this run's own unit.
"""

from __future__ import annotations

from migrestore.consumers import ONESHOT_REFRESH_UNITS
from migrestore.errors import NoSuchUnit, UnitError
from migrestore.events import log
from migrestore.interfaces import Units


def refresh_consumers(
    units: Units, names: tuple[str, ...], *, rerun_oneshots: bool = True
) -> tuple[str, ...]:
    """Restart the running units of `names` and rerun the CDI refresh oneshot; returns the units
    restarted or rerun, in the given order.

    Every unit is tried; if any running unit could not be restarted, UnitError names it (and the
    ones that were restarted) after the others were done. A oneshot that does not exist (systemd
    has no such unit) is skipped; one that fails is named.
    """
    if not names:
        return ()
    running = set(units.active(names))
    done: list[str] = []
    failures: list[str] = []
    for name in names:
        if name in running:
            problem = _restart(units, name)
            (failures if problem else done).append(problem or name)
        elif rerun_oneshots and name in ONESHOT_REFRESH_UNITS:
            try:
                done += [name] if _run_oneshot(units, name) else []
            except UnitError as exc:
                failures.append(f"{name}: {exc}")
    if failures:
        restarted = f" (restarted: {', '.join(done)})" if done else ""
        raise UnitError(f"could not refresh GPU consumers: {'; '.join(failures)}{restarted}")
    if done:
        log.info("gpu_consumers_refreshed", units=",".join(done))
    return tuple(done)


def rerun_oneshots(units: Units, names: tuple[str, ...]) -> tuple[str, ...]:
    """Run the CDI refresh oneshots among `names` again (restarted if still active), each start
    awaited; returns those rerun. One that does not exist is skipped; one that fails raises
    UnitError naming it."""
    shots = tuple(name for name in names if name in ONESHOT_REFRESH_UNITS)
    if not shots:
        return ()
    running = set(units.active(shots))
    done: list[str] = []
    for name in shots:
        if name in running:
            problem = _restart(units, name)
            if problem:
                raise UnitError(f"could not rerun {problem}")
            done.append(name)
        elif _run_oneshot(units, name):
            done.append(name)
    if done:
        log.info("gpu_consumers_refreshed", units=",".join(done))
    return tuple(done)


def _restart(units: Units, name: str) -> str:
    """Stop and start one unit; the problem as text, or "" if it went through."""
    try:
        units.stop((name,))
        units.start((name,))
    except UnitError as exc:
        return f"{name}: {exc}"
    return ""


def _run_oneshot(units: Units, name: str) -> bool:
    """Start the oneshot, awaited; False if systemd has no such unit. One that exists and fails
    raises UnitError."""
    try:
        units.start((name,))
    except NoSuchUnit as exc:
        log.debug("refresh_unit_skipped", unit=name, reason=str(exc))
        return False
    return True
