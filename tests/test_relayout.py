"""A live relayout: stop clients, change, device nodes, CDI refresh, then start, each awaited."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from migrestore import host as host_module
from migrestore import runs, simulator
from tests.fakes import FakeUnits

from .simhost import Host, Result
from .test_apply import OTHER

H100 = "NVIDIA H100 80GB HBM3"
CDI = "nvidia-cdi-refresh.service"
PLUGIN = "nvidia-device-plugin.service"
GFD = "gpu-feature-discovery.service"
DCGM = "nvidia-dcgm.service"

FIRST = """\
version = 1
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
  [[gpu.instance]]
  profile = "2g.20gb"
  placement = 0
"""

# Destroys both instances of FIRST and creates two others: the clients are stopped for it.
SECOND = OTHER

# FIRST plus one instance: only creates, nothing is stopped.
GROWN = FIRST + '  [[gpu.instance]]\n  profile = "1g.10gb"\n  placement = 2\n'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need mknod (root)")


class RecordingUnits(FakeUnits):
    """FakeUnits that also note which /dev/nvidia-caps nodes existed at each start."""

    def __init__(self, caps_dir: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.caps_dir = caps_dir
        self.nodes_at_start: list[tuple[tuple[str, ...], frozenset[str]]] = []

    def start(self, names: tuple[str, ...]) -> None:
        """Note the nodes, then start as FakeUnits does."""
        nodes = (
            frozenset(p.name for p in self.caps_dir.iterdir())
            if self.caps_dir.is_dir()
            else frozenset()
        )
        self.nodes_at_start.append((names, nodes))
        super().start(names)


class Rig:
    """A one-H100 simulated host with a sysroot (device nodes) and fake systemd units."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = tmp_path / "root"
        self.host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
        self.state_dir = tmp_path / "state"
        simulator.init_host(self.host.state, [(H100, 1)], sysroot=self.root)
        self.units = RecordingUnits(self.root / "dev/nvidia-caps")
        monkeypatch.setattr(host_module, "units", lambda ctx: self.units)

    def apply(self, layout: str, *flags: str) -> Result:
        """`apply` of `layout` with these flags, on the sysroot and our state directory."""
        self.host.write_layout(layout)
        common = ("--sysroot", str(self.root), "--state-dir", str(self.state_dir))
        return self.host.run(*common, "apply", *flags)

    def nodes(self) -> frozenset[str]:
        """The /dev/nvidia-caps nodes now."""
        return frozenset(p.name for p in (self.root / "dev/nvidia-caps").iterdir())

    def live(self, *running: str) -> None:
        """These units run (the CDI oneshot has run and exited); no call recorded yet."""
        self.units.states = {CDI: "inactive", **dict.fromkeys(running, "active")}
        self.units.calls.clear()
        self.units.nodes_at_start.clear()


@pytest.fixture(name="rig")
def fixture_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    """A host with FIRST applied (at first boot: nothing ran)."""
    rig = Rig(tmp_path, monkeypatch)
    assert rig.apply(FIRST, "--boot").code == 0
    return rig


