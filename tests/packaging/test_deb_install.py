"""The .deb installed by dpkg in a clean Debian 12 root: a working command, Debian's libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.debian_root import Overlay
from tests.packaging.package_builds import Build

pytestmark = [pytest.mark.packages, pytest.mark.nspawn]

# Debian 12's versions of the libraries the .deb depends on (the matrix covers Debian 11 and 13).
DEBIAN_VERSIONS = {
    "python3-pystemd": "0.11.0",
    "python3-yaml": "6.0",
}


@pytest.fixture(name="installed")
def fixture_installed(overlay: Overlay, deb: Path) -> Overlay:
    """The Debian root with the .deb installed by dpkg (its dependencies were already there)."""
    done = overlay.container(["dpkg", "-i", f"/packages/{deb.name}"], {deb.parent: "/packages"})
    assert done.returncode == 0, done.stdout + done.stderr
    return overlay


def test_migrestore_version(installed: Overlay) -> None:
    """/usr/bin/migrestore prints its version and runs with the packaged (pinned) NVML bindings."""
    done = installed.container(["migrestore", "--version"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "migrestore 0.1.0"
    assert lines[1] == (
        "NVML bindings: nvidia-ml-py 13.615.71 (packaged, /usr/lib/migrestore/vendor/pynvml.py)"
    )


def test_simulated_status_with_debian_libraries(installed: Overlay) -> None:
    """`migrestore --simulate STATE status` runs on Debian's libraries and the vendored pynvml."""
    script = """
        migrestore simulate init /tmp/host.json --gpu "NVIDIA A100-SXM4-40GB:2"
        migrestore --simulate /tmp/host.json status
        dpkg-query -W -f '${Package} ${Version}\\n' python3-pystemd python3-yaml
        python3 -c 'import pynvml' 2>/dev/null || echo "no system-wide pynvml"
    """
    done = installed.container(["sh", "-euc", script])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIMULATED HOST (/tmp/host.json)" in done.stdout
    assert done.stdout.count("NVIDIA A100-SXM4-40GB") >= 2
    for package, version in DEBIAN_VERSIONS.items():
        assert f"{package} {version}-" in done.stdout
    assert "no system-wide pynvml" in done.stdout


def test_unit_enabled_and_files_in_place(installed: Overlay) -> None:
    """The unit is enabled; layout conffile, man page, state directory, drop-in, the shell
    completions, the reload unit (static: only its udev rule starts it) and that rule are in
    place."""
    script = """
        systemctl --root="$ROOT" is-enabled migrestore.service
        readlink "$ROOT/etc/systemd/system/multi-user.target.wants/migrestore.service"
        cat "$ROOT/var/lib/dpkg/info/migrestore.conffiles"
        systemctl --root="$ROOT" is-enabled migrestore-reload.service || true
        for path in usr/share/man/man8/migrestore.8.gz var/lib/migrestore \\
                usr/share/migrestore/gate-consumers.conf usr/lib/migrestore/vendor/pynvml.py \\
                usr/share/bash-completion/completions/migrestore \\
                usr/share/zsh/vendor-completions/_migrestore \\
                lib/udev/rules.d/90-migrestore-reload.rules \\
                lib/systemd/system/migrestore-reload.service; do
            test -e "$ROOT/$path" && echo "present $path"
        done
    """
    done = installed.shell(script)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "enabled",
        "/lib/systemd/system/migrestore.service",
        "/etc/migrestore/migrestore.toml",
        "static",
    ]
    assert len([line for line in lines if line.startswith("present ")]) == 8


def test_unit_verifies_in_installed_root(installed: Overlay) -> None:
    """systemd-analyze accepts the installed units (their ExecStart= binary exists in the root)."""
    units = ("migrestore.service", "migrestore-verify.service", "migrestore-verify.timer")
    paths = " ".join(f"/lib/systemd/system/{unit}" for unit in units)
    done = installed.shell(f'systemd-analyze verify --man=no --root="$ROOT" {paths}')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrestore" not in done.stderr


def test_drift_timer_shipped_but_not_enabled(installed: Overlay) -> None:
    """The drift timer and its service are installed; neither is enabled by the package."""
    done = installed.shell(
        'systemctl --root="$ROOT" is-enabled migrestore-verify.timer migrestore-verify.service\n'
        'ls -R "$ROOT/etc/systemd/system"'
    )
    lines = done.stdout.splitlines()
    assert lines[:2] == ["disabled", "static"], done.stdout + done.stderr
    assert "migrestore.service" in lines[2:]
    assert not [line for line in lines[2:] if "migrestore-verify" in line]


def test_an_enabled_drift_timer_stays_enabled_on_upgrade(
    installed: Overlay, builds: dict[str, Build]
) -> None:
    """An administrator's `systemctl enable` of the timer survives dpkg -i of a newer build."""
    enable = installed.shell('systemctl --root="$ROOT" enable migrestore-verify.timer')
    assert enable.returncode == 0, enable.stderr
    newer = builds["deb-2"].path
    upgrade = ["dpkg", "-i", f"/packages/{newer.name}"]
    done = installed.container(upgrade, {newer.parent: "/packages"})
    assert done.returncode == 0, done.stdout + done.stderr
    enabled = installed.shell('systemctl --root="$ROOT" is-enabled migrestore-verify.timer')
    assert enabled.stdout.strip() == "enabled"


def test_metrics_with_the_vendored_prometheus_client(installed: Overlay) -> None:
    """The packaged command writes the metrics file with the vendored prometheus_client."""
    script = """
        migrestore simulate init /tmp/host.json --gpu "NVIDIA H100 80GB HBM3:1" > /dev/null
        mkdir /tmp/node-exporter
        migrestore --simulate /tmp/host.json verify --metrics-dir /tmp/node-exporter
        cat /tmp/node-exporter/migrestore.prom
        python3 -c 'import prometheus_client' 2>/dev/null || echo "no system-wide prometheus_client"
    """
    done = installed.container(["sh", "-euc", script])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrestore_last_run_success 1.0" in done.stdout.splitlines()
    assert "no system-wide prometheus_client" in done.stdout


def test_shipped_layout_restores_nothing(installed: Overlay) -> None:
    """The shipped /etc/migrestore/migrestore.toml selects no GPU: plan has nothing to do."""
    script = """
        migrestore simulate init /tmp/host.json --gpu "NVIDIA H100 80GB HBM3:8" > /dev/null
        migrestore --simulate /tmp/host.json verify
    """
    done = installed.container(["sh", "-euc", script])
    assert done.returncode == 0, done.stdout + done.stderr


def test_bash_completes_the_verbs(installed: Overlay) -> None:
    """The installed bash completion registers for `migrestore` and offers its verbs."""
    script = (
        ". /usr/share/bash-completion/completions/migrestore\n"
        "complete -p migrestore\n"
        "COMP_WORDS=(migrestore ap); COMP_CWORD=1; COMP_LINE='migrestore ap'; COMP_POINT=13\n"
        '$(complete -p migrestore | sed -E "s/.*-F ([^ ]+) .*/\\1/") migrestore ap migrestore\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = installed.container(["bash", "-c", script])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].endswith(" migrestore")
    assert "apply" in done.stdout.splitlines()[1:]
