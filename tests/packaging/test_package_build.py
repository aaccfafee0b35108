"""The packages build from the checkout, lint clean, declare the right dependencies and scripts."""

from __future__ import annotations

import argparse
import re
import subprocess
import tomllib

import pytest

from migrestore.cli import build_parser
from migrestore.errors import ExitCode
from tests.packaging.package_builds import ROOT, Build, maintainer_scripts, output

pytestmark = pytest.mark.packages

MAN_PAGE = ROOT / "docs" / "migrestore.8"
# The Debian 12 package of each runtime dependency in pyproject.toml: a new dependency fails the
# dependency tests until packaging declares it. nvidia-ml-py is vendored (packaging/README.md).
DEBIAN_PACKAGE = {
    "pystemd": "python3-pystemd",
    "sdnotify": "python3-sdnotify",
    "structlog": "python3-structlog",
    "tomli-w": "python3-tomli-w",
    "pyyaml": "python3-yaml",
}
VENDORED = {"nvidia-ml-py"}


def test_deb_builds_lintian_clean(builds: dict[str, Build]) -> None:
    """build-deb makes the .deb and lintian reports no error, warning or info tag."""
    build = builds["deb"]
    assert build.path.name == "migrestore_0.1.0-1_all.deb"
    assert not re.findall(r"^[EWI]: .*", build.log, re.MULTILINE)


def test_rpm_builds_rpmlint_clean(builds: dict[str, Build]) -> None:
    """build-rpm makes the noarch .rpm and rpmlint finds nothing."""
    build = builds["rpm"]
    assert build.path.name == "migrestore-0.1.0-1.noarch.rpm"
    assert "0 errors, 0 warnings, 0 badness" in build.log


def test_newer_builds_are_newer(builds: dict[str, Build]) -> None:
    """--revision/--release make builds that the package managers see as upgrades."""
    deb_versions = [
        output(["dpkg-deb", "-f", str(builds[n].path), "Version"]) for n in ("deb", "deb-2")
    ]
    assert [v.strip() for v in deb_versions] == ["0.1.0-1", "0.1.0-2"]
    rpm_release = output(["rpm", "-qp", "--qf", "%{RELEASE}", str(builds["rpm-2"].path)])
    assert rpm_release == "2"


def _runtime_dependencies() -> dict[str, str]:
    """pyproject.toml's runtime dependencies: normalised name -> minimum version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pairs = (re.fullmatch(r"([A-Za-z0-9_.-]+)>=(\S+)", d) for d in project["dependencies"])
    return {m[1].lower().replace("_", "-"): m[2] for m in pairs if m}


def test_every_dependency_has_a_minimum_version() -> None:
    """Each runtime dependency is `name>=version`, which both packages can express."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert len(_runtime_dependencies()) == len(project["dependencies"])


def test_deb_depends_on_debian_packages(builds: dict[str, Build]) -> None:
    """Each dependency but nvidia-ml-py is a Debian 12 package Depends, at the same minimum."""
    depends = output(["dpkg-deb", "-f", str(builds["deb"].path), "Depends"]).strip().split(", ")
    for name, version in _runtime_dependencies().items():
        if name not in VENDORED:
            assert f"{DEBIAN_PACKAGE[name]} (>= {version})" in depends, name
    assert not [item for item in depends if "nvidia" in item or "pynvml" in item]


def test_rpm_requires_python311_packages(builds: dict[str, Build]) -> None:
    """Each dependency but nvidia-ml-py is a python3.11dist() Requires, at the same minimum."""
    requires = output(["rpm", "-qpR", str(builds["rpm"].path)]).splitlines()
    assert "python3.11" in requires
    for name, version in _runtime_dependencies().items():
        if name not in VENDORED:
            assert f"python3.11dist({name}) >= {version}" in requires, name
    assert not [line for line in requires if "nvidia" in line]


def test_deb_maintainer_scripts_never_start_stop_or_restart(builds: dict[str, Build]) -> None:
    """No maintainer script starts, stops or restarts a unit; postinst enables the unit."""
    scripts = maintainer_scripts(builds["deb"].path)
    for name, text in scripts.items():
        assert "deb-systemd-invoke" not in text, name
        assert not re.search(r"systemctl\b[^\n]*\s(start|stop|restart|try-restart|reload)\b", text)
    assert "deb-systemd-helper enable 'migrestore.service'" in scripts["postinst"]


def test_rpm_scriptlets_never_start_stop_or_restart(builds: dict[str, Build]) -> None:
    """The .rpm's scriptlets preset on install and disable on erase, never start or stop."""
    scriptlets = output(["rpm", "-qp", "--scripts", str(builds["rpm"].path)])
    assert "preset migrestore.service" in scriptlets
    assert "disable migrestore.service" in scriptlets
    assert not re.search(r"\b(start|restart|try-restart|--now)\b", scriptlets)


def test_vendored_pynvml_is_the_tested_version() -> None:
    """The nvidia-ml-py the packages vendor is the version the test suite runs with."""
    pin = (ROOT / "packaging" / "vendor" / "nvidia-ml-py.txt").read_text()
    development = (ROOT / "dev" / "requirements.txt").read_text()
    vendored = re.findall(r"^nvidia-ml-py==(\S+)", pin, re.MULTILINE)
    assert vendored
    assert vendored == re.findall(r"^nvidia-ml-py==(\S+)", development, re.MULTILINE)


def test_man_page_renders_without_warnings(tools: None) -> None:
    """man(1) formats migrestore(8) without a groff warning."""
    done = subprocess.run(
        ["man", "--warnings", "-l", str(MAN_PAGE)],
        capture_output=True,
        text=True,
        check=False,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    assert done.returncode == 0
    assert done.stderr == ""
    assert "migrestore - restore an NVIDIA GPU host's MIG partitioning" in done.stdout


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
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "packaging" / "debian" / "changelog").read_text().splitlines()[0]
    spec = (ROOT / "packaging" / "rpm" / "migrestore.spec").read_text()
    assert changelog.startswith(f"migrestore ({version}-")
    assert re.search(rf"^Version:\s+{re.escape(version)}$", spec, re.MULTILINE)
    assert f'"migrestore {version}"' in MAN_PAGE.read_text().splitlines()[2]
