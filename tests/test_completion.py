"""Shell completion generated from the argparse tree (dev/completion.py, shtab) knows every verb.

In the fast tier, so a verb or simulate action that completion would miss fails `./dev/test`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from migrestore.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "dev" / "completion.py"


def _verbs(parser: argparse.ArgumentParser) -> set[str]:
    """Every verb and simulate action of the command line."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= {name} | _verbs(sub)
    return found


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the generator with this interpreter."""
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_mentions_every_verb(shell: str) -> None:
    """The generated bash and zsh scripts name every verb and every simulate action."""
    done = _generate(shell)
    assert done.returncode == 0, done.stderr
    verbs = _verbs(build_parser())
    assert {"apply", "import-mig-parted", "simulate", "attach", "latency"} <= verbs
    assert sorted(verb for verb in verbs if verb not in done.stdout) == []
    assert "--lock-wait" in done.stdout


def test_bash_completion_is_valid_bash(tmp_path: Path) -> None:
    """bash parses the generated script without running it."""
    script = tmp_path / "migrestore.bash"
    script.write_text(_generate("bash").stdout)
    checked = subprocess.run(
        ["bash", "-n", str(script)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_generator_refuses_an_unknown_shell() -> None:
    """Any other shell is a usage error, exit 2."""
    done = _generate("fish")
    assert (done.returncode, done.stdout) == (2, "")
    assert "usage:" in done.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_shipped_completion_is_current(shell: str) -> None:
    """completions/ (what the packages install) is what the command line generates today:
    run `dev/completion.py --write` after changing an option."""
    done = _generate(shell)
    shipped = {"bash": "migrestore.bash", "zsh": "_migrestore"}[shell]
    assert (ROOT / "completions" / shipped).read_text() == done.stdout
