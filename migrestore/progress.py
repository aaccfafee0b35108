"""Progress for a person at a terminal: the run's status as one line on stderr, rewritten in
place as the steps go by, erased before the result is printed; the closing summary stays. An
`interfaces.Notifier`, like sd_notify under the unit (which sends the same texts to systemd)."""

from __future__ import annotations

import os
from typing import TextIO

_ERASE = "\r\033[K"
# A terminal that does not know its size (a serial console, a pty nobody sized) says 0 columns.
FALLBACK_WIDTH = 80


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to; FALLBACK_WIDTH when it reports none.
    (shutil.get_terminal_size asks stdout, not this stream, and before Python 3.11 passes a
    reported 0 on.)"""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return FALLBACK_WIDTH
    return columns if columns > 0 else FALLBACK_WIDTH


class TerminalProgress:
    """interfaces.Notifier drawing the status line on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown = False

    def status(self, text: str) -> None:
        """Show `text` (cut to the terminal's width) in place of the previous status."""
        width = terminal_width(self._stream)
        self._stream.write(_ERASE + text[: max(width - 1, 10)])
        self._stream.flush()
        self._shown = True

    def extend_timeout(self, seconds: float) -> None:
        """Nothing: a person has no start timeout."""

    def ready(self) -> None:
        """The run succeeded: its last status (the summary) stays as a line of its own."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False

    def clear(self) -> None:
        """Erase the status line (before anything else is printed)."""
        if self._shown:
            self._stream.write(_ERASE)
            self._stream.flush()
            self._shown = False
