"""What a run does besides its work: the garbage collector during start-up and at exit."""

from __future__ import annotations

import contextlib
import gc
import io
import sys

import pytest

from migrestore import cli


def _quietly(argv: list[str]) -> int:
    """`cli.main(argv)` with its output swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(argv)


@pytest.mark.parametrize("enabled", [True, False])
def test_main_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    """Start-up pauses garbage collection; a run or a usage error hands it back as it was."""
    before = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        assert _quietly(["simulate", "models"]) == 0
        assert gc.isenabled() is enabled
        assert _quietly(["--no-such-option", "status"]) == 2
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if before else gc.disable)()


def test_the_program_freezes_its_heap_before_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """`entry` (what the launchers call) returns main's status on the process's arguments and
    leaves every object frozen, so the interpreter's final collection has nothing to walk."""
    monkeypatch.setattr(sys, "argv", ["migrestore", "simulate", "models"])
    gc.unfreeze()
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert cli.entry() == 0
        assert gc.get_freeze_count() > 0
        assert "NVIDIA H200" in out.getvalue()
    finally:
        gc.unfreeze()
