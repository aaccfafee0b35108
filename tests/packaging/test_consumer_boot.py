"""Debian 12 with the real Docker, containerd and Slurm packages and the .deb, booted by nspawn:
each daemon starts after migrestore's READY, and no unit makes an ordering cycle.

The daemons' own units are unchanged (Debian's docker.io, containerd and slurmd); only
migrestore.service's Before= orders them. slurmd gets a one-node slurm.conf (its unit has
ConditionPathExists= on it); Docker gets a daemon.json without iptables, IP forwarding or a
bridge (a container's /proc/sys is read-only) and the vfs storage driver (no overlay on overlay).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.booted_root import Boot, boot
from tests.packaging.debian_root import Overlay, cached_root
from tests.packaging.package_builds import deb_depends

pytestmark = [pytest.mark.packages, pytest.mark.nspawn]

ENGINES = ("docker", "containerd", "slurmd")
# procps: /bin/kill, which the daemons' ExecReload= name (systemd-analyze verify checks it).
PACKAGES = ("docker.io", "containerd", "slurmd", "procps")
UNIT_FILE = "/lib/systemd/system/migrestore.service"

SLURM_CONF = """\
ClusterName=boot-test
SlurmctldHost=localhost
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
NodeName=localhost CPUs=1 State=UNKNOWN
PartitionName=all Nodes=localhost Default=YES
"""
DOCKER_CONF = """\
{"iptables": false, "ip6tables": false, "ip-forward": false, "bridge": "none",
 "storage-driver": "vfs"}
"""

SCENARIO = f"""\
snapshot boot
for unit in {" ".join(ENGINES)}; do
    systemctl show "$unit.service" > "/results/$unit.show"
    systemctl show --value -p After "$unit.service" > "/results/$unit.after"
done
systemd-analyze verify --man=no {UNIT_FILE} \\
    {" ".join(f"/lib/systemd/system/{u}.service" for u in ENGINES)} > /results/analyze 2>&1 \\
    && echo 0 > /results/analyze.status || echo $? > /results/analyze.status
journalctl -b --no-pager -o cat | grep -i 'ordering cycle' > /results/cycles || true
"""


@pytest.fixture(scope="module", name="engines_boot")
def fixture_engines_boot(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    """The root with docker.io, containerd and slurmd, the .deb installed, booted once."""
    root = cached_root((*deb_depends(deb), *PACKAGES))
    overlay = Overlay.create(root, tmp_path_factory.mktemp("engines"))
    upper = overlay.base / "upper" / "etc"
    for path, text in {"slurm/slurm.conf": SLURM_CONF, "docker/daemon.json": DOCKER_CONF}.items():
        (upper / path).parent.mkdir(parents=True, exist_ok=True)
        (upper / path).write_text(text)
    return boot(overlay, deb, SCENARIO)


def show(booted: Boot, unit: str) -> dict[str, str]:
    """`systemctl show UNIT.service` as the scenario saved it."""
    lines = booted.text(f"{unit}.show").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_boot_restores_the_layout(engines_boot: Boot) -> None:
    """The root boots and migrestore.service restores and signals READY."""
    assert engines_boot.exit_status == 0, engines_boot.console[-3000:]
    unit = engines_boot.show("boot", "migrestore")
    assert (unit["ActiveState"], unit["Result"]) == ("active", "success")


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_is_ordered_after_the_restore(engines_boot: Boot, engine: str) -> None:
    """systemd orders the engine after migrestore.service (from our Before=)."""
    assert "migrestore.service" in engines_boot.text(f"{engine}.after").split()


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_starts_after_readiness(engines_boot: Boot, engine: str) -> None:
    """The engine's start job ran, and its process started, after migrestore became ready."""
    ready = int(engines_boot.show("boot", "migrestore")["ActiveEnterTimestampMonotonic"])
    assert ready > 0
    shown = show(engines_boot, engine)
    assert shown["LoadState"] == "loaded"
    assert int(shown["InactiveExitTimestampMonotonic"]) >= ready, shown.get("ActiveState")
    assert int(shown["ExecMainStartTimestampMonotonic"]) >= ready


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_runs(engines_boot: Boot, engine: str) -> None:
    """Each daemon is running at the end of the boot (ordering did not stop it)."""
    shown = show(engines_boot, engine)
    assert shown["ActiveState"] == "active", (shown.get("Result"), shown.get("ExecMainStatus"))


def test_no_ordering_cycle(engines_boot: Boot) -> None:
    """systemd-analyze verify accepts our unit with the engines' units, and the boot's journal
    reports no ordering cycle (systemd would have broken it by dropping a job)."""
    assert engines_boot.text("analyze.status").strip() == "0", engines_boot.text("analyze")
    assert "cycle" not in engines_boot.text("analyze")
    assert engines_boot.text("cycles") == ""
