"""Under the journal, events are native journal entries with a MESSAGE_ID per kind; where
journald does not take one, its `<N>` line goes to stderr as before (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from migrestore import journal, logs
from migrestore.messages import ERROR, MESSAGE_IDS

from .journald import Journald, decode
from .simhost import H100, ONE_INSTANCE_ON_H100, ROOT, make_host


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    """Leave structlog as it was found for the next test."""
    yield
    structlog.reset_defaults()


@pytest.fixture(name="journald")
def fixture_journald(tmp_path: Path) -> Iterator[Journald]:
    """A socket standing in for journald's."""
    server = Journald(tmp_path / "socket")
    yield server
    if server.path.exists():
        server.close()


@pytest.fixture(name="stderr")
def fixture_stderr(tmp_path: Path) -> Iterator[TextIO]:
    """A file standing in for the journal stream systemd hands a unit as stderr."""
    with (tmp_path / "stream").open("w+") as stream:
        yield stream


def under_journal(stream: TextIO, socket_path: Path) -> dict[str, str]:
    """The environment of a unit whose stderr is `stream`, journald's socket at `socket_path`."""
    status = os.fstat(stream.fileno())
    return {
        "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}",
        "MIGRESTORE_JOURNAL_SOCKET": str(socket_path),
    }


def written(stream: TextIO) -> list[str]:
    """The lines written to the stream so far."""
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_events_are_entries_with_their_message_id(journald: Journald, stderr: TextIO) -> None:
    """An event becomes one entry: MESSAGE as the stream line had it, PRIORITY, the kind's
    MESSAGE_ID, the identifier, and each key as a MIGRESTORE_ field; nothing on stderr."""
    logs.configure("text", stream=stderr, environ=under_journal(stderr, journald.path))
    structlog.get_logger().warning("step_failed", gpu="GPU-1", step="create 3g.40gb at 4")
    assert journald.entries() == [
        {
            "MESSAGE": 'step_failed gpu=GPU-1 step="create 3g.40gb at 4"',
            "PRIORITY": "4",
            "SYSLOG_IDENTIFIER": "migrestore",
            "MIGRESTORE_EVENT": "step_failed",
            "MIGRESTORE_GPU": "GPU-1",
            "MIGRESTORE_STEP": "create 3g.40gb at 4",
            "MESSAGE_ID": MESSAGE_IDS["step_failed"],
        }
    ]
    assert written(stderr) == []


def test_a_multi_line_entry_survives_the_protocol(journald: Journald, stderr: TextIO) -> None:
    """A traceback (newlines in MESSAGE) is sent in the length-prefixed form and arrives whole."""
    logs.configure("text", stream=stderr, environ=under_journal(stderr, journald.path))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("interrupted", signal="SIGTERM")
    (entry,) = journald.entries()
    assert entry["MESSAGE"].startswith("interrupted signal=SIGTERM\nTraceback")
    assert entry["MESSAGE"].endswith("RuntimeError: boom")
    assert (entry["PRIORITY"], entry["MESSAGE_ID"]) == ("3", MESSAGE_IDS["interrupted"])


def test_without_journald_the_lines_go_to_stderr(tmp_path: Path, stderr: TextIO) -> None:
    """No socket (no journald, a sandbox): the `<N>` lines on stderr, exactly as before."""
    logs.configure("text", stream=stderr, environ=under_journal(stderr, tmp_path / "none"))
    structlog.get_logger().info("planned", gpus=2)
    structlog.get_logger().error("step_failed", gpu="GPU-1")
    assert written(stderr) == ["<6>planned gpus=2", "<3>step_failed gpu=GPU-1"]


def test_an_entry_too_big_falls_back_alone(journald: Journald, stderr: TextIO) -> None:
    """An entry larger than a datagram goes to stderr; the next one is an entry again."""
    logs.configure("text", stream=stderr, environ=under_journal(stderr, journald.path))
    structlog.get_logger().info("refresh_failed", error="x" * 4_000_000)
    structlog.get_logger().info("planned", gpus=1)
    assert [e["MIGRESTORE_EVENT"] for e in journald.entries()] == ["planned"]
    assert [line.split(" ")[0] for line in written(stderr)] == ["<6>refresh_failed"]


