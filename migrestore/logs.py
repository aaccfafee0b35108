"""structlog configuration: one place, three renderings, everything on stderr.

- a terminal (or any stream that is not the journal): human-readable console lines
  (`12:00:01 [info     ] gpu_instance_created   gpu=GPU-... profile=3g.40gb`);
- under systemd, when stderr is the journal stream named by `JOURNAL_STREAM`: each event an
  entry sent over journald's native protocol (journal.py), with its priority, the MESSAGE_ID of
  its kind (messages.py) and its keys as MIGRESTORE_* fields; its MESSAGE is the plain
  `event key=value` line. Where journald does not take the entry, that line goes to stderr with
  a syslog priority prefix (`<3>`, `<4>`, `<6>`, `<7>`) so journald still records the level;
- `--log-format json`: one JSON object per line.

The level is DEBUG with `--debug`, else ERROR with `-q`, else the one `SYSTEMD_LOG_LEVEL` names,
else INFO; on a terminal the default is WARNING (events are for the journal and `-v`: a person gets
the progress line and the summary), and `-v` shows INFO there too.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from migrestore import journal
from migrestore.errors import one_line
from migrestore.messages import ERROR, MESSAGE_IDS

LogFormat = Literal["text", "json"]

# structlog method name -> syslog priority (sd-daemon(3) prefixes).
PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}

# SYSTEMD_LOG_LEVEL values (names or 0-7) -> logging level.
SYSTEMD_LEVELS = {
    "emerg": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "crit": logging.CRITICAL,
    "err": logging.ERROR,
    "warning": logging.WARNING,
    "notice": logging.INFO,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
SYSTEMD_LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def configure(
    fmt: LogFormat = "text",
    debug: bool = False,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    verbosity: int = 0,
) -> None:
    """Configure structlog for this process: call once, early, from the command line entry."""
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    attached = journal_attached(env.get("JOURNAL_STREAM"), out)
    for_person = fmt == "text" and not attached and is_terminal(out)
    level = log_level(debug, env.get("SYSTEMD_LOG_LEVEL"), verbosity, for_person)
    native = attached and fmt == "text"
    factory: Any = structlog.PrintLoggerFactory(file=out)
    if native:
        entries = JournalLogger(journal.Writer(journal.socket_path(env)), out)
        factory = lambda *_args: entries  # noqa: E731 (one logger for the process)
    structlog.configure(
        processors=processors(fmt, attached, out, native=native),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def log_level(
    debug: bool, systemd_log_level: str | None, verbosity: int = 0, for_person: bool = False
) -> int:
    """DEBUG with --debug; ERROR with -q; else the level SYSTEMD_LOG_LEVEL names (name or 0-7);
    else INFO, or WARNING on a person's terminal unless -v."""
    if debug:
        return logging.DEBUG
    if verbosity < 0:
        return logging.ERROR
    value = (systemd_log_level or "").strip().lower()
    if value.isdigit() and int(value) < len(SYSTEMD_LEVEL_NAMES):
        value = SYSTEMD_LEVEL_NAMES[int(value)]
    default = logging.WARNING if for_person and verbosity == 0 else logging.INFO
    return SYSTEMD_LEVELS.get(value, default)


