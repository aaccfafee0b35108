"""The logger every module uses, imported lazily: structlog (and asyncio, which it pulls in) is
loaded only when something is actually logged, so a quiet `verify` does not pay for it.

`cli.main` calls `setup()` once with the run's settings; the first log call configures structlog
through `logs.configure` and from then on goes straight to structlog's bound logger.
"""

from __future__ import annotations

import os
from typing import Any, Literal

# SYSTEMD_LOG_LEVEL values that let debug events through (logs.log_level).
_DEBUG_LEVELS = {"debug", "7"}


def _dropped(*args: object, **kwargs: object) -> None:
    """A debug event nobody will see: not even structlog is loaded for it."""


class _LazyLogger:
    """`log.info("event", key=value)` and friends, configured and resolved on first use."""

    def __init__(self) -> None:
        self._fmt: Literal["text", "json"] = "text"
        self._debug = False
        self._verbosity = 0
        self._bound: Any = None

    def setup(self, fmt: Literal["text", "json"], debug: bool, verbosity: int = 0) -> None:
        """Remember how to configure logging (verbosity: -1 quiet, 0, 1 verbose); nothing is
        imported yet."""
        self._fmt, self._debug, self._verbosity, self._bound = fmt, debug, verbosity, None

    def __getattr__(self, method: str) -> Any:
        if method == "debug" and self._bound is None and not self._debug_shown():
            return _dropped
        if self._bound is None:
            import structlog

            from migrestore import logs

            logs.configure(self._fmt, self._debug, verbosity=self._verbosity)
            self._bound = structlog.get_logger("migrestore")
        return getattr(self._bound, method)

    def _debug_shown(self) -> bool:
        """Debug events pass the level filter only with --debug or SYSTEMD_LOG_LEVEL=debug."""
        level = os.environ.get("SYSTEMD_LOG_LEVEL", "").strip().lower()
        return self._debug or level in _DEBUG_LEVELS


log = _LazyLogger()
setup = log.setup
