#!/usr/bin/env python3
"""Print migrestore's shell completion for bash or zsh, generated from its argparse tree.

    .venv/bin/python dev/completion.py bash > migrestore.bash   # or: zsh > _migrestore

shtab is a build and test tool (dev/requirements.txt), never a run-time dependency: the script it
prints is plain shell. Packages can install the output (bash: completions/migrestore, zsh:
site-functions/_migrestore).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shtab

from migrestore.cli import build_parser

SHELLS = ("bash", "zsh")


def script(shell: str) -> str:
    """The completion script for `shell`."""
    return str(shtab.complete(build_parser(), shell=shell))


def main(argv: list[str]) -> int:
    """Print the script for the one shell named in `argv`; 2 on a usage error."""
    if len(argv) != 1 or argv[0] not in SHELLS:
        print(f"usage: dev/completion.py {{{'|'.join(SHELLS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(script(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
