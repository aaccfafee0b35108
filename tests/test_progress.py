"""The progress line on a terminal: cut to the width the terminal reports, whole when it
reports none."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
from collections.abc import Iterator

import pytest

from migrestore.progress import FALLBACK_WIDTH, TerminalProgress

STATUS = "8 GPU(s) in layout, 96 change(s) in 12.5 s"


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal (main, child) nobody has sized: it reports 0 columns."""
    main, child = pty.openpty()
    yield main, child
    os.close(main)
    os.close(child)


def shown(main: int, child: int, text: str) -> str:
    """What the status line writes on the terminal's child side for `text`, minus the erase."""
    with open(child, "w", closefd=False) as stream:
        TerminalProgress(stream).status(text)
    return os.read(main, 4096).decode().split("\x1b[K", 1)[1]


def test_a_terminal_without_a_size_gets_the_whole_line(terminal: tuple[int, int]) -> None:
    """A terminal reporting 0 columns (serial console, unsized pty) is taken as 80 wide."""
    main, child = terminal
    assert os.get_terminal_size(child).columns == 0
    assert shown(main, child, STATUS) == STATUS
    assert len(shown(main, child, "x" * 200)) == FALLBACK_WIDTH - 1


def test_a_narrow_terminal_cuts_the_line_to_its_width(terminal: tuple[int, int]) -> None:
    """On a 30-column terminal the line is cut to 29 characters, so it never wraps."""
    main, child = terminal
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 30, 0, 0))
    assert shown(main, child, STATUS) == STATUS[:29]
