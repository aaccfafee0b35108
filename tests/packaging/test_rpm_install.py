"""The RHEL 9 .rpm installed with `rpm --root` on an overlay root: scriptlets, upgrade, erase.

No RHEL root can be built here, so a Debian 11 root stands in: its python3 is 3.9 like RHEL 9's,
its pystemd (0.7) and PyYAML (5.3) are older than RHEL 9 + EPEL's, and rpm runs the scriptlets
chrooted in it with its /bin/sh and systemctl, which is what the scriptlets need. What this cannot
show (RHEL's own dependency resolution, SELinux labels) is checked statically (README).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.packaging.debian_root import Overlay, cached_root
from tests.packaging.package_builds import Build, deb_paths, rpm_paths

pytestmark = [pytest.mark.packages, pytest.mark.nspawn]

# Where the two distributions put the same thing: (.deb prefix, .rpm prefix).
SAME_PLACE = (
    ("/lib/systemd/system/", "/usr/lib/systemd/system/"),
    ("/lib/udev/rules.d/", "/usr/lib/udev/rules.d/"),
    ("/usr/lib/python3/dist-packages/", "/usr/lib/python3.9/site-packages/"),
)
# Files only one format has, each for a reason (packaging/README.md has the same list).
DEB_ONLY = {
    "/usr/share/doc/migrestore/changelog.Debian.gz",  # Debian policy
    "/usr/share/doc/migrestore/changelog.gz",  # Debian policy: the upstream CHANGELOG.md
    "/usr/share/doc/migrestore/copyright",  # Debian's license file (both licenses)
    "/usr/share/lintian/overrides/migrestore",  # lintian overrides, each with its reason
    "/usr/share/python3/runtime.d/migrestore.rtupdate",  # dh_python3: recompile on upgrades
    "/usr/lib/python3.9/site-packages/migrestore-0.1.0.dist-info/RECORD",  # pip's; rpm owns
    "/usr/share/zsh/vendor-completions/_migrestore",  # Debian's directory for zsh completions
}
RPM_ONLY = {
    "/usr/share/zsh/site-functions/_migrestore",  # Fedora's and RHEL's directory for it
    "/usr/lib/systemd/system-preset/50-migrestore.preset",  # rpm enables through presets
    "/usr/share/licenses/migrestore/LICENSE.nvidia-ml-py",  # %license (deb: in copyright)
    "/usr/share/licenses/migrestore/LICENSE",  # %license (deb: in copyright)
    # pip copies the project's LICENSE into the wheel; pybuild drops it from the .deb (Debian
    # policy: licenses live in copyright).
    "/usr/lib/python3.9/site-packages/migrestore-0.1.0.dist-info/LICENSE",
    "/usr/lib/python3.9/site-packages/migrestore-0.1.0.dist-info/INSTALLER",  # "rpm"
    # %license of the vendored libraries (deb: in copyright)
    "/usr/share/licenses/migrestore/structlog-LICENSE-APACHE",
    "/usr/share/licenses/migrestore/structlog-LICENSE-MIT",
    "/usr/share/licenses/migrestore/structlog-NOTICE",
    "/usr/share/licenses/migrestore/tomli-LICENSE",
    "/usr/share/licenses/migrestore/tomli-w-LICENSE",
    "/usr/share/licenses/migrestore/prometheus-client-LICENSE",
    "/usr/share/licenses/migrestore/prometheus-client-NOTICE",
}


def _rpm(overlay: Overlay, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the host's rpm on the overlay root (scriptlets run chrooted in it)."""
    return overlay.run(["rpm", "--root", str(overlay.root), *args])


@pytest.fixture(scope="module", name="rhel9_standin")
def fixture_rhel9_standin(tools: None) -> Path:
    """Debian 11's root with Debian's packages of what the .rpm requires (read-only)."""
    return cached_root(("python3-pystemd", "python3-yaml"), "bullseye")


@pytest.fixture(name="rpm_root")
def fixture_rpm_root(rhel9_standin: Path, rpm: Path, tmp_path: Path) -> Overlay:
    """The stand-in root with an rpm database and migrestore installed by rpm."""
    overlay = Overlay.create(rhel9_standin, tmp_path / "overlay")
    done = overlay.shell(f'rpm --root "$ROOT" --initdb && rpm --root "$ROOT" -i --nodeps "{rpm}"')
    assert done.returncode == 0, done.stderr
    return overlay


