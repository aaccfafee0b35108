"""Persistence mode around a GPU reset (Ampere's mode change).

Persistence mode holds a GPU like a client, so `nvidia-smi -r` refuses to reset a GPU that has
it on (`nvidia-smi -pm 0` alone made a refused reset succeed, NVSentinel#1690), and on DGX hosts
nvidia-persistenced turns it on for every GPU. When a reset is refused, `lifted` turns it off for
the GPUs being reset that have it on, each alone (the other GPUs keep theirs, and
nvidia-persistenced keeps running), and afterwards, whatever happened, turns it on again on each
and reads it back. The GPUs are noted in the state directory before the first is turned off, so
that a run killed in between leaves the next run what to turn on again (`restore_left_off`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrestore import runs
from migrestore.errors import MigrestoreError
from migrestore.events import log
from migrestore.interfaces import Gpus


class Lift:
    """One lift: the GPUs whose persistence mode is off now, and why others could not be."""

    def __init__(self) -> None:
        self.off: list[str] = []
        self.refused: dict[str, str] = {}


@contextmanager
def lifted(
    gpus: Gpus, uuids: list[str], state_dir: Path | None, problems: dict[str, str]
) -> Iterator[Lift]:
    """Persistence mode off on those of `uuids` that have it on, for the block; then on again.

    What went wrong turning it on again, or reading it back, goes into `problems` by UUID.
    """
    lift = Lift()
    on = [uuid for uuid in uuids if _is_on(gpus, uuid, lift)]
    if on and state_dir is not None:
        _note(state_dir, tuple(on))
    try:
        for uuid in on:
            _turn_off(gpus, uuid, lift)
        yield lift
    finally:
        for uuid in lift.off:
            problem = turn_on_again(gpus, uuid)
            if problem:
                problems[uuid] = problem
        if on and state_dir is not None and not any(u in problems for u in on):
            runs.forget_persistence_off(state_dir)


def _note(state_dir: Path, uuids: tuple[str, ...]) -> None:
    """Note the GPUs for the run after a SIGKILL; a state directory that cannot take the note
    costs only that (the reset matters more), with a warning."""
    try:
        runs.remember_persistence_off(state_dir, uuids)
    except OSError as exc:
        log.warning("persistence_off_not_noted", state_dir=str(state_dir), error=str(exc))


def _is_on(gpus: Gpus, uuid: str, lift: Lift) -> bool:
    try:
        return gpus.persistence(uuid)
    except MigrestoreError as exc:
        lift.refused[uuid] = f"persistence mode unknown: {exc}"
        return False


def _turn_off(gpus: Gpus, uuid: str, lift: Lift) -> None:
    """Off for this GPU; interrupted (SIGTERM) during the call, it counts as off."""
    log.info("persistence_off_for_reset", gpu=uuid)
    try:
        gpus.set_persistence(uuid, False)
    except MigrestoreError as exc:
        log.error("persistence_not_turned_off", gpu=uuid, error=str(exc))
        lift.refused[uuid] = f"persistence mode could not be turned off: {exc}"
        return
    except BaseException:
        lift.off.append(uuid)
        raise
    lift.off.append(uuid)


def turn_on_again(gpus: Gpus, uuid: str) -> str:
    """Persistence mode on for this GPU, read back; the problem, or "" if it is on."""
    try:
        gpus.set_persistence(uuid, True)
        on = gpus.persistence(uuid)
    except MigrestoreError as exc:
        problem = f"persistence mode left off after the reset: {exc}"
    else:
        if on:
            log.info("persistence_on_again", gpu=uuid)
            return ""
        problem = "persistence mode still off after turning it on again"
    log.error("persistence_not_restored", gpu=uuid, error=problem)
    return problem


def restore_left_off(gpus: Gpus, state_dir: Path | None) -> dict[str, str]:
    """Turn persistence mode on again where a killed run left it off; the problems by UUID.
    Tried once: the note is dropped either way (a reboot turns it on anyway)."""
    if state_dir is None:
        return {}
    left = runs.left_persistence_off(state_dir)
    if not left:
        return {}
    log.warning("persistence_left_off", gpus=",".join(left))
    problems = {uuid: turn_on_again(gpus, uuid) for uuid in left}
    runs.forget_persistence_off(state_dir)
    return {uuid: problem for uuid, problem in problems.items() if problem}