def journal_attached(journal_stream: str | None, stream: TextIO) -> bool:
    """Whether `stream` is the journal stream systemd named in JOURNAL_STREAM ("DEV:INODE")."""
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def journal_prefix(
    priority: int, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """`<N>` when `stream` (default stderr) is the journal, else "": for lines written without
    structlog (the one-line `migrestore: error: ...`) so journald still records their level."""
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    return f"<{priority}>" if journal_attached(env.get("JOURNAL_STREAM"), out) else ""


def failures_at_error_priority(text: str, stream: TextIO | None = None) -> str:
    """Result lines that say FAILED carry `<3>` when `stream` (default stdout) is the journal, so
    journald records them as errors rather than at the stream's default priority (6)."""
    out = sys.stdout if stream is None else stream
    prefix = journal_prefix(3, out)
    if not prefix:
        return text
    return "\n".join(prefix + line if "FAILED" in line else line for line in text.split("\n"))


def processors(
    fmt: LogFormat, journal: bool, stream: TextIO, *, native: bool = False
) -> list[Processor]:
    """The processor chain for one rendering (`native`: journal entries, see JournalLogger)."""
    common: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if fmt == "json":
        return [
            *common,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    if journal:
        final = journal_entry if native else render_journal_line
        return [*common, structlog.processors.format_exc_info, final]
    return [
        *common,
        structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
        structlog.dev.ConsoleRenderer(colors=is_terminal(stream)),
    ]


def is_terminal(stream: TextIO) -> bool:
    """Whether the stream is a terminal (colours only then)."""
    try:
        return stream.isatty()
    except ValueError:
        return False


def render_journal_line(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> str:
    """`<6>event key=value ...`; every line of a multi-line event carries the prefix."""
    prefix = f"<{PRIORITIES.get(event_dict.pop('level', 'info'), 6)}>"
    exception = event_dict.pop("exception", None)
    event = str(event_dict.pop("event", ""))
    text = " ".join([event, *(f"{key}={format_value(value)}" for key, value in event_dict.items())])
    if exception:
        text = f"{text}\n{exception}"
    return "\n".join(prefix + line for line in text.rstrip("\n").split("\n"))


def format_value(value: Any) -> str:
    """A value as logfmt writes it: bare when it is one word, double-quoted otherwise."""
    text = str(value)
    if text and not any(char in text for char in ' ="\n\t') and one_line(text) == text:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{one_line(escaped)}"'


def journal_entry(logger: WrappedLogger, name: str, event_dict: EventDict) -> dict[str, Any]:
    """The event as journal fields (MESSAGE, PRIORITY, MESSAGE_ID, its keys as MIGRESTORE_*),
    and as the `<N>` line to write instead when journald does not take the entry."""
    priority = PRIORITIES.get(event_dict.get("level", "info"), 6)
    event = str(event_dict.get("event", ""))
    keys = {k: v for k, v in event_dict.items() if k not in ("event", "level", "exception")}
    line = render_journal_line(logger, name, dict(event_dict))
    prefix = f"<{priority}>"
    fields = {
        "MESSAGE": "\n".join(part[len(prefix) :] for part in line.split("\n")),
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": journal.IDENTIFIER,
        "MIGRESTORE_EVENT": event,
        **{journal.field_name(key): str(value) for key, value in keys.items()},
    }
    if event in MESSAGE_IDS:
        fields["MESSAGE_ID"] = MESSAGE_IDS[event]
    return {"fields": fields, "line": line}


class JournalLogger:
    """structlog's logger under the journal: each event goes to journald as an entry, or, when
    journald does not take it, as its `<N>` line on the stream."""

    def __init__(self, writer: journal.Writer, stream: TextIO) -> None:
        self._writer = writer
        self._stream = stream

    def msg(self, fields: Mapping[str, str], line: str) -> None:
        """Send the entry; write the line if that fails."""
        if not self._writer.send(fields):
            print(line, file=self._stream, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def report_error(
    message: str,
    hint: str = "",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """`migrestore: error: MESSAGE` and `migrestore: hint: HINT` on `stream` (default stderr);
    under the journal as entries, the error with its MESSAGE_ID (and the hint as a field)."""
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    error = {
        "MIGRESTORE_EVENT": ERROR,
        "MESSAGE_ID": MESSAGE_IDS[ERROR],
        **({"MIGRESTORE_HINT": hint} if hint else {}),
    }
    lines = [(3, f"migrestore: error: {message}", error)]
    if hint:  # its own line, as on a terminal; not an event of its own
        lines.append((5, f"migrestore: hint: {hint}", {}))
    attached = journal_attached(env.get("JOURNAL_STREAM"), out)
    writer = journal.Writer(journal.socket_path(env)) if attached else None
    for priority, text, extra in lines:
        fields = {
            "MESSAGE": text,
            "PRIORITY": str(priority),
            "SYSLOG_IDENTIFIER": journal.IDENTIFIER,
            **extra,
        }
        if writer is None or not writer.send(fields):
            prefix = f"<{priority}>" if attached else ""
            print(prefix + text, file=out, flush=True)
    if writer is not None:
        writer.close()
