"""The libraries the packages carry are the versions the test suite runs with."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line."""
    return dict(PIN.findall(path.read_text()))


def test_every_vendored_library_is_pinned_for_development_at_the_same_version() -> None:
    """dev/requirements.txt installs each vendored wheel at the version the packages carry."""
    vendored = _pins(ROOT / "packaging" / "vendor" / "requirements.txt")
    development = _pins(ROOT / "dev" / "requirements.txt")
    assert set(vendored) == {"nvidia-ml-py", "prometheus-client", "structlog", "tomli", "tomli-w"}
    assert {name: development.get(name) for name in vendored} == vendored


def test_every_vendored_wheel_has_a_sha256() -> None:
    """Each vendored pin carries the hash that pip and fetch-vendor check."""
    lines = (ROOT / "packaging" / "vendor" / "requirements.txt").read_text().splitlines()
    pins = [line for line in lines if PIN.match(line)]
    assert pins
    assert all(re.search(r" --hash=sha256:[0-9a-f]{64}$", line) for line in pins)
