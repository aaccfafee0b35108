"""Exceptions and the exit codes they become (only `cli.main` turns one into the other)."""

from __future__ import annotations

import enum
import unicodedata

_CONTROL = frozenset({"Cc", "Cf", "Zl", "Zp"})


class ExitCode(enum.IntEnum):
    """The process exit status, documented in migrestore(8)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DRIFT = 3
    PENDING = 4
    NOT_ON_HOST = 5  # apply --boot: the driver runs in a container, nothing to do on the host
    CONSUMER_WARNINGS = 6  # check --consumer: the consumer refuses something in the layout


class MigrestoreError(Exception):
    """Base: a one-line message, an optional hint, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.hint = one_line(hint)

    def __str__(self) -> str:
        return self.message


def one_line(text: str) -> str:
    """`text` with every control character (newline included) escaped, so that a message is one
    line and nothing it quotes can set a journal priority or move the cursor."""
    if not any(unicodedata.category(c) in _CONTROL for c in text):
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _CONTROL else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


class ConfigError(MigrestoreError):
    """The layout file or a command-line argument is wrong; nothing was touched."""

    exit_code = ExitCode.USAGE


class DriverError(MigrestoreError):
    """NVML could not be used at all (library missing, driver not loaded, timeout)."""


class GpuError(MigrestoreError):
    """One NVML operation on one GPU failed."""

    def __init__(self, message: str, nvml_error: str = "", hint: str = "") -> None:
        super().__init__(message, hint)
        self.nvml_error = nvml_error


class GpuCountError(MigrestoreError):
    """NVML counts another number of GPUs than index entries expect: the indices may have
    shifted, so nothing was touched."""


class LockError(MigrestoreError):
    """Another migrestore run holds the lock."""


class UnitError(MigrestoreError):
    """systemd could not stop or start a unit, or D-Bus is unavailable."""


class NoSuchUnit(UnitError):
    """systemd has no such unit (no unit file): org.freedesktop.systemd1.NoSuchUnit."""
