#!/usr/bin/env python3
"""Print migrestore's shell completion for bash or zsh, generated from its argparse tree.

    .venv/bin/python dev/completion.py bash      # print one
    .venv/bin/python dev/completion.py --write   # rewrite completions/ (after changing options)

shtab is a build and test tool (dev/requirements.txt), never a run-time dependency: the scripts
are plain shell, kept in completions/ (tests/test_completion.py fails when they are stale) and
installed by both packages (bash: bash-completion/completions/migrestore, zsh: _migrestore).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shtab

from migrestore.cli import build_parser

SHELLS = ("bash", "zsh")
ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "bash": ROOT / "completions" / "migrestore.bash",
    "zsh": ROOT / "completions" / "_migrestore",
}


def script(shell: str) -> str:
    """The completion script for `shell`."""
    return str(shtab.complete(build_parser(), shell=shell))


def main(argv: list[str]) -> int:
    """Print the script for the one shell named in `argv`, or `--write` both; 2 on a usage
    error."""
    if argv == ["--write"]:
        for shell, path in FILES.items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(script(shell))
        return 0
    if len(argv) != 1 or argv[0] not in SHELLS:
        print(f"usage: dev/completion.py {{{'|'.join(SHELLS)}|--write}}", file=sys.stderr)
        return 2
    sys.stdout.write(script(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
