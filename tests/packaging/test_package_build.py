"""The packages build from the checkout, lint clean, declare the right dependencies and scripts."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.packaging.package_builds import (
    ROOT,
    Build,
    deb_paths,
    maintainer_scripts,
    output,
    rpm_paths,
)

pytestmark = pytest.mark.packages

MAN_PAGE = ROOT / "docs" / "migrestore.8"
# The Debian package of each runtime dependency in pyproject.toml that the distributions provide:
# a new dependency fails the dependency tests until packaging declares or vendors it. The
# pure-Python ones the oldest targets lack are vendored (packaging/vendor/requirements.txt).
DEBIAN_PACKAGE = {
    "pystemd": "python3-pystemd",
    "pyyaml": "python3-yaml",
}
VENDORED = {"nvidia-ml-py", "prometheus-client", "structlog", "tomli", "tomli-w"}
# Everything the RHEL 9 .rpm may require: RHEL 9 + EPEL for the default python3 (3.9).
RHEL9_PROVIDES = {
    "/bin/sh",
    "/usr/bin/python3",
    "config(migrestore) = 0.1.0-1",
    "python(abi) = 3.9",
    "python3-pystemd >= 0.7",
    "python3-pyyaml >= 5.3",
    "python3.9dist(pystemd) >= 0.7",
    "python3.9dist(pyyaml) >= 5.3",
    "systemd",
}


def test_deb_builds_lintian_clean(builds: dict[str, Build]) -> None:
    """build-deb makes the .deb, and a --revision 2 rebuild, with no lintian tag at all."""
    assert builds["deb"].path.name == "migrestore_0.1.0-1_all.deb"
    assert builds["deb-2"].path.name == "migrestore_0.1.0-2_all.deb"
    for build in (builds["deb"], builds["deb-2"]):
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


def _dependency_list() -> list[str]:
    """pyproject.toml's [project] dependencies, as written."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    return re.findall(r'^\s*"([^"]+)",$', block, re.MULTILINE)


def _runtime_dependencies() -> dict[str, str]:
    """pyproject.toml's runtime dependencies: normalised name -> minimum version."""
    pairs = (re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^;\s]+)(;.*)?", d) for d in _dependency_list())
    return {m[1].lower().replace("_", "-"): m[2] for m in pairs if m}


def test_every_dependency_has_a_minimum_version() -> None:
    """Each runtime dependency is `name>=version`, which both packages can express."""
    assert len(_runtime_dependencies()) == len(_dependency_list()) > 0


def test_deb_depends_on_debian_packages(builds: dict[str, Build]) -> None:
    """Each dependency not vendored is a Depends on the Debian package, at the same minimum."""
    depends = output(["dpkg-deb", "-f", str(builds["deb"].path), "Depends"]).strip().split(", ")
    for name, version in _runtime_dependencies().items():
        if name not in VENDORED:
            assert f"{DEBIAN_PACKAGE[name]} (>= {version})" in depends, name
    assert "python3 (>= 3.9)" in depends
    vendored = ("nvidia", "pynvml", "prometheus", "structlog", "tomli", "sdnotify")
    assert not [item for item in depends if any(name in item for name in vendored)]


def test_rpm_requires_only_what_rhel9_and_epel_carry(builds: dict[str, Build]) -> None:
    """The RHEL 9 .rpm requires python(abi) 3.9, systemd, pystemd and PyYAML, nothing else."""
    requires = output(["rpm", "-qpR", str(builds["rpm"].path)]).splitlines()
    assert "python(abi) = 3.9" in requires
    assert "python3-pystemd >= 0.7" in requires
    unexpected = [r for r in requires if r not in RHEL9_PROVIDES and not r.startswith("rpmlib(")]
    assert unexpected == []


def test_rpm_for_rhel10_targets_python312(builds: dict[str, Build]) -> None:
    """build-rpm --python 3.12 installs into 3.12's site-packages and requires that ABI."""
    rpm = builds["rpm-rhel10"].path
    assert "python(abi) = 3.12" in output(["rpm", "-qpR", str(rpm)]).splitlines()
    paths = rpm_paths(rpm)
    assert "/usr/lib/python3.12/site-packages/migrestore/cli.py" in paths
    assert any(p.endswith(".cpython-312.pyc") for p in paths)


def test_deb_maintainer_scripts_never_start_stop_or_restart(builds: dict[str, Build]) -> None:
    """No maintainer script starts, stops or restarts a unit; postinst enables the unit."""
    scripts = maintainer_scripts(builds["deb"].path)
    for name, text in scripts.items():
        assert "deb-systemd-invoke" not in text, name
        assert not re.search(r"systemctl\b[^\n]*\s(start|stop|restart|try-restart|reload)\b", text)
    assert "deb-systemd-helper enable 'migrestore.service'" in scripts["postinst"]


def test_rpm_scriptlets_never_start_stop_or_restart(builds: dict[str, Build]) -> None:
    """The .rpm's scriptlets preset on install and disable on erase, never start or stop; the
    drift timer and its service go through the same macros."""
    scriptlets = output(["rpm", "-qp", "--scripts", str(builds["rpm"].path)])
    units = "migrestore.service migrestore-verify.timer migrestore-verify.service"
    assert f"preset {units}" in scriptlets
    assert f"disable {units}" in scriptlets
    assert not re.search(r"\b(start|restart|try-restart|--now)\b", scriptlets)


def test_both_packages_ship_the_drift_timer(builds: dict[str, Build]) -> None:
    """The drift check's timer and service are in both packages, beside the boot unit."""
    deb, rpm = deb_paths(builds["deb"].path), rpm_paths(builds["rpm"].path)
    for unit in ("migrestore-verify.timer", "migrestore-verify.service"):
        assert f"/lib/systemd/system/{unit}" in deb
        assert f"/usr/lib/systemd/system/{unit}" in rpm


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
