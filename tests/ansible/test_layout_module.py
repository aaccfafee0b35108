"""migrestore.mig.layout run by real ansible-playbook (connection: local) on simulated hosts.

One rollout over four hosts, one at a time: two H100s (an old layout installed), an A100 whose
MIG mode change a driver client holds pending, an H100 whose NVML refuses to create instances,
and an H100 the rollout never reaches. It runs in check mode with --diff first, then for real,
then again on the hosts it converged. A second play verifies, and installs a layout migrestore
refuses; a third runs the README's playbook as written.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrestore import simulator
from tests.ansible.fleet import FleetHost, Play, ansible_playbook, fleet_host, inventory, play
from tests.simhost import H100

HERE = Path(__file__).resolve().parent
README = HERE.parent.parent / "README.md"
A100 = "NVIDIA A100-SXM4-80GB"
LAYOUT = """\
version = 1

[[gpu]]
select = "all"

  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
"""
MIG_OFF = 'version = 1\n\n[[gpu]]\nselect = "all"\nmig = false\n'
UNKNOWN_PROFILE = LAYOUT.replace("3g.40gb", "9g.1gb")
RENAMED_PROFILE = LAYOUT.replace("3g.40gb", "3g.41gb")  # resolved by geometry, with a warning
APPLY = "Install the layout and restore it"  # the module's task in rollout.yml
TASK = "Run the module"  # in refusals.yml
# Whole ansible-playbook runs (about 35 s): the full tier (./dev/test --all, CI), not the fast one.
pytestmark = pytest.mark.ansible


@dataclass(frozen=True)
class Rollout:
    """The fleet and what each of the three runs of the rollout playbook did."""

    hosts: dict[str, FleetHost]
    check: Play
    after_check: dict[str, tuple[str | None, int]]
    first: Play
    verify_after_first: dict[str, int]
    second: Play


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


@pytest.fixture(scope="module", name="rollout")
def fixture_rollout(tmp_path_factory: pytest.TempPathFactory) -> Rollout:
    """Four simulated hosts rolled out in check mode, for real, then again where it converged."""
    work = tmp_path_factory.mktemp("rollout")
    hosts = [
        fleet_host(work, "gpu1", (H100, 2)),
        fleet_host(work, "gpu2", (A100, 1)),
        fleet_host(work, "gpu3", (H100, 1)),
        fleet_host(work, "gpu4", (H100, 1)),
    ]
    hosts[0].sim.write_layout(MIG_OFF)
    simulator.attach(hosts[1].sim.state, 0, "nv-hostengine")
    simulator.inject_fault(
        hosts[2].sim.state, "nvmlDeviceCreateGpuInstanceWithPlacement", 1, "NoPermission"
    )
    inventory(work / "inventory.json", hosts)
    (work / "migrestore.toml").write_text(LAYOUT)
    shutil.copy(HERE / "rollout.yml", work)
    args = ("-i", "inventory.json", "rollout.yml")
    check = play(work, *args, "--check", "--diff")
    after_check = {h.name: (_text(h.sim.config), h.mutations()) for h in hosts}
    first = play(work, *args)
    verify_after_first = {h.name: h.verify() for h in hosts}
    second = play(work, *args, "--limit", "gpu1,gpu2")
    return Rollout(
        {h.name: h for h in hosts}, check, after_check, first, verify_after_first, second
    )


def test_check_mode_reports_changes_and_touches_nothing(rollout: Rollout) -> None:
    """--check: every host would change; no layout file is written and no GPU is touched."""
    assert rollout.check.code == 0, rollout.check.out
    results = rollout.check.results(APPLY)
    assert sorted(results) == ["gpu1", "gpu2", "gpu3", "gpu4"]
    for result in results.values():
        assert (result["changed"], result["layout_changed"]) == (True, True)
        assert not result["plan"]["in_sync"]
        assert "apply" not in result
        assert "verify" not in result
    assert rollout.after_check == {
        "gpu1": (MIG_OFF, 0),
        "gpu2": (None, 0),
        "gpu3": (None, 0),
        "gpu4": (None, 0),
    }


def test_diff_shows_old_and_new_layout_and_the_planned_steps(rollout: Rollout) -> None:
    """--diff: the layout file's lines removed and added, then each GPU's planned steps."""
    out = rollout.check.out
    assert re.search(r"^-mig = false$", out, re.MULTILINE), out
    assert re.search(r'^\+  profile = "3g.40gb"$', out, re.MULTILINE), out
    assert "migrestore plan:" in out
    assert re.search(r"GPU 1 \(NVIDIA H100 80GB HBM3, GPU-\S+\): 3 step\(s\)", out), out
    assert "1. enable MIG mode" in out
    assert "2. reset the GPU to apply the pending MIG mode" in out


def test_rollout_stops_at_the_failing_host(rollout: Rollout) -> None:
    """serial: 1 and max_fail_percentage: 0: the host after the failing one is never touched."""
    recap = rollout.first.recap()
    assert rollout.first.code == 2, rollout.first.out
    assert list(recap) == ["gpu1", "gpu2", "gpu3"], rollout.first.out
    assert [recap[name]["failed"] for name in recap] == [0, 0, 1]
    gpu4 = rollout.hosts["gpu4"]
    assert "gpu4" not in rollout.first.results(APPLY)
    assert (_text(gpu4.sim.config), gpu4.mutations()) == (None, 0)


def test_failing_host_fails_with_migrestores_message(rollout: Rollout) -> None:
    """Exit 1 of apply fails the host with the GPU's failed step and the NVML error."""
    result = rollout.first.results(APPLY)["gpu3"]
    assert rollout.first.statuses(APPLY)["gpu3"] == "fatal"
    assert result["rc"] == 1
    assert result["msg"].startswith("migrestore apply exited 1: GPU-"), result["msg"]
    assert "create 3g.40gb at 4: " in result["msg"]
    assert "NVML NoPermission" in result["msg"]
    assert rollout.verify_after_first["gpu3"] == 3


