"""The distribution matrix: the one .deb on Debian 11, 12 and 13, and the README's two commands in
a fresh root of each, booted with systemd as PID 1.

Debian 11 (Python 3.9, systemd 247) stands in for RHEL 9 and Ubuntu 22.04, Debian 12 for itself,
and Debian 13 (Python 3.13, systemd 257) for Ubuntu 24.04 and RHEL 10 (README: Supported
platforms). The package test lets apt resolve the .deb's Depends from each suite's archive; the
README test copies the checkout to /root/migrestore of a fresh `--variant=important` root and runs
`./dev/demo` and `./dev/test` there from a unit, as a new user on a real server would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.booted_root import CONSUMERS, GPU_COUNT, SIM_STATE, Boot, boot
from tests.packaging.debian_root import CACHE, SUITES, Overlay, cached_root
from tests.packaging.package_builds import ROOT

pytestmark = [pytest.mark.matrix, pytest.mark.packages, pytest.mark.nspawn]

PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
SYSTEMD = {"bullseye": "247", "bookworm": "252", "trixie": "257"}
# The README's commands, with the time a fresh root of each suite needs (set-up included).
README_TIMEOUT = 1800.0

SCENARIO = f"""\
snapshot boot
python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' > /results/python
systemctl --version | head -n 1 > /results/systemd
systemd-analyze verify --man=no /lib/systemd/system/migrestore.service > /results/analyze 2>&1 \\
    && echo 0 > /results/analyze.status || echo $? > /results/analyze.status
migrestore --simulate {SIM_STATE} verify > /results/verify 2>&1 \\
    && echo 0 > /results/verify.status || echo $? > /results/verify.status
"""

README_UNIT = """\
[Unit]
Description=Run the README's two commands in /root/migrestore, then leave
After=multi-user.target

[Service]
Type=simple
Environment=HOME=/root LC_ALL=C.UTF-8
{environment}ExecStart=/usr/local/lib/readme-test
"""
# The host's CA bundle: where registries are reached through a TLS-inspecting proxy (as here), pip
# in the root must trust what the host trusts, as a user's pip would be configured on such a site.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ROOT_CA_BUNDLE = "/opt/host-ca-certificates.crt"

README_SCRIPT = """\
#!/bin/sh
systemctl is-system-running --wait > /dev/null
cd /root/migrestore
./dev/demo > /results/demo.log 2>&1; echo $? > /results/demo.status
./dev/test -p no:cacheprovider > /results/test.log 2>&1; echo $? > /results/test.status
systemctl exit 0
"""


@pytest.fixture(scope="module", params=SUITES, name="suite")
def fixture_suite(request: pytest.FixtureRequest) -> str:
    """One Debian release of the matrix."""
    return str(request.param)


@pytest.fixture(scope="module", name="apt_boot")
def fixture_apt_boot(suite: str, deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    """The suite's minimal root: the .deb installed with apt, booted with the simulated host."""
    root = cached_root(("apt",), suite)
    overlay = Overlay.create(root, tmp_path_factory.mktemp(f"apt-{suite}"))
    return boot(overlay, deb, SCENARIO, with_apt=True)


def test_root_runs_the_python_and_systemd_it_stands_for(suite: str, apt_boot: Boot) -> None:
    """Each root has the Python and systemd versions the matrix claims to cover."""
    assert apt_boot.text("python").strip() == PYTHON[suite]
    assert apt_boot.text("systemd").split()[1] == SYSTEMD[suite]


def test_deb_installs_with_apt_and_restores_at_boot(apt_boot: Boot) -> None:
    """apt resolves the Depends, the unit restores the layout and signals READY at boot."""
    assert apt_boot.exit_status == 0, apt_boot.console[-3000:]
    unit = apt_boot.show("boot", "migrestore")
    assert (unit["ActiveState"], unit["Result"], unit["ExecMainStatus"]) == (
        "active",
        "success",
        "0",
    )
    assert unit["StatusText"].startswith(f"{GPU_COUNT} GPU(s) in layout")