def test_first_boot_restore_touches_no_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the first boot restore nothing runs: no stop, no start, no CDI rerun."""
    rig = Rig(tmp_path, monkeypatch)
    rig.units.states = {CDI: "inactive", PLUGIN: "inactive"}
    assert rig.apply(FIRST, "--boot").code == 0
    assert rig.units.calls == []
    assert len(rig.nodes()) == 4


@pytest.mark.parametrize("flags", [(), ("--boot",)], ids=["apply", "restart-migrestore"])
def test_relayout_starts_everything_after_the_nodes_and_the_cdi_refresh(
    rig: Rig, flags: tuple[str, ...]
) -> None:
    """Clients stopped, change, nodes made and stale ones removed, CDI rerun, clients in reverse."""
    rig.live(DCGM, PLUGIN, GFD)
    result = rig.apply(SECOND, *flags)
    assert result.code == 0, result.out + result.err
    assert rig.units.calls == [
        ("stop", (DCGM,)),
        ("stop", (PLUGIN,)),
        ("stop", (GFD,)),
        ("start", (CDI,)),
        ("start", (GFD, PLUGIN, DCGM)),
    ]
    new = rig.nodes()
    assert len(new) == 4  # two GIs with one CI each: nothing of FIRST's left over
    assert all(nodes == new for _, nodes in rig.units.nodes_at_start)
    assert rig.units.running == {DCGM, PLUGIN, GFD, CDI}


def test_stale_nodes_of_destroyed_instances_are_removed(rig: Rig) -> None:
    """After MIG is turned off no /dev/nvidia-caps node of the old instances is left."""
    assert rig.nodes()
    assert rig.apply('version = 1\n[[gpu]]\nselect = "all"\nmig = false\n').code == 0
    assert rig.nodes() == frozenset()


def test_creates_only_restart_running_consumers_after_the_cdi_refresh(rig: Rig) -> None:
    """Nothing is stopped for creates; the running plugin is restarted after CDI and the nodes,
    nvsm (a stop unit, not a refresh unit) is left alone."""
    rig.live(PLUGIN, "nvsm.service")
    assert rig.apply(GROWN).code == 0
    assert rig.units.calls == [("start", (CDI,)), ("stop", (PLUGIN,)), ("start", (PLUGIN,))]
    assert rig.units.nodes_at_start[-1][1] == rig.nodes()
    assert len(rig.nodes()) == 6


def test_a_client_that_fails_to_start_is_exit_1_named_and_recorded(rig: Rig) -> None:
    """A stopped client that will not start again: exit 1, named on stdout and in the record."""
    rig.live(DCGM, PLUGIN)
    rig.units.refuse_start = frozenset({DCGM})
    result = rig.apply(SECOND)
    assert result.code == 1
    assert f"FAILED: could not start GPU clients again: systemd refused to start {DCGM}" in (
        result.out
    )
    record = runs.last(rig.state_dir)
    assert record is not None
    assert record.result == "failed"
    assert any(DCGM in note for note in record.notes)


def test_a_refresh_that_fails_is_exit_1_and_not_all_ok(rig: Rig) -> None:
    """A running refresh unit that will not start again fails the run, and stdout says so."""
    rig.live(GFD)
    rig.units.refuse_start = frozenset({GFD})
    result = rig.apply(GROWN)
    assert result.code == 1
    assert (
        f"FAILED: refreshing MIG device consumers failed: could not refresh GPU consumers: {GFD}"
        in (result.out)
    )


def test_a_unit_that_will_not_stop_aborts_with_a_run_record(rig: Rig) -> None:
    """The abort is recorded as failed, naming the unit: `status` no longer shows the last "ok"."""
    rig.live(DCGM, PLUGIN)
    rig.units.refuse_stop = frozenset({PLUGIN})
    result = rig.apply(SECOND)
    assert result.code != 0
    assert rig.units.calls[-1] == ("start", (DCGM,))
    record = runs.last(rig.state_dir)
    assert record is not None
    assert record.result == "failed"
    assert record.notes == (f"aborted: systemd refused to stop {PLUGIN}",)
    status = rig.host.run("--state-dir", str(rig.state_dir), "status")
    assert f"failed ({rig.host.config}" in status.out
    assert f"aborted: systemd refused to stop {PLUGIN}" in status.out


def test_no_driver_at_boot_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An apply that cannot even open NVML leaves a failed record with the reason."""
    rig = Rig(tmp_path, monkeypatch)
    assert rig.apply(FIRST).code == 0
    simulator.inject_fault(rig.host.state, "nvmlInit", 1, "DriverNotLoaded")
    result = rig.apply(FIRST)
    assert result.code != 0
    record = runs.last(rig.state_dir)
    assert record is not None
    assert record.result == "failed"
    assert record.notes[0].startswith("aborted: ")


def test_a_failing_cdi_refresh_is_exit_1_and_named(rig: Rig) -> None:
    """A CDI refresh oneshot that fails: the clients still start, the run fails naming it."""
    rig.live(PLUGIN)
    rig.units.refuse_start = frozenset({CDI})
    result = rig.apply(SECOND)
    assert result.code == 1
    assert f"refreshing the CDI spec failed: systemd refused to start {CDI}" in result.out
    assert rig.units.running == {PLUGIN}


def test_apply_json_names_a_unit_that_did_not_start(rig: Rig) -> None:
    """`apply --json` carries the unit failure, not only the GPUs' "ok"."""
    rig.live(DCGM)
    rig.units.refuse_start = frozenset({DCGM})
    result = rig.apply(SECOND, "--json")
    assert result.code == 1
    document = json.loads(result.out)
    assert document["stopped_units"] == [DCGM]
    assert (
        document["unit_error"]
        == f"could not start GPU clients again: systemd refused to start {DCGM}"
    )
    assert all(gpu["ok"] for gpu in document["gpus"])


def test_units_a_killed_run_left_stopped_stay_noted_until_they_start(rig: Rig) -> None:
    """A note of units left stopped that will not start survives a run that stops nothing itself."""
    rig.live()
    rig.units.states[DCGM] = "inactive"
    rig.units.refuse_start = frozenset({DCGM})
    runs.remember_stopped(rig.state_dir, (DCGM,))
    assert rig.apply(SECOND).code == 1
    assert runs.left_stopped(rig.state_dir) == (DCGM,)


def refusing_check(tmp_path: Path, layout: str) -> str:
    """`layout` at version 2 with a pre-apply check that always refuses."""
    script = tmp_path / "site-check"
    script.write_text("#!/bin/sh\necho node is not drained\nexit 1\n")
    script.chmod(0o755)
    return layout.replace("version = 1", f'version = 2\n[restore]\npre-apply = ["{script}"]', 1)


def test_a_restart_on_a_running_host_asks_the_schedulers(rig: Rig, tmp_path: Path) -> None:
    """`apply --boot` while GPU clients run (`systemctl restart migrestore`) is a live change:
    the pre-apply check refuses it (exit 1) before any unit is stopped."""
    rig.live(DCGM, PLUGIN)
    refused = rig.apply(refusing_check(tmp_path, SECOND), "--boot")
    assert refused.code == 1, refused.out + refused.err
    assert "node is not drained" in refused.err
    assert not [call for call in rig.units.calls if call[0] == "stop"]


def test_the_first_boot_restore_asks_no_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the first restore nothing runs yet (the consumers are ordered after it): the check
    is not asked, and the layout is restored."""
    rig = Rig(tmp_path, monkeypatch)
    assert rig.apply(refusing_check(tmp_path, FIRST), "--boot").code == 0
