"""logs.configure: console, journal and JSON renderings, levels, and stderr only."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from migrestore import logs


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    """Leave structlog as it was found for the next test."""
    yield
    structlog.reset_defaults()


@pytest.fixture(name="journal_file")
def fixture_journal_file(tmp_path: Path) -> Iterator[TextIO]:
    """A real file standing in for the journal stream systemd would hand us."""
    with (tmp_path / "journal").open("w+") as stream:
        yield stream


def journal_env(stream: TextIO, **extra: str) -> dict[str, str]:
    """The environment systemd sets when stderr is connected to the journal, with no journald
    to take entries (tests/test_journal_entries.py has one): the lines stay on the stream."""
    status = os.fstat(stream.fileno())
    no_journald = str(Path(stream.name).parent / "no-journald")
    return {
        "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}",
        "MIGRESTORE_JOURNAL_SOCKET": no_journald,
        **extra,
    }


def written(stream: TextIO) -> list[str]:
    """The lines written to a stream so far."""
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_journal_lines_carry_syslog_priority(journal_file: TextIO) -> None:
    """Under the journal every level gets its sd-daemon priority prefix and key=value pairs."""
    logs.configure("text", debug=True, stream=journal_file, environ=journal_env(journal_file))
    log = structlog.get_logger()
    log.debug("probe", gpu=0)
    log.info("gpu_instance_created", gpu="GPU-1", profile="3g.40gb")
    log.warning("reset_pending", gpu=3)
    log.error("apply_failed", reason="driver not loaded")
    assert written(journal_file) == [
        "<7>probe gpu=0",
        "<6>gpu_instance_created gpu=GPU-1 profile=3g.40gb",
        "<4>reset_pending gpu=3",
        '<3>apply_failed reason="driver not loaded"',
    ]


def test_journal_exception_lines_all_prefixed(journal_file: TextIO) -> None:
    """A traceback becomes several journal lines, each with the event's priority."""
    logs.configure("text", debug=False, stream=journal_file, environ=journal_env(journal_file))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("crashed")
    lines = written(journal_file)
    assert lines[0] == "<3>crashed"
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_of_another_file_is_not_the_journal(
    journal_file: TextIO, tmp_path: Path
) -> None:
    """JOURNAL_STREAM naming another file (a redirected child) means console rendering."""
    with (tmp_path / "other").open("w") as other:
        env = journal_env(other)
    logs.configure("text", debug=False, stream=journal_file, environ=env)
    structlog.get_logger().info("gpu_instance_created", gpu=1)
    (line,) = written(journal_file)
    assert not line.startswith("<")
    assert "gpu_instance_created" in line
    assert "gpu=1" in line


def test_console_lines_on_plain_stream() -> None:
    """Without the journal, lines are human-readable, colourless on a non-terminal."""
    stream = io.StringIO()
    logs.configure("text", debug=False, stream=stream, environ={})
    structlog.get_logger().warning("reset_pending", gpu=3)
    line = stream.getvalue().rstrip("\n")
    assert "[warning  ] reset_pending" in line
    assert line.endswith("gpu=3")
    assert "\x1b[" not in line


def test_json_one_object_per_line(journal_file: TextIO) -> None:
    """--log-format json wins over the journal: one JSON object per line with level and time."""
    logs.configure("json", debug=False, stream=journal_file, environ=journal_env(journal_file))
    log = structlog.get_logger()
    log.info("gpu_instance_created", gpu="GPU-1", placement=4)
    log.error("apply_failed", reason="x")
    records = [json.loads(line) for line in written(journal_file)]
    assert [(r["event"], r["level"]) for r in records] == [
        ("gpu_instance_created", "info"),
        ("apply_failed", "error"),
    ]
    assert records[0]["placement"] == 4
    assert records[0]["timestamp"].endswith("Z")


def test_debug_hidden_by_default() -> None:
    """Debug events are dropped unless --debug or SYSTEMD_LOG_LEVEL=debug."""
    stream = io.StringIO()
    logs.configure("json", debug=False, stream=stream, environ={})
    structlog.get_logger().debug("probe")
    assert stream.getvalue() == ""


def test_systemd_log_level_filters(journal_file: TextIO) -> None:
    """SYSTEMD_LOG_LEVEL=warning drops info events."""
    env = journal_env(journal_file, SYSTEMD_LOG_LEVEL="warning")
    logs.configure("text", debug=False, stream=journal_file, environ=env)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    assert written(journal_file) == ["<4>loud"]


@pytest.mark.parametrize(
    ("debug", "value", "expected"),
    [
        (False, None, logging.INFO),
        (False, "debug", logging.DEBUG),
        (False, "7", logging.DEBUG),
        (False, "err", logging.ERROR),
        (False, "3", logging.ERROR),
        (False, "notice", logging.INFO),
        (False, "WARNING", logging.WARNING),
        (False, "nonsense", logging.INFO),
        (False, "9", logging.INFO),
        (True, "err", logging.DEBUG),
    ],
)
def test_log_level(debug: bool, value: str | None, expected: int) -> None:
    """--debug wins, then SYSTEMD_LOG_LEVEL by name or number, then INFO."""
    assert logs.log_level(debug, value) == expected


def test_journal_attached_rejects_garbage(journal_file: TextIO) -> None:
    """An unparsable JOURNAL_STREAM or a stream without a descriptor is not the journal."""
    assert logs.journal_attached(journal_env(journal_file)["JOURNAL_STREAM"], journal_file)
    assert not logs.journal_attached("", journal_file)
    assert not logs.journal_attached("12", journal_file)
    assert not logs.journal_attached("a:b", journal_file)
    assert not logs.journal_attached("1:2", io.StringIO())


def test_logger_made_before_configure_follows_it() -> None:
    """A module-level logger created at import time uses the configuration made later."""
    log = structlog.get_logger()
    stream = io.StringIO()
    logs.configure("json", debug=False, stream=stream, environ={})
    log.info("late")
    assert json.loads(stream.getvalue())["event"] == "late"


def test_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Logs go to stderr; stdout stays for the verb's result."""
    logs.configure("json", debug=False, environ={})
    structlog.get_logger().info("to_stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to_stderr"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3g.40gb", "3g.40gb"),
        (4, "4"),
        ("driver not loaded", '"driver not loaded"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a\nb", '"a\\nb"'),
        ("", '""'),
    ],
)
def test_format_value(value: object, expected: str) -> None:
    """Values are bare words or logfmt double-quoted strings."""
    assert logs.format_value(value) == expected


def test_journal_prefix_only_on_the_journal(journal_file: TextIO) -> None:
    """Lines printed without structlog get a priority prefix only when stderr is the journal."""
    assert logs.journal_prefix(3, journal_file, journal_env(journal_file)) == "<3>"
    assert logs.journal_prefix(3, journal_file, {}) == ""
    assert logs.journal_prefix(3, io.StringIO(), journal_env(journal_file)) == ""
