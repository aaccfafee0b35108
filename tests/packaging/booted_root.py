"""The .deb in the Debian root with a simulated 8-GPU host and fake GPU consumers, booted by nspawn.

Setup, in the root before it boots: install the package, create the simulated host in
/var/lib/migrestore-sim, write the layout to /etc/migrestore/migrestore.toml (an edited conffile),
point migrestore.service at the simulated host with the drop-in simulate.conf, and install fake
nvsm, nvidia-dcgm and kubelet units (plain units, no ordering of their own) that record whether
`migrestore --simulate STATE verify` exits 0 when they start. A collector unit waits until the boot
has finished, runs the scenario's script (which calls `snapshot NAME` to save what the tests read
into /results/NAME) and ends the boot with `systemctl exit 0`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.packaging.debian_root import Overlay

SIM_STATE = "/var/lib/migrestore-sim/host.json"
GPU_MODEL = "NVIDIA H100 80GB HBM3"
GPU_COUNT = 8
CONSUMERS = ("nvsm", "nvidia-dcgm", "kubelet")
UNITS = ("migrestore", *CONSUMERS)

LAYOUT = """\
# Edited by the operator: every GPU cut into one 3g, one 2g and two 1g instances.
version = 1

[[gpu]]
select = "all"
mig = true
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
  [[gpu.instance]]
  profile = "2g.20gb"
  placement = 0
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 2
"""

# The simulated host lives outside the package's state directory (purge must not take it), so the
# unit may write there; its run records go to the real state directory.
SIMULATE_DROP_IN = f"""\
[Service]
Environment=MIGRESTORE_SIMULATE={SIM_STATE} MIGRESTORE_STATE_DIR=/var/lib/migrestore
ReadWritePaths=/var/lib/migrestore-sim
"""

CONSUMER_SCRIPT = f"""\
#!/bin/sh
# consumer NAME: a GPU consumer starting; did it find the layout restored?
migrestore --simulate {SIM_STATE} verify > /dev/null 2>&1 && status=0 || status=$?
echo "$1 verify=$status" >> /results/consumers
"""

CONSUMER_UNIT = """\
[Unit]
Description=Fake {name} (a GPU consumer) for the boot test

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/boot-test/consumer {name}

[Install]
WantedBy=multi-user.target
"""

# Type=simple: the boot finishes while it waits, so systemd-analyze can describe the boot.
COLLECTOR_UNIT = """\
[Unit]
Description=Run the test scenario once the boot has finished, then leave
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/lib/boot-test/collect

[Install]
WantedBy=multi-user.target
"""

COLLECT_SCRIPT = """\
#!/bin/sh
# Wait for the end of the boot, run the scenario, end the boot (nspawn exits with status 0).
systemctl is-system-running --wait > /dev/null
. /usr/local/lib/boot-test/snapshot.sh
. /usr/local/lib/boot-test/scenario
systemctl exit 0
"""

SNAPSHOT_FUNCTION = f"""\
# snapshot NAME: save the units, journal, files and GPU layout the tests compare to /results/NAME.
snapshot() {{
    dir=/results/$1
    mkdir -p "$dir"
    for unit in {" ".join(UNITS)}; do
        systemctl show "$unit.service" > "$dir/$unit.show"
        systemctl is-enabled "$unit.service" > "$dir/$unit.enabled" 2>&1 || true
    done
    systemctl show --value -p After kubelet.service > "$dir/kubelet.after"
    journalctl -b -u migrestore.service --no-pager -o short-monotonic > "$dir/migrestore.journal"
    journalctl -b -u migrestore.service --no-pager -o json > "$dir/migrestore.journal.json"
    systemd-analyze critical-chain kubelet.service > "$dir/critical-chain" 2>&1 || true
    ls -A /etc/systemd/system/multi-user.target.wants > "$dir/wants" 2>&1 || true
    ls -A /var/lib/migrestore > "$dir/state-dir" 2>&1 || echo absent > "$dir/state-dir"
    ls -A /etc/migrestore > "$dir/etc-dir" 2>&1 || echo absent > "$dir/etc-dir"
    cat /etc/migrestore/migrestore.toml > "$dir/layout" 2>&1 || true
    wc -l < /var/lib/migrestore/runs.jsonl > "$dir/runs" 2>&1 || true
    cat /var/lib/migrestore/last-run.json > "$dir/last-run.json" 2>&1 || true
    dpkg-query -W -f '${{Version}} ${{db:Status-Abbrev}}' migrestore > "$dir/dpkg" 2>&1 || true
    migrestore --simulate {SIM_STATE} status --json > "$dir/status.json" 2>&1 || true
}}
"""

SETUP_SCRIPT = f"""\
set -eu
if [ -n "${{WITH_APT:-}}" ]; then
    # As a user would: apt resolves the .deb's Depends from the archive.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        /packages/"$DEB" > /dev/null
