"""An older migrestore meets a newer layout file: it refuses the file at its version line, in one
line naming the version, instead of misreading a key it does not know (issue 12: downgrades)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrestore import config

ROOT = Path(__file__).resolve().parents[1]
# The last commit whose parser read layout format version 1 only (0.1.0 and what followed it
# until the fleet selectors): the release a fleet may still run on some hosts.
FORMAT_1_RELEASE = "0d81fca9d90f2ae5036950892f8f2d179880ce32"
NEWER_FILE = """version = 2
[[gpu]]
select = { device-id = "0x20B210DE" }
optional = true
  [[gpu.instance]]
  profile = "3g.40gb"
"""


@pytest.fixture(name="older_migrestore")
def fixture_older_migrestore(tmp_path: Path) -> Path:
    """The format-1 release's package, taken from the repository's history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and the repository's history (a copy of the files has neither)")
    known = ["git", "-C", str(ROOT), "cat-file", "-e", f"{FORMAT_1_RELEASE}^{{commit}}"]
    if subprocess.run(known, capture_output=True, check=False).returncode != 0:
        pytest.skip(f"the history lacks {FORMAT_1_RELEASE[:12]} (a shallow clone)")
    archive = tmp_path / "older.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), FORMAT_1_RELEASE, "migrestore"],
        check=True,
    )
    older = tmp_path / "older"
    older.mkdir()
    subprocess.run(["tar", "-x", "-f", str(archive), "-C", str(older)], check=True)
    return older


def test_the_format_1_release_refuses_a_version_2_file(
    older_migrestore: Path, tmp_path: Path
) -> None:
    """The old parser exits 2 with one line naming the version; today's reads the same file."""
    layout = tmp_path / "layout.toml"
    layout.write_text(NEWER_FILE)
    assert config.parse(NEWER_FILE, str(layout)).gpus[0].optional
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "migrestore",
            "--allow-insecure-config",
            "--config",
            str(layout),
            "check",
        ],
        cwd=older_migrestore,
        env={"PYTHONPATH": str(older_migrestore), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run
    assert run.stderr.splitlines() == [
        f"migrestore: error: {layout}: version: unsupported version 2; this migrestore reads "
        "version 1"
    ]
