"""Simulated GPU hosts as an Ansible inventory, and ansible-playbook run against them.

Every inventory host is this machine (`connection: local`); its `migrestore_environment` host
variable points migrestore at its own simulated host, layout file, state and run directories.
ansible-playbook runs with a configuration of its own, so nothing of ~/.ansible or
/etc/ansible is read or written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore import simulator
from tests.simhost import Host, Result, mutations

ROOT = Path(__file__).resolve().parent.parent.parent
COLLECTIONS = ROOT / "ansible"
BIN = Path(sys.executable).parent  # ansible-playbook and migrestore, installed by dev/setup
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+"
    r"failed=(?P<failed>\d+)",
    re.MULTILINE,
)
TASK = re.compile(r"^TASK \[(?P<task>.*)\] \**$")
RESULT = re.compile(
    r"^(?P<status>ok|changed|fatal): \[(?P<host>[^\]]+)\](?:: FAILED!)? => (?P<result>\{.*\})$"
)
CONFIG = """\
[defaults]
home = {work}/ansible-home
local_tmp = {work}/ansible-home/tmp
remote_tmp = {work}/ansible-home/remote
collections_path = {collections}
interpreter_python = {python}
stdout_callback = default
callback_result_format = json
nocolor = true
retry_files_enabled = false
localhost_warning = false
"""


@dataclass(frozen=True)
class FleetHost:
    """One inventory host: a simulated GPU host with its own files."""

    name: str
    directory: Path

    @property
    def sim(self) -> Host:
        """The simulated host and its layout file, for running migrestore directly."""
        return Host(self.directory / "host.json", self.directory / "etc" / "migrestore.toml")

    @property
    def state_dir(self) -> Path:
        """Where migrestore keeps this host's run records."""
        return self.directory / "lib"

    @property
    def environment(self) -> dict[str, str]:
        """The MIGRESTORE_* variables that point migrestore at this host's files."""
        return {
            "MIGRESTORE_SIMULATE": str(self.sim.state),
            "MIGRESTORE_CONFIG": str(self.sim.config),
            "MIGRESTORE_STATE_DIR": str(self.state_dir),
            "MIGRESTORE_RUN_DIR": str(self.directory / "run"),
        }

    def verify(self) -> int:
        """`migrestore verify` against the installed layout file: 0, 3 or 4."""
        return self.sim.run("verify").code

    def mutations(self) -> int:
        """Mutating NVML calls made on this simulated host so far."""
        return mutations(simulator.counters(self.sim.state))


@dataclass(frozen=True)
class Play:
    """What one ansible-playbook run (-v, the default callback) printed."""

    code: int
    out: str

    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP line of each host that ran: ok, changed and failed task counts."""
        return {
            m["host"]: {key: int(m[key]) for key in ("ok", "changed", "failed")}
            for m in RECAP.finditer(self.out)
        }

    def results(self, task: str) -> dict[str, dict[str, Any]]:
        """Each host's result of the task of this name, as the callback printed it."""
        return {host: result for host, (_, result) in self._lines(task).items()}

    def statuses(self, task: str) -> dict[str, str]:
        """Each host's verdict on the task of this name: ok, changed or fatal."""
        return {host: status for host, (status, _) in self._lines(task).items()}

    def _lines(self, task: str) -> dict[str, tuple[str, dict[str, Any]]]:
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        current = ""
        for line in self.out.splitlines():
            banner = TASK.match(line)
            if banner:
                current = banner["task"]
            result = RESULT.match(line)
            if result and current == task:
                found[result["host"]] = (result["status"], json.loads(result["result"]))
        return found


def fleet_host(directory: Path, name: str, *gpus: tuple[str, int]) -> FleetHost:
    """A new simulated host with these (model, count) GPUs, MIG off and no layout file."""
    host = FleetHost(name, directory / name)
    host.sim.config.parent.mkdir(parents=True)
    simulator.init_host(host.sim.state, list(gpus))
    return host


def inventory(
    path: Path, hosts: list[FleetHost], host_vars: dict[str, dict[str, object]] | None = None
) -> Path:
    """An inventory of the group gpu_nodes, in this order, every host local and not become."""
    more = host_vars or {}
    group = {
        "hosts": {
            h.name: {"migrestore_environment": h.environment, **more.get(h.name, {})} for h in hosts
        },
        "vars": {"ansible_connection": "local", "ansible_become": False},
    }
    path.write_text(json.dumps({"gpu_nodes": group}, indent=2))
    return path


def ansible_playbook(work: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ansible-playbook in `work` with its own configuration and this checkout's collection."""
    config = work / "ansible.cfg"
    config.write_text(CONFIG.format(work=work, collections=COLLECTIONS, python=sys.executable))
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANSIBLE_", "MIGRESTORE_"))
    }
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
        env={
            **clean,
            "ANSIBLE_CONFIG": str(config),
            "LC_ALL": "C.UTF-8",  # ansible-core refuses to run under a locale that is not UTF-8
            "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', os.defpath)}",
            **(env or {}),
        },
        timeout=300,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def play(work: Path, *args: str, env: dict[str, str] | None = None) -> Play:
    """Run a playbook verbosely enough that the callback prints every task's result."""
    done = ansible_playbook(work, "-v", *args, env=env)
    return Play(done.code, done.out + done.err)
