"""The package's import graph: no circle, and a verb loads only what it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.simhost import ROOT, make_host

PACKAGE = "migrestore"


def test_the_package_has_no_import_circle() -> None:
    """No module imports, directly or through others, a module that imports it (lazy and
    type-checking imports count too)."""
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    circles = sorted(
        f"{importer} -> {imported} -> ... -> {importer}"
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(imported=importer, importer=imported)
    )
    assert circles == []


def test_the_verb_table_names_every_verb_module() -> None:
    """Each module of migrestore/verbs/ (but the shared one) is one verb of the table, and back."""
    from migrestore.verbs import VERBS

    modules = {p.stem for p in (ROOT / "migrestore" / "verbs").glob("*.py")}
    assert {v.module for v in VERBS} == modules - {"__init__", "common"}


def _loaded_by(args: list[str]) -> set[str]:
    """The migrestore modules (and a few heavy libraries) one command line imports."""
    script = (
        "import json, sys\n"
        "from migrestore import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    code, modules = json.loads(done.stderr.strip().splitlines()[-1])
    assert code in (0, 3), done.stderr
    return set(modules)


@pytest.mark.parametrize("verb", ["status", "plan", "verify"])
def test_a_read_only_verb_loads_no_other_verb_nor_the_writers(tmp_path: Path, verb: str) -> None:
    """`status`, `plan` and `verify` import their own verb module only, and neither the layout
    writer (tomli_w), the mig-parted importer nor the offline checker."""
    host = make_host(tmp_path, ("H100-SXM5-80GB", 2))
    loaded = _loaded_by(["--simulate", str(host.state), "--config", str(host.config), verb])
    verbs = {m for m in loaded if m.startswith("migrestore.verbs.")}
    assert verbs == {f"migrestore.verbs.{verb}", "migrestore.verbs.common"}
    assert not loaded & {"tomli_w", "migrestore.migparted", "migrestore.offline", "yaml"}


@pytest.mark.parametrize("verb", ["status", "plan", "verify"])
def test_a_read_only_verb_loads_only_what_it_runs(tmp_path: Path, verb: str) -> None:
    """A quiet `status`, `plan` or `verify` loads no importlib.resources or metadata, no logging
    library, no Protocol classes, no description of the bindings and no systemd module."""
    host = make_host(tmp_path, ("H100-SXM5-80GB", 2))
    loaded = _loaded_by(["--simulate", str(host.state), "--config", str(host.config), verb])
    unwanted = {
        "importlib.resources",
        "importlib.metadata",
        "structlog",
        "logging",
        "migrestore.interfaces",
        "migrestore.bindings",
        "migrestore.systemd",
        "migrestore.writer",
    }
    assert not loaded & unwanted


def test_the_hot_verbs_load_no_simulator_on_a_real_host() -> None:
    """Without --simulate, the modules of verify, status and plan (and the adapters) import no
    part of the simulator: it is loaded only for a simulated host."""
    script = (
        "import sys\n"
        "import migrestore.cli, migrestore.host\n"
        "import migrestore.verbs.verify, migrestore.verbs.status, migrestore.verbs.plan\n"
        "print(sorted(m for m in sys.modules if m.startswith('migrestore.simulator')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"
