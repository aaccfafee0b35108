"""Exceptions and the exit codes they become (only `cli.main` turns one into the other)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The process exit status, documented in migrestore(8)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DRIFT = 3
    PENDING = 4


class MigrestoreError(Exception):
    """Base: a one-line message, an optional hint, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


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


class LockError(MigrestoreError):
    """Another migrestore run holds the lock."""


class UnitError(MigrestoreError):
    """systemd could not stop or start a unit, or D-Bus is unavailable."""
