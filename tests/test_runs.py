"""The run lock and the run records."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from migrestore import runs
from migrestore.errors import LockError


def record(devices: tuple[str, ...], result: str = "ok") -> runs.RunRecord:
    """A one-GPU record with these MIG devices."""
    gpu = runs.GpuRecord("GPU-a", 0, "NVIDIA H200", result, mig_devices=devices)
    return runs.RunRecord("2026-11-28T00:00:00+00:00", "/etc/x.toml", "ab", result, True, (gpu,))


def hold_lock(run_dir: str, ready: str, seconds: float) -> None:
    """Child process: take the lock, say so, keep it a while."""
    with runs.locked(Path(run_dir), 1.0):
        Path(ready).touch()
        time.sleep(seconds)


def test_second_run_waits_then_fails_clearly(tmp_path: Path) -> None:
    """While another process holds the lock, a run waits its bound and names the holder."""
    ready = tmp_path / "ready"
    child = multiprocessing.get_context("fork").Process(
        target=hold_lock, args=(str(tmp_path / "run"), str(ready), 3.0)
    )
    child.start()
    try:
        while not ready.exists():
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(LockError) as err, runs.locked(tmp_path / "run", 0.5):
            pass
        assert time.monotonic() - started >= 0.5
        assert f"pid {child.pid}" in str(err.value)
    finally:
        child.join()


def test_lock_is_free_after_a_run(tmp_path: Path) -> None:
    """A finished run leaves the lock free, and the lock file is root-only."""
    with runs.locked(tmp_path / "run", 0.1):
        pass
    with runs.locked(tmp_path / "run", 0.1):
        assert (tmp_path / "run" / "lock").stat().st_mode & 0o777 == 0o600


def test_record_round_trip_and_history(tmp_path: Path) -> None:
    """The last record reads back equal; the history keeps every run."""
    first, second = record(("MIG-1",)), record(("MIG-2",), "failed")
    runs.save(first, tmp_path)
    runs.save(second, tmp_path)
    assert runs.last(tmp_path) == second
    assert len((tmp_path / runs.HISTORY_NAME).read_text().splitlines()) == 2
    assert (tmp_path / runs.RECORD_NAME).stat().st_mode & 0o777 == 0o600


def test_changed_devices() -> None:
    """A GPU whose MIG device UUIDs differ from the previous run's is named."""
    assert runs.changed_devices(record(("MIG-1",)), record(("MIG-1",))) == ()
    assert runs.changed_devices(record(("MIG-1",)), record(("MIG-9",))) == ("GPU-a",)
    assert runs.changed_devices(None, record(("MIG-9",))) == ()


def test_unreadable_record_is_none(tmp_path: Path) -> None:
    """A damaged record file does not break status."""
    (tmp_path / runs.RECORD_NAME).write_text("{not json")
    assert runs.last(tmp_path) is None
