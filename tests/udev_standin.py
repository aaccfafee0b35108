"""What udev does with the shipped rule for one kernel event, for tests (no udevd runs here).

Only the rule syntax the shipped file uses is understood: match keys `KEY=="value"` and
`KEY!="value"` (shell-style globs, as udev's), and `RUN+="command"`. Any other key in the shipped
file is an error, so the stand-in cannot silently ignore something udev would act on.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "units" / "90-migrestore-reload.rules"
_PAIR = re.compile(r'\s*([A-Z_]+)\s*(==|!=|\+=)\s*"([^"]*)"\s*(?:,|$)')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "DRIVER"}


def rules(path: Path = RULES) -> list[list[tuple[str, str, str]]]:
    """Each rule line as (key, operator, value) triples; comments and blank lines skipped."""
    parsed: list[list[tuple[str, str, str]]] = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = [(m.group(1), m.group(2), m.group(3)) for m in _PAIR.finditer(line)]
        if "".join(m.group(0) for m in _PAIR.finditer(line)).strip() != line.strip():
            raise ValueError(f"{path}: a rule the stand-in does not understand: {line}")
        for key, operator, _ in pairs:
            if (key, operator) != ("RUN", "+=") and key not in _MATCH_KEYS:
                raise ValueError(f"{path}: key {key}{operator} is not modelled")
        parsed.append(pairs)
    return parsed


def commands(event: Mapping[str, str], path: Path = RULES) -> list[list[str]]:
    """The RUN+= programs udev would run for an event (its ACTION, SUBSYSTEM, KERNEL, ...)."""
    found: list[list[str]] = []
    for rule in rules(path):
        matches = all(
            fnmatch.fnmatchcase(event.get(key, ""), value) == (operator == "==")
            for key, operator, value in rule
            if operator in ("==", "!=")
        )
        if matches:
            found.extend(shlex.split(value) for key, _, value in rule if key == "RUN")
    return found


def module_event(action: str, module: str) -> dict[str, str]:
    """The kernel's uevent for loading ("add") or unloading ("remove") a module."""
    return {"ACTION": action, "SUBSYSTEM": "module", "KERNEL": module}
