"""Fixtures of the package tier: tools, the packages built once per run, the Debian root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.debian_root import Overlay, cached_root, tools_missing
from tests.packaging.package_builds import (
    Build,
    deb_depends,
    finish_build,
    install_tools,
    start_build,
)


@pytest.fixture(scope="session", name="tools")
def fixture_tools() -> None:
    """The Debian packages the tier needs (mmdebstrap, debhelper, rpm, linters, nspawn)."""
    reason = tools_missing()
    if reason:
        pytest.skip(reason)
    install_tools()


@pytest.fixture(scope="session", name="builds")
def fixture_builds(tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """The .deb and .rpm with their linters, and a newer build of each, built side by side."""
    out = tmp_path_factory.mktemp("packages")
    started = {
        "deb": start_build("build-deb", out),
        "rpm": start_build("build-rpm", out),
        "deb-2": start_build("build-deb", out, "--revision", "2"),
        "rpm-2": start_build("build-rpm", out, "--release", "2", "--no-lint"),
        "rpm-rhel10": start_build("build-rpm", out / "rhel10", "--python", "3.12"),
    }
    return {name: finish_build(process) for name, process in started.items()}


@pytest.fixture(scope="session", name="deb")
def fixture_deb(builds: dict[str, Build]) -> Path:
    """migrestore_0.1.0-1_all.deb."""
    return builds["deb"].path


@pytest.fixture(scope="session", name="rpm")
def fixture_rpm(builds: dict[str, Build]) -> Path:
    """migrestore-0.1.0-1.noarch.rpm."""
    return builds["rpm"].path


@pytest.fixture(scope="session", name="debian_root")
def fixture_debian_root(deb: Path) -> Path:
    """The cached minimal Debian 12 root with the .deb's dependencies (read-only: use overlays)."""
    return cached_root(deb_depends(deb))


@pytest.fixture(name="overlay")
def fixture_overlay(debian_root: Path, tmp_path: Path) -> Overlay:
    """A fresh writable overlay of the Debian root for one test."""
    return Overlay.create(debian_root, tmp_path / "overlay")
