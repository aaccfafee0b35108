"""The shipped model table is what the catalogue in docs/catalogue compiles to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def test_models_json_is_compiled_from_the_catalogue() -> None:
    """dev/compile-models.py --check finds migrestore/data/models.json up to date."""
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "dev" / "compile-models.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
