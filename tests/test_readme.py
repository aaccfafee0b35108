"""The README's walk-through runs as written, and its layout file example shows the real defaults.

The walk-through is every fenced block after a `<!-- walkthrough -->` line, run in order in one
empty directory with `migrestore` on PATH (this checkout, through a shim) against the simulator.
A command's expected exit status is 0 unless its line ends in `# exit N`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from migrestore import config, metrics
from migrestore.model import RestoreOptions

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- walkthrough -->"
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
HEREDOC = re.compile(r"<<\s*'?(\w+)'?")


@dataclass(frozen=True)
class Command:
    """One shell command of the walk-through (a heredoc included) and the exit status it expects."""

    text: str
    expected: int


def walkthrough_blocks(text: str) -> list[str]:
    """The fenced code blocks that follow a walk-through marker, in order."""
    blocks = []
    for part in text.split(MARKER)[1:]:
        match = re.match(r"\s*```[a-z]*\n(.*?)\n```", part, re.DOTALL)
        assert match, f"no fenced block right after {MARKER}"
        blocks.append(match.group(1))
    return blocks


def commands(block: str) -> list[Command]:
    """The block's commands: one per line, a heredoc running to its terminator."""
    found: list[Command] = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = [line]
        heredoc = HEREDOC.search(line)
        if heredoc:
            for body in lines:
                text.append(body)
                if body == heredoc.group(1):
                    break
        expected = EXIT.search(line)
        found.append(Command("\n".join(text), int(expected.group(1)) if expected else 0))
    return found


def _shim(directory: Path) -> Path:
    """A `migrestore` on PATH that runs this checkout's code with this interpreter."""
    directory.mkdir()
    shim = directory / "migrestore"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m migrestore "$@"\n')
    shim.chmod(0o755)
    return directory


def test_walkthrough_commands_exit_as_annotated(tmp_path: Path) -> None:
    """Each walk-through command, run in order on a simulated host, exits as the README says."""
    blocks = walkthrough_blocks(README.read_text())
    steps = [command for block in blocks for command in commands(block)]
    assert len(steps) >= 10, "the walk-through lost its commands"
    work = tmp_path / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIGRESTORE_")}
    env["PATH"] = f"{_shim(tmp_path / 'bin')}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    for step in steps:
        done = subprocess.run(
            ["sh", "-c", step.text],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == step.expected, (step.text, done.stdout, done.stderr)


def test_walkthrough_covers_the_whole_path() -> None:
    """The walk-through simulates a host, writes, checks, plans, applies, reboots and verifies."""
    text = "\n".join(walkthrough_blocks(README.read_text()))
    verbs = ("simulate init", "check", "plan", "apply", "simulate reboot", "verify", "export")
    assert [verb for verb in verbs if verb not in text] == []


def test_commands_split_lines_heredocs_and_exit_annotations() -> None:
    """A heredoc is one command with its body, and `# exit N` sets the expected status."""
    block = "a\ncat > f <<'EOF'\nx = 1\nEOF\n# a comment\nb  # exit 3\n"
    assert commands(block) == [
        Command("a", 0),
        Command("cat > f <<'EOF'\nx = 1\nEOF", 0),
        Command("b  # exit 3", 3),
    ]


def test_layout_example_restore_table_is_the_defaults() -> None:
    """The README's layout file example parses, and its [restore] table is exactly the defaults."""
    text = README.read_text()
    section = text.split("### The layout file")[1].split("\n\n", 1)[1]
    lines = []
    for line in section.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    example = "\n".join(lines)
    assert "[restore]" in example
    restore = config.parse(example, "README.md").restore
    # metrics-dir is unset by default: a real host then uses node_exporter's directory, shown.
    assert restore.metrics_dir == metrics.DEFAULT_DIR
    assert replace(restore, metrics_dir=None) == RestoreOptions()