def test_applied_host_is_in_its_layout_and_returns_the_verify_document(rollout: Rollout) -> None:
    """The layout is installed (the old one backed up), applied, and verify's document returned."""
    gpu1 = rollout.hosts["gpu1"]
    result = rollout.first.results(APPLY)["gpu1"]
    assert (result["changed"], result["layout_changed"], result["reboot_required"]) == (
        True,
        True,
        False,
    )
    assert result["apply"]["in_sync"]
    assert result["verify"]["in_sync"]
    assert result["verify"]["simulated"]
    assert [gpu["steps"] for gpu in result["verify"]["gpus"]] == [[], []]
    assert gpu1.sim.config.read_text() == LAYOUT
    assert Path(result["backup_file"]).read_text() == MIG_OFF
    assert (gpu1.state_dir / "last-run.json").is_file()
    assert rollout.verify_after_first["gpu1"] == 0


def test_new_layout_file_is_installed_readable_by_all_writable_by_root(rollout: Rollout) -> None:
    """A layout file the module creates has mode 0644, as migrestore demands of it."""
    assert rollout.hosts["gpu2"].sim.config.stat().st_mode & 0o777 == 0o644


def test_reset_pending_host_is_changed_needs_a_reboot_and_is_restored(rollout: Rollout) -> None:
    """Exit 4 is a change with reboot_required: the play reboots the host, which then verifies."""
    result = rollout.first.results(APPLY)["gpu2"]
    assert (result["changed"], result["reboot_required"]) == (True, True)
    assert result["verify"]["reset_pending"]
    assert rollout.first.recap()["gpu2"] == {"ok": 3, "changed": 2, "failed": 0}
    assert rollout.verify_after_first["gpu2"] == 0


def test_second_run_changes_nothing(rollout: Rollout) -> None:
    """Run again on the converged hosts: no change, no apply, the verify document in sync."""
    assert rollout.second.code == 0, rollout.second.out
    assert rollout.second.recap() == {
        "gpu1": {"ok": 1, "changed": 0, "failed": 0},
        "gpu2": {"ok": 1, "changed": 0, "failed": 0},
    }
    results = rollout.second.results(APPLY)
    assert sorted(results) == ["gpu1", "gpu2"]
    for result in results.values():
        assert (result["changed"], result["layout_changed"], result["reboot_required"]) == (
            False,
            False,
            False,
        )
        assert "apply" not in result
        assert result["verify"]["in_sync"]