else
    dpkg -i /packages/"$DEB" > /dev/null
fi
mkdir -p /var/lib/migrestore-sim /usr/local/lib/boot-test /etc/systemd/system/migrestore.service.d
migrestore simulate init {SIM_STATE} --gpu "{GPU_MODEL}:{GPU_COUNT}" > /dev/null
install -m 0644 /assets/layout.toml /etc/migrestore/migrestore.toml
install -m 0644 /assets/simulate.conf /etc/systemd/system/migrestore.service.d/simulate.conf
install -m 0755 /assets/consumer /assets/collect /usr/local/lib/boot-test/
install -m 0644 /assets/snapshot.sh /assets/scenario /usr/local/lib/boot-test/
for unit in /assets/units/*; do
    install -m 0644 "$unit" /etc/systemd/system/
    systemctl enable "$(basename "$unit")" 2> /dev/null
done
"""


def write_assets(directory: Path, scenario: str) -> None:
    """The files the setup script installs, and the scenario the collector runs."""
    units = directory / "units"
    units.mkdir(parents=True)
    for name in CONSUMERS:
        (units / f"{name}.service").write_text(CONSUMER_UNIT.format(name=name))
    (units / "boot-test-collect.service").write_text(COLLECTOR_UNIT)
    files = {
        "layout.toml": LAYOUT,
        "simulate.conf": SIMULATE_DROP_IN,
        "consumer": CONSUMER_SCRIPT,
        "collect": COLLECT_SCRIPT,
        "snapshot.sh": SNAPSHOT_FUNCTION,
        "setup": SETUP_SCRIPT,
        "scenario": scenario,
    }
    for name, text in files.items():
        (directory / name).write_text(text)


@dataclass(frozen=True)
class Boot:
    """What one boot left in /results."""

    exit_status: int
    results: Path
    console: str

    def text(self, name: str) -> str:
        """A result file's text ("" when the scenario did not write it)."""
        path = self.results / name
        return path.read_text() if path.exists() else ""

    def show(self, phase: str, unit: str) -> dict[str, str]:
        """`systemctl show UNIT.service` as saved by `snapshot PHASE`."""
        lines = self.text(f"{phase}/{unit}.show").splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def status(self, phase: str) -> Any:
        """`migrestore status --json` of the simulated host as saved by `snapshot PHASE`."""
        return json.loads(self.text(f"{phase}/status.json"))

    def consumers(self) -> dict[str, int]:
        """Each fake consumer's `verify` exit status at its start."""
        pairs = (line.split(" verify=") for line in self.text("consumers").splitlines())
        return {name: int(status) for name, status in pairs}


def boot(
    overlay: Overlay,
    deb: Path,
    scenario: str,
    extra: Mapping[Path, str] | None = None,
    init_args: tuple[str, ...] = (),
    with_apt: bool = False,
) -> Boot:
    """Install `deb` (dpkg -i, or apt with its Depends) and the test units, boot once."""
    assets, results = overlay.base / "assets", overlay.base / "results"
    write_assets(assets, scenario)
    results.mkdir()
    binds = {deb.parent: "/packages", assets: "/assets", **(extra or {})}
    setup = ["env", f"DEB={deb.name}", f"WITH_APT={'yes' if with_apt else ''}"]
    setup += ["sh", "/assets/setup"]
    done = overlay.container(setup, binds, timeout=600.0)
    if done.returncode != 0:
        raise AssertionError(f"setup failed ({done.returncode}): {done.stdout}{done.stderr}")
    console = overlay.base / "console"
    status = overlay.boot(console, results, binds, init_args)
    return Boot(status, results, console.read_text(errors="replace"))
