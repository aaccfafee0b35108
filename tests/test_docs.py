"""The man page and the package versions follow the command line and pyproject.toml.

In the fast tier, so an option added without documentation fails `./dev/test`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from migrestore.cli import build_parser
from migrestore.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
MAN_PAGE = ROOT / "docs" / "migrestore.8"


def _options_and_verbs(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """Every option string and (sub)verb name of the command line."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--") and s != "--help")
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.add(f"{prefix}{name}")
                found |= _options_and_verbs(sub, f"{prefix}{name} ")
    return found


def test_man_page_covers_every_verb_and_option() -> None:
    """Each verb, simulate action and option of the command line is in migrestore(8)."""
    page = MAN_PAGE.read_text().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
    missing = {word for word in _options_and_verbs(build_parser()) if word not in page}
    assert missing == set()


def test_man_page_documents_exit_codes_and_kill_switch() -> None:
    """migrestore(8) lists every exit code and the migrestore=off switch."""
    page = MAN_PAGE.read_text()
    exit_status = page.split(".SH EXIT STATUS")[1].split(".SH ")[0]
    assert re.findall(r"^\.B (\d)$", exit_status, re.MULTILINE) == [str(int(c)) for c in ExitCode]
    assert "migrestore=off" in page
    assert "/etc/migrestore/migrestore.toml" in page


def test_package_versions_follow_pyproject() -> None:
    """debian/changelog, the spec and the man page carry pyproject.toml's version."""
    version = re.findall(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[0]
    changelog = (ROOT / "packaging" / "debian" / "changelog").read_text().splitlines()[0]
    spec = (ROOT / "packaging" / "rpm" / "migrestore.spec").read_text()
    assert changelog.startswith(f"migrestore ({version}-")
    assert re.search(rf"^Version:\s+{re.escape(version)}$", spec, re.MULTILINE)
    assert f'"migrestore {version}"' in MAN_PAGE.read_text().splitlines()[2]


def test_the_module_map_names_every_module() -> None:
    """CONTRIBUTING.md's layout of the code has a row for every module of the package."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    package = ROOT / "migrestore"
    modules = [p.relative_to(package) for p in package.rglob("*.py")]
    unnamed = [
        str(m) for m in modules if f"`{m.as_posix()}`" not in text and f"`{m.name}`" not in text
    ]
    assert modules
    assert not unnamed, f"CONTRIBUTING.md's module map lacks {unnamed}"