@pytest.fixture(scope="module", name="refusals")
def fixture_refusals(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, FleetHost], Play]:
    """A drifted and a pending host verified; layouts that cannot fit, or fit with a warning."""
    work = tmp_path_factory.mktemp("refusals")
    hosts = {
        "drifted": fleet_host(work, "drifted", (H100, 1)),
        "pending": fleet_host(work, "pending", (A100, 1)),
        "misfit": fleet_host(work, "misfit", (H100, 1)),
        "renamed": fleet_host(work, "renamed", (H100, 1)),
    }
    hosts["drifted"].sim.write_layout(LAYOUT)
    hosts["pending"].sim.write_layout(LAYOUT)
    simulator.attach(hosts["pending"].sim.state, 0, "nv-hostengine")
    assert hosts["pending"].sim.run("apply").code == 4
    hosts["misfit"].sim.write_layout(MIG_OFF)
    inventory(
        work / "inventory.json",
        list(hosts.values()),
        {
            "drifted": {"layout_state": "verified"},
            "pending": {"layout_state": "verified"},
            "misfit": {"layout_state": "applied", "layout_content": UNKNOWN_PROFILE},
            "renamed": {"layout_state": "applied", "layout_content": RENAMED_PROFILE},
        },
    )
    shutil.copy(HERE / "refusals.yml", work)
    return hosts, play(work, "-i", "inventory.json", "refusals.yml")


def test_drift_fails_verified_with_the_steps_still_to_do(
    refusals: tuple[dict[str, FleetHost], Play],
) -> None:
    """state=verified on a host that drifted (exit 3) fails, naming what differs."""
    result = refusals[1].results(TASK)["drifted"]
    assert refusals[1].statuses(TASK)["drifted"] == "fatal"
    assert (result["changed"], result["rc"]) == (False, 3)
    assert result["msg"] == (
        "migrestore verify exited 3: GPU 0 (NVIDIA H100 80GB HBM3): enable MIG mode, "
        "create 3g.40gb at 4, create compute instance 3g.40gb at 0 in 3g.40gb at 4"
    )


def test_migrestores_warnings_become_ansibles(refusals: tuple[dict[str, FleetHost], Play]) -> None:
    """migrestore's warning (a renamed profile) is the task's, once for plan, apply and verify."""
    hosts, done = refusals
    assert done.statuses(TASK)["renamed"] == "changed"
    assert hosts["renamed"].verify() == 0
    out = " ".join(done.out.split())  # Ansible wraps warnings at 80 columns
    assert out.count("[WARNING]: migrestore: profile_renamed detail=") == 1, done.out
    assert '"3g.41gb" is called "3g.40gb" by this driver on GPU 0' in out


def test_pending_reset_passes_verified_with_reboot_required(
    refusals: tuple[dict[str, FleetHost], Play],
) -> None:
    """state=verified on a host waiting for a reset (exit 4): not failed, reboot_required."""
    result = refusals[1].results(TASK)["pending"]
    assert refusals[1].statuses(TASK)["pending"] == "ok"
    assert (result["changed"], result["reboot_required"]) == (False, True)
    assert result["verify"]["reset_pending"]


def test_layout_that_does_not_fit_is_refused_before_it_is_installed(
    refusals: tuple[dict[str, FleetHost], Play],
) -> None:
    """A layout error (exit 2 of plan) fails the host, its layout file and GPUs untouched."""
    hosts, done = refusals
    result = done.results(TASK)["misfit"]
    assert done.statuses(TASK)["misfit"] == "fatal"
    assert (result["changed"], result["rc"]) == (False, 2)
    message = result["msg"]
    assert message.startswith("migrestore plan exited 2: the given layout: gpu[0].instance[0]")
    assert 'unknown profile "9g.1gb" for NVIDIA H100 80GB HBM3' in message
    assert message.endswith("; nothing was installed or changed")
    assert hosts["misfit"].sim.config.read_text() == MIG_OFF
    assert hosts["misfit"].mutations() == 0
    assert done.recap()["misfit"]["failed"] == 1


def _readme_playbook() -> str:
    """The fenced YAML block after the README's `<!-- ansible-playbook -->` marker."""
    match = re.search(
        r"<!-- ansible-playbook -->\s*```yaml\n(.*?)\n```", README.read_text(), re.DOTALL
    )
    assert match, "the README lost its Ansible playbook"
    return match.group(1)


def test_readme_playbook_restores_a_simulated_host(tmp_path: Path) -> None:
    """The README's playbook, as written, installs and restores the layout on an H100 host."""
    host = fleet_host(tmp_path, "gpu1", (H100, 2))
    inventory(tmp_path / "inventory.json", [host])
    (tmp_path / "playbook.yml").write_text(_readme_playbook())
    (tmp_path / "migrestore.toml").write_text(LAYOUT)
    done = ansible_playbook(tmp_path, "-i", "inventory.json", "playbook.yml", env=host.environment)
    assert done.code == 0, done.out + done.err
    assert Play(done.code, done.out).recap() == {"gpu1": {"ok": 1, "changed": 1, "failed": 0}}
    assert host.sim.config.read_text() == LAYOUT
    assert host.verify() == 0