def test_install_enables_the_unit_by_preset(rpm_root: Overlay) -> None:
    """%post ran `systemctl preset`, and the shipped preset file enables the unit."""
    done = rpm_root.shell(
        'systemctl --root="$ROOT" is-enabled migrestore.service\n'
        'ls "$ROOT/etc/systemd/system/multi-user.target.wants"'
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "enabled"
    assert "migrestore.service" in done.stdout.split()


def test_install_leaves_the_drift_timer_disabled(rpm_root: Overlay) -> None:
    """%post's preset leaves the drift timer disabled (the shipped preset says so)."""
    done = rpm_root.shell('systemctl --root="$ROOT" is-enabled migrestore-verify.timer')
    assert done.stdout.strip() == "disabled", done.stdout + done.stderr


def test_installed_payload_runs(rpm_root: Overlay) -> None:
    """The rpm's launcher, package and vendored libraries run on Python 3.9 with pystemd 0.7."""
    script = """
        export PYTHONPATH=/usr/lib/python3.9/site-packages
        migrestore --version
        migrestore simulate init /tmp/host.json --gpu "NVIDIA H200:1" > /dev/null
        migrestore --simulate /tmp/host.json status
        mkdir /tmp/node-exporter
        migrestore --simulate /tmp/host.json verify --metrics-dir /tmp/node-exporter
        cat /tmp/node-exporter/migrestore.prom
    """
    done = rpm_root.container(["sh", "-euc", script])
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "migrestore 0.1.0"
    assert "(packaged, /usr/lib/migrestore/vendor/pynvml.py)" in lines[1]
    assert "SIMULATED HOST (/tmp/host.json)" in done.stdout
    assert "migrestore_last_run_success 1.0" in lines


def test_upgrade_keeps_the_edited_layout_and_enablement(
    rpm_root: Overlay, builds: dict[str, Build]
) -> None:
    """rpm -U to a newer release keeps an edited %config(noreplace) file and the unit enabled."""
    edit = rpm_root.shell('echo "# edited" >> "$ROOT/etc/migrestore/migrestore.toml"')
    assert edit.returncode == 0, edit.stderr
    upgrade = _rpm(rpm_root, "-U", "--nodeps", str(builds["rpm-2"].path))
    assert upgrade.returncode == 0, upgrade.stderr
    done = rpm_root.shell(
        'rpm --root "$ROOT" -q migrestore\n'
        'tail -n 1 "$ROOT/etc/migrestore/migrestore.toml"\n'
        'ls "$ROOT/etc/migrestore"\n'
        'systemctl --root="$ROOT" is-enabled migrestore.service'
    )
    lines = done.stdout.splitlines()
    assert lines == [
        "migrestore-0.1.0-2.noarch",
        "# edited",
        "conf.d",
        "migrestore.toml",
        "enabled",
    ]


def test_erase_disables_the_unit_and_keeps_state(rpm_root: Overlay) -> None:
    """rpm -e disables the unit (%preun), keeps run records and saves the edited layout file."""
    setup = rpm_root.shell(
        'echo "# edited" >> "$ROOT/etc/migrestore/migrestore.toml"\n'
        'echo "{}" > "$ROOT/var/lib/migrestore/last-run.json"'
    )
    assert setup.returncode == 0, setup.stderr
    erase = _rpm(rpm_root, "-e", "migrestore")
    assert erase.returncode == 0, erase.stderr
    done = rpm_root.shell(
        'ls "$ROOT/etc/systemd/system/multi-user.target.wants" "$ROOT/var/lib/migrestore" '
        '"$ROOT/etc/migrestore"'
    )
    listed = done.stdout.split()
    assert "migrestore.service" not in listed
    assert {"last-run.json", "migrestore.toml.rpmsave"} <= set(listed)


def _canonical(path: str, index: int) -> str:
    """A payload path (of SAME_PLACE's side `index`) with its prefix replaced by the .rpm's."""
    for pair in SAME_PLACE:
        if path.startswith(pair[index]):
            return pair[1] + path.removeprefix(pair[index])
    return path


def _files(paths: set[str], index: int) -> set[str]:
    """The payload's files and empty directories (no byte-code), in the .rpm's layout."""
    kept = {p for p in paths if "__pycache__" not in p}
    leaves = {p for p in kept if not any(other.startswith(p + "/") for other in kept)}
    return {_canonical(p, index) for p in leaves}


def test_rpm_payload_matches_the_deb(builds: dict[str, Build]) -> None:
    """Both packages install the same files, modulo the documented distribution differences."""
    deb = _files(deb_paths(builds["deb"].path), 0)
    rpm = _files(rpm_paths(builds["rpm"].path), 1)
    assert deb - rpm == DEB_ONLY
    assert rpm - deb == RPM_ONLY
    assert "/usr/lib/migrestore/vendor/pynvml.py" in deb & rpm
    assert {
        "/usr/lib/systemd/system/migrestore-reload.service",
        "/usr/lib/udev/rules.d/90-migrestore-reload.rules",
    } <= deb & rpm


def test_both_packages_own_the_state_directory(builds: dict[str, Build]) -> None:
    """/var/lib/migrestore (empty when installed) belongs to both packages."""
    assert "/var/lib/migrestore" in deb_paths(builds["deb"].path)
    assert "/var/lib/migrestore" in rpm_paths(builds["rpm"].path)
