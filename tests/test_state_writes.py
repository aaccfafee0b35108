"""Writes under the state directory are atomic; failing them never fails a restore (issue 11)."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from migrestore import runs
from tests.simhost import H100, ONE_INSTANCE_ON_H100, Host, make_host

LAYOUT = ONE_INSTANCE_ON_H100


def record(note: str = "") -> runs.RunRecord:
    """A one-GPU record, optionally with a (long) note."""
    gpu = runs.GpuRecord("GPU-a", 0, H100, "ok", mig_devices=("MIG-1",))
    notes = (note,) if note else ()
    return runs.RunRecord(
        "2026-11-28T00:00:00+00:00", "/x.toml", "ab", "ok", True, (gpu,), notes=notes
    )


def test_history_is_replaced_by_rename(tmp_path: Path) -> None:
    """Each save puts a new history file in place (new inode), leaves no temporary file behind."""
    runs.save(record(), tmp_path)
    history = tmp_path / runs.HISTORY_NAME
    first = history.stat().st_ino
    runs.save(record(), tmp_path)
    assert history.stat().st_ino != first
    assert len(history.read_text().splitlines()) == 2
    assert history.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [runs.RECORD_NAME, runs.HISTORY_NAME]


def save_with_file_size_limit(state_dir: str, limit: int, note: str) -> None:
    """Child process: save a record while files may grow to `limit` bytes only (a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        runs.save(record(note), Path(state_dir))
    except OSError:
        os._exit(3)
    os._exit(0)


def test_a_failed_history_write_keeps_the_old_history_whole(tmp_path: Path) -> None:
    """A write that fails half way (the disk fills) leaves the previous history as it was."""
    for _ in range(5):
        runs.save(record(), tmp_path)
    history = tmp_path / runs.HISTORY_NAME
    before = history.read_text()
    note = "n" * 2000
    limit = len(json.dumps(asdict(record(note)), indent=1)) + 100  # last-run.json fits
    assert limit < len(before) + limit - 100  # the new history does not
    child = multiprocessing.get_context("fork").Process(
        target=save_with_file_size_limit, args=(str(tmp_path), limit, note)
    )
    child.start()
    child.join()
    assert child.exitcode == 3
    assert history.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(name="notify_socket")
def fixture_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket, named by NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        yield listener


def received(listener: socket.socket) -> list[str]:
    """Every notification sent so far."""
    messages = []
    while True:
        try:
            messages.append(listener.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_record_that_cannot_be_written_is_a_warning(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """apply --boot restores, exits 0 and sends READY=1 although the state directory is unusable."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    not_a_directory = tmp_path / "state"
    not_a_directory.write_text("a file where the state directory should be\n")
    result = host.run("--state-dir", str(not_a_directory), "apply", "--boot")
    assert result.code == 0, result
    assert "run_record_not_saved" in result.err
    assert "READY=1" in received(notify_socket)
    assert host.run("verify").code == 0


def test_a_file_as_the_run_directory_is_a_usage_error(tmp_path: Path) -> None:
    """--run-dir naming a file is one line and exit 2, not an internal error."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    not_a_directory = tmp_path / "run"
    not_a_directory.write_text("")
    result = host.run("--run-dir", str(not_a_directory), "apply")
    assert result.code == 2, result
    assert (
        result.err
        == f"migrestore: error: {not_a_directory}: cannot keep the lock here: File exists\n"
    )


def test_a_directory_as_the_simulated_host_is_a_usage_error(tmp_path: Path) -> None:
    """--simulate naming a directory is one line and exit 2, not an internal error."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    result = Host(tmp_path, host.config).run("status")
    assert result.code == 2, result
    assert result.err.startswith(f"migrestore: error: {tmp_path}: no simulated host here (")
    assert result.err.count("\n") == 1
