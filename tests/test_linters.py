"""ruff and mypy (strict) are part of the test suite."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python tool module from this interpreter's environment at the project root."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check() -> None:
    """The code passes ruff's lint rules."""
    result = run_tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """The code is formatted as ruff formats it."""
    result = run_tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    sys.version_info < (3, 10) and importlib.util.find_spec("mypy") is None,
    reason="the pinned mypy runs on Python 3.10 and later (it checks the code for 3.9 there)",
)
def test_mypy_strict() -> None:
    """The package, tests and benchmarks type-check under mypy --strict."""
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