def test_journald_going_away_falls_back(journald: Journald, stderr: TextIO) -> None:
    """journald gone mid-run: the entries so far were sent, the rest are stderr lines."""
    logs.configure("text", stream=stderr, environ=under_journal(stderr, journald.path))
    structlog.get_logger().info("planned", gpus=1)
    assert len(journald.entries()) == 1
    journald.close()
    structlog.get_logger().info("step_done", gpu="GPU-1")
    assert written(stderr) == ["<6>step_done gpu=GPU-1"]


def test_json_logs_stay_on_stderr(journald: Journald, stderr: TextIO) -> None:
    """--log-format json is what the operator asked for: JSON lines on stderr, no entries."""
    logs.configure("json", stream=stderr, environ=under_journal(stderr, journald.path))
    structlog.get_logger().info("planned", gpus=1)
    assert journald.entries() == []
    assert '"event": "planned"' in written(stderr)[0]


def test_the_error_line_is_an_entry_with_its_hint(journald: Journald, stderr: TextIO) -> None:
    """`migrestore: error:` is an entry with the error MESSAGE_ID and the hint as a field, and
    the hint its own entry at priority 5."""
    env = under_journal(stderr, journald.path)
    logs.report_error("no GPU", "load the driver", stream=stderr, environ=env)
    error, hint = journald.entries()
    assert (error["MESSAGE"], error["PRIORITY"]) == ("migrestore: error: no GPU", "3")
    assert (error["MESSAGE_ID"], error["MIGRESTORE_HINT"]) == (
        MESSAGE_IDS[ERROR],
        "load the driver",
    )
    assert (hint["MESSAGE"], hint["PRIORITY"]) == ("migrestore: hint: load the driver", "5")
    assert "MESSAGE_ID" not in hint
    assert "MIGRESTORE_EVENT" not in hint
    assert written(stderr) == []


def test_the_error_line_without_journald(tmp_path: Path, stderr: TextIO) -> None:
    """Without journald the error and hint are `<3>` and `<5>` lines on the journal stream, and
    plain lines elsewhere."""
    env = under_journal(stderr, tmp_path / "none")
    logs.report_error("no GPU", "load the driver", stream=stderr, environ=env)
    assert written(stderr) == [
        "<3>migrestore: error: no GPU",
        "<5>migrestore: hint: load the driver",
    ]


def test_a_whole_apply_under_the_journal(tmp_path: Path, journald: Journald) -> None:
    """`apply` as the unit runs it (stderr the journal stream): every event is an entry with a
    MESSAGE_ID, the summary among them, and stderr stays empty."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    with (tmp_path / "stream").open("w") as stream:
        env = {
            **os.environ,
            **under_journal(stream, journald.path),
            "PYTHONPATH": str(ROOT),
            "MIGRESTORE_CONFIG": str(host.config),
        }
        done = subprocess.run(
            [sys.executable, "-m", "migrestore", "--simulate", str(host.state), "apply"],
            stderr=stream,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, (tmp_path / "stream").read_text()
    entries = journald.entries()
    assert (tmp_path / "stream").read_text() == ""
    assert all(e["MESSAGE_ID"] == MESSAGE_IDS[e["MIGRESTORE_EVENT"]] for e in entries)
    (finished,) = [e for e in entries if e["MESSAGE_ID"] == MESSAGE_IDS["apply_finished"]]
    assert (finished["PRIORITY"], finished["MIGRESTORE_RESULT"]) == ("6", "ok")
    assert finished["MIGRESTORE_CHANGES"] == "3"


def test_encode_refuses_a_field_name_journald_would_drop() -> None:
    """Lower case, a leading underscore (journald's own fields), a leading digit: refused."""
    for name in ("message", "_PID", "1X", "A" * 65):
        with pytest.raises(ValueError, match="not a journal field name"):
            journal.encode({name: "x"})


def test_encode_round_trip() -> None:
    """Values with newlines, `=` and non-ASCII text come back as they went in."""
    fields = {"MESSAGE": "a=b\nc", "MIGRESTORE_GPU": "GPU-ü", "PRIORITY": "6"}
    assert decode(journal.encode(fields)) == fields


def test_log_keys_become_field_names() -> None:
    """snake_case keys become MIGRESTORE_ upper case; anything else becomes an underscore."""
    assert journal.field_name("mig_devices") == "MIGRESTORE_MIG_DEVICES"
    assert journal.field_name("gpu-id.x") == "MIGRESTORE_GPU_ID_X"