def test_consumers_start_after_readiness(apt_boot: Boot) -> None:
    """Every consumer started after migrestore became active and found the layout restored."""
    ready = int(apt_boot.show("boot", "migrestore")["ActiveEnterTimestampMonotonic"])
    assert ready > 0
    for name in CONSUMERS:
        assert int(apt_boot.show("boot", name)["ExecMainStartTimestampMonotonic"]) >= ready
    assert apt_boot.consumers() == dict.fromkeys(CONSUMERS, 0)


def test_verify_after_boot_is_in_sync(apt_boot: Boot) -> None:
    """`migrestore verify` exits 0 once the boot has finished."""
    assert apt_boot.text("verify.status").strip() == "0", apt_boot.text("verify")


def test_unit_file_verifies_on_this_systemd(apt_boot: Boot) -> None:
    """systemd-analyze verify accepts the unit: no directive this systemd ignores or rejects."""
    assert apt_boot.text("analyze.status").strip() == "0", apt_boot.text("analyze")
    assert apt_boot.text("analyze").strip() == ""


def _copy_checkout(destination: Path) -> None:
    """The checkout's tracked and untracked files (not ignored ones: no .venv) to `destination`."""
    destination.mkdir(parents=True)
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _install_readme_unit(upper: Path) -> None:
    """The unit that runs the README's commands, enabled, written into the overlay's upper layer."""
    (upper / "root").mkdir(mode=0o700, parents=True, exist_ok=True)
    _copy_checkout(upper / "root" / "migrestore")
    units = upper / "etc" / "systemd" / "system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    environment = f"Environment=PIP_CERT={ROOT_CA_BUNDLE}\n" if HOST_CA_BUNDLE.exists() else ""
    (units / "readme-test.service").write_text(README_UNIT.format(environment=environment))
    (units / "multi-user.target.wants" / "readme-test.service").symlink_to(
        "/etc/systemd/system/readme-test.service"
    )
    script = upper / "usr" / "local" / "lib" / "readme-test"
    script.parent.mkdir(parents=True)
    script.write_text(README_SCRIPT)
    script.chmod(0o755)


@pytest.fixture(scope="module", name="readme_run")
def fixture_readme_run(suite: str, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    """A fresh root of the suite, booted, that ran `./dev/demo` and `./dev/test` in /root."""
    root = cached_root((), suite, variant="important", base_packages=("systemd-sysv",))
    overlay = Overlay.create(root, tmp_path_factory.mktemp(f"fresh-{suite}"))
    _install_readme_unit(overlay.base / "upper")
    results, console = overlay.base / "results", overlay.base / "console"
    results.mkdir()
    # Download caches only: every package and wheel is still installed by the commands themselves.
    apt_cache, pip_cache = CACHE / f"apt-archives-{suite}", CACHE / f"pip-{suite}"
    for cache in (apt_cache / "partial", pip_cache):
        cache.mkdir(parents=True, exist_ok=True)
    writable = {apt_cache: "/var/cache/apt/archives", pip_cache: "/root/.cache/pip"}
    binds = {HOST_CA_BUNDLE: ROOT_CA_BUNDLE} if HOST_CA_BUNDLE.exists() else {}
    status = overlay.boot(console, results, binds, timeout=README_TIMEOUT, writable=writable)
    return Boot(status, results, console.read_text(errors="replace"))


def test_readme_demo_in_a_fresh_booted_root(readme_run: Boot) -> None:
    """`./dev/demo` restores, verifies, reboots and restores the simulated host: exit 0."""
    assert readme_run.exit_status == 0, readme_run.console[-3000:]
    assert readme_run.text("demo.status").strip() == "0", readme_run.text("demo.log")[-4000:]
    assert "$ migrestore verify" in readme_run.text("demo.log")


def test_readme_tests_in_a_fresh_booted_root(readme_run: Boot) -> None:
    """`./dev/test` (the fast tier) passes under the root's own Python and libraries."""
    log = readme_run.text("test.log")
    assert readme_run.text("test.status").strip() == "0", log[-6000:]
    summary = log.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert not re.search(r"\d+ (failed|error)", summary), summary
