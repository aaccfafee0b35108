"""`apply` on simulated hosts: restores exactly, minimally, per GPU, and converges after faults."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from migrestore import simulator

from .simhost import Host, make_host, mutations

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"

LAYOUT = """\
version = 1
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
  compute = ["2c.3g.40gb", "1c.3g.40gb"]
  [[gpu.instance]]
  profile = "2g.20gb"
  placement = 0
  [[gpu.instance]]
  profile = "1g.10gb"
  placement = 2
"""

OTHER = """\
version = 1
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "4g.40gb"
  placement = 0
  [[gpu.instance]]
  profile = "1g.10gb"
  placement = 4
"""


def gi_ids(host: Host) -> list[list[tuple[str, int, int]]]:
    """(profile, start, GI id) per GPU, from `status --json`."""
    status = json.loads(host.run("status", "--json").out)
    return [
        [(i["profile"], i["placement"]["start"], i["id"]) for i in g["instances"]]
        for g in status["gpus"]
    ]


def test_restore_from_mig_off_is_exact(tmp_path: Path) -> None:
    """Hopper with MIG off gets mode and layout; GI ids follow the placements; verify is 0."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    result = host.run("apply")
    assert result.code == 0, result.err
    assert host.run("verify").code == 0
    assert gi_ids(host) == [[("2g.20gb", 0, 3), ("1g.10gb", 2, 9), ("3g.40gb", 4, 2)]] * 2
    assert mutations(host.counters()) == 2 * (1 + 3 + 4)


def test_second_apply_makes_no_mutating_call(tmp_path: Path) -> None:
    """Idempotent: right after a successful apply, another one changes nothing."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    assert host.run("apply").code == 0
    simulator.reset_counters(host.state)
    again = host.run("apply")
    assert again.code == 0
    assert mutations(host.counters()) == 0
    assert "already in layout" in again.out


def test_one_differing_instance_is_replaced_alone(tmp_path: Path) -> None:
    """A GPU differing by one instance loses and regains only that instance (4 calls)."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    assert host.run("apply").code == 0
    changed = LAYOUT.replace(
        'profile = "1g.10gb"\n  placement = 2', 'profile = "1g.10gb"\n  placement = 3'
    )
    host.write_layout(changed)
    simulator.reset_counters(host.state)
    assert host.run("apply").code == 0
    counts = host.counters()
    assert mutations(counts) == 2 * 4
    assert counts.get("nvmlGpuInstanceDestroy") == 2
    assert counts.get("nvmlDeviceCreateGpuInstanceWithPlacement") == 2


def test_reboot_then_apply_gives_the_same_mig_device_uuids(tmp_path: Path) -> None:
    """MIG device UUIDs after reboot + apply equal those before the reboot."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    assert host.run("apply").code == 0
    before = json.loads(host.run("status", "--json").out)["gpus"]
    simulator.reboot(host.state)
    assert host.run("verify").code == 3
    assert host.run("apply").code == 0
    assert json.loads(host.run("status", "--json").out)["gpus"] == before
    assert "MIG device UUIDs changed" not in host.run("status").out


def test_from_another_layout(tmp_path: Path) -> None:
    """A host holding another layout is taken to this one; verify exits 0."""
    host = make_host(tmp_path, (H100, 1), layout=OTHER)
    assert host.run("apply").code == 0
    host.write_layout(LAYOUT)
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0


def test_ampere_client_blocks_reset_then_detach_completes(tmp_path: Path) -> None:
    """Ampere with a client: mode stays pending, apply names it, exits 4; detached, it completes."""
    host = make_host(tmp_path, (A100, 2), layout=LAYOUT)
    simulator.attach(host.state, 1, "nv-hostengine")
    blocked = host.run("apply")
    assert blocked.code == 4
    assert "nv-hostengine" in blocked.out
    assert "GPU 0 (NVIDIA A100-SXM4-80GB, 00000000:07:00.0): ok" in blocked.out
    assert host.run("verify").code == 4
    simulator.detach(host.state, 1, "nv-hostengine")
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0


def test_ampere_mode_survives_reboot(tmp_path: Path) -> None:
    """After a reboot Ampere keeps MIG mode: apply recreates instances with no mode change."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    assert host.run("apply").code == 0
    simulator.reboot(host.state)
    simulator.reset_counters(host.state)
    assert host.run("apply").code == 0
    assert host.counters().get("nvmlDeviceSetMigMode", 0) == 0


def test_busy_instance_is_refused_saying_its_processes_must_end(tmp_path: Path) -> None:
    """An instance with a process is not destroyed; the error names the process and says it must
    end first, never to use --force (NVML refuses InUse with it too)."""
    host = make_host(tmp_path, (H100, 1), layout=OTHER)
    assert host.run("apply").code == 0
    simulator.attach(host.state, 0, "train.py", gi_id=1, ci_id=0, pid=4242)
    host.write_layout(LAYOUT)
    refused = host.run("apply")
    assert refused.code == 1
    assert "train.py (pid 4242)" in refused.out
    assert "the processes must end first" in refused.out
    assert "use --force" not in refused.out
    assert gi_ids(host)[0][0] == ("4g.40gb", 0, 1)


def test_busy_instance_names_the_unit_of_its_process(tmp_path: Path) -> None:
    """With a /proc that tells the process's cgroup, the refusal names its unit to stop."""
    root = tmp_path / "root"
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    simulator.init_host(host.state, [(H100, 1)], sysroot=root)
    host.write_layout(OTHER)
    assert host.run("apply").code == 0
    simulator.attach(host.state, 0, "train.py", gi_id=1, ci_id=0, pid=4242)
    assert (root / "proc/4242").is_dir()  # the simulator lays out the process
    (root / "proc/4242/cgroup").write_text("0::/system.slice/trainer.service\n")
    host.write_layout(LAYOUT)
    refused = host.run("--sysroot", str(root), "apply")
    assert refused.code == 1
    assert "train.py (pid 4242) in trainer.service" in refused.out
    assert "stop trainer.service (or let the processes end) first" in refused.out


def test_forced_destroy_of_a_busy_instance_says_the_processes_must_end(tmp_path: Path) -> None:
    """--force goes ahead; NVML refuses InUse and the failure says the processes must end."""
    host = make_host(tmp_path, (H100, 1), layout=OTHER)
    assert host.run("apply").code == 0
    simulator.attach(host.state, 0, "train.py", gi_id=1, ci_id=0, pid=4242)
    host.write_layout(LAYOUT)
    forced = host.run("apply", "--force")
    assert forced.code == 1
    assert "processes still run on it: they must end first" in forced.out
    assert gi_ids(host)[0][0] == ("4g.40gb", 0, 1)


def test_missing_gpu_is_reported_and_others_restored(tmp_path: Path) -> None:
    """A uuid entry naming an absent GPU: the other GPUs are restored, exit 1, the GPU is named."""
    host = make_host(tmp_path, (H100, 1))
    layout = (
        LAYOUT
        + '[[gpu]]\nselect = { uuid = "GPU-00000000-dead-beef-0000-000000000000" }\nmig = false\n'
    )
    host.write_layout(layout)
    result = host.run("apply")
    assert result.code == 1
    assert "GPU-00000000-dead-beef-0000-000000000000" in result.out
    planned = host.run("plan", "--json")
    assert planned.code == 1  # the missing GPU cannot be planned, as apply failed on it
    assert json.loads(planned.out)["gpus"][0]["steps"] == []


def test_bad_layout_touches_nothing(tmp_path: Path) -> None:
    """An impossible layout is exit 2 with one line, and no NVML call changes anything."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT.replace("placement = 0", "placement = 4"))
    result = host.run("apply")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "overlaps" in result.err
    assert mutations(host.counters()) == 0


def test_insecure_layout_file_is_refused(tmp_path: Path) -> None:
    """On a real host a world-writable layout file is refused before NVML is touched."""
    config = tmp_path / "layout.toml"
    config.write_text("version = 1\n")
    config.chmod(0o666)
    from migrestore import cli

    assert (
        cli.main(
            [
                "--config",
                str(config),
                "--state-dir",
                str(tmp_path),
                "--run-dir",
                str(tmp_path),
                "verify",
            ]
        )
        == 2
    )


def test_concurrent_apply_waits_on_the_lock(tmp_path: Path) -> None:
    """A second apply while one holds the lock waits, then fails clearly if it is not released."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    from migrestore import runs

    run_dir = Path(f"{host.state}.run")
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with runs.locked(run_dir, 1.0):
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    try:
        started = time.monotonic()
        blocked = host.spawn("apply", "--lock-wait", "1.5")
    finally:
        release.set()
        thread.join()
    assert blocked.code == 1
    assert "another migrestore run" in blocked.err
    assert time.monotonic() - started >= 1
    assert host.run("apply").code == 0


@pytest.mark.parametrize(
    "function",
    [
        "nvmlDeviceSetMigMode",
        "nvmlDeviceCreateGpuInstanceWithPlacement",
        "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
        "nvmlComputeInstanceDestroy",
        "nvmlGpuInstanceDestroy",
    ],
)
@pytest.mark.parametrize(
    "error", ["InUse", "InsufficientResources", "NoPermission", "Unknown", "GpuIsLost", "Timeout"]
)
def test_fault_in_any_mutating_call_is_isolated_and_rerun_converges(
    tmp_path: Path, function: str, error: str
) -> None:
    """A mutating call fails: the error names it, the other GPU completes, a rerun converges."""
    host = make_host(tmp_path, (H100, 2))
    # GPU 0 starts from MIG off, GPU 1 from another layout: together they need every mutating call.
    _gpu1_other_layout(host)
    host.write_layout(LAYOUT)
    simulator.inject_fault(host.state, function, 1, error)
    failed = host.run("apply")
    assert failed.code == 1, failed.out + failed.err
    assert "FAILED" in failed.out
    assert f"NVML {error} (error " in failed.out
    plan = json.loads(host.run("plan", "--json").out)
    assert sum(1 for g in plan["gpus"] if g["steps"]) == 1
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0


def _gpu1_other_layout(host: Host) -> None:
    """Put OTHER on GPU 1 only, leave GPU 0 with MIG off."""
    uuid = json.loads(host.run("status", "--json").out)["gpus"][1]["uuid"]
    text = OTHER.replace('select = "all"', f'select = {{ uuid = "{uuid}" }}')
    host.write_layout(text)
    assert host.run("apply").code == 0


def _mutation_sequence(host: Host) -> list[str]:
    """NVML functions of the mutating calls apply will make, in order (from the plan)."""
    names = {
        "enable MIG mode": "nvmlDeviceSetMigMode",
        "destroy compute": "nvmlComputeInstanceDestroy",
        "destroy GPU": "nvmlGpuInstanceDestroy",
        "create compute": "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
        "create": "nvmlDeviceCreateGpuInstanceWithPlacement",
    }
    plan = json.loads(host.run("plan", "--json").out)
    steps = [s for g in plan["gpus"] for s in g["steps"]]
    modes = [s for s in steps if s.startswith("enable")]
    rest = [s for s in steps if not s.startswith("enable")]
    return [next(f for p, f in names.items() if s.startswith(p)) for s in modes + rest]


def test_killed_after_every_mutating_call_rerun_converges(tmp_path: Path) -> None:
    """Kill apply after the k-th mutating call, for every k of a 2-GPU restore; rerun converges."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    sequence = _mutation_sequence(host)
    assert len(sequence) == 16
    for k in range(1, len(sequence) + 1):
        simulator.reboot(host.state)
        function = sequence[k - 1]
        nth = sequence[:k].count(function)
        simulator.inject_fault(host.state, function, nth, "Unknown", action="kill-after")
        killed = host.spawn("apply")
        assert killed.code == -9, (k, killed.err)
        rerun = host.spawn("apply")
        assert rerun.code == 0, (k, rerun.out, rerun.err)
        assert host.run("verify").code == 0


def test_layout_without_gpu_entries_is_a_no_op(tmp_path: Path) -> None:
    """The shipped example (no [[gpu]] entries) restores nothing and does not even open NVML."""
    host = make_host(
        tmp_path, (H100, 1), layout=(Path(__file__).parents[1] / "etc/migrestore.toml").read_text()
    )
    result = host.run("apply", "--boot")
    assert result.code == 0
    assert "nothing to restore" in result.out
    assert host.counters() == {}


def test_simulate_fault_from_the_command_line(tmp_path: Path) -> None:
    """`migrestore simulate fault` arms a fault that the next apply meets."""
    from migrestore import cli

    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    armed = cli.main(
        [
            "simulate",
            "fault",
            str(host.state),
            "--function",
            "nvmlDeviceSetMigMode",
            "--error",
            "NoPermission",
        ]
    )
    assert armed == 0
    failed = host.run("apply")
    assert failed.code == 1
    assert "NVML NoPermission (error 4)" in failed.out


def test_global_options_work_after_the_verb(tmp_path: Path) -> None:
    """`migrestore verify --simulate S --config F --debug` means the same as with them first."""
    from migrestore import cli

    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    code = cli.main(
        ["verify", "--simulate", str(host.state), "--config", str(host.config), "--debug"]
    )
    assert code == 3


def test_missing_layout_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A layout file that does not exist is one line naming it, exit 2."""
    from migrestore import cli

    assert cli.main(["--config", str(tmp_path / "none.toml"), "verify"]) == 2
    assert f"{tmp_path / 'none.toml'}: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("how", [(), ("--by-model",), ("--by-index",)])
def test_export_then_verify_is_in_sync(tmp_path: Path, how: tuple[str, ...]) -> None:
    """`export` writes a layout file that `verify` accepts on the same host."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    assert host.run("apply").code == 0
    exported = host.run("export", *how)
    assert exported.code == 0
    assert "SIMULATED" in exported.out
    host.write_layout(exported.out)
    assert host.run("verify").code == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_apply_makes_device_nodes_below_the_sysroot(tmp_path: Path) -> None:
    """With --sysroot, apply creates /dev/nvidia-caps nodes for every new GI and CI."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    simulator.init_host(host.state, [(H100, 1)], sysroot=tmp_path / "root")
    host.write_layout(LAYOUT)
    assert host.run("--sysroot", str(tmp_path / "root"), "apply").code == 0
    nodes = sorted(p.name for p in (tmp_path / "root/dev/nvidia-caps").iterdir())
    # GI 3 (2g@0), 9 (1g@2), 2 (3g@4) on GPU minor 0, with 1 + 1 + 2 CIs: 3 + 4 nodes.
    assert len(nodes) == 7
    assert "nvidia-cap21" in nodes  # gpu0/gi2/access in the real mig-minors table


MIG_OFF = 'version = 1\n[[gpu]]\nselect = "all"\nmig = false\n'


@pytest.mark.parametrize("model", [H100, A100])
def test_mig_off_on_a_gpu_with_instances(tmp_path: Path, model: str) -> None:
    """`mig = false` on populated GPUs: instances go first, then the mode (and Ampere's reset)."""
    host = make_host(tmp_path, (model, 2), layout=LAYOUT)
    assert host.run("apply").code == 0
    host.write_layout(MIG_OFF)
    result = host.run("apply")
    assert result.code == 0, result.out + result.err
    assert host.run("verify").code == 0
    status = json.loads(host.run("status", "--json").out)
    assert [(g["mig"], g["instances"]) for g in status["gpus"]] == [
        ({"current": False, "pending": False}, [])
    ] * 2


def test_profile_typo_in_an_index_entry_touches_nothing(tmp_path: Path) -> None:
    """A misspelt profile in an index entry is exit 2 before any GPU is changed."""
    host = make_host(tmp_path, (H100, 2))
    host.write_layout(
        'version = 1\n[[gpu]]\nselect = { index = 0 }\n[[gpu.instance]]\nprofile = "3g.40g"\n'
        '[[gpu]]\nselect = { index = 1 }\n[[gpu.instance]]\nprofile = "3g.40gb"\n'
    )
    result = host.run("apply")
    assert result.code == 2
    assert 'unknown profile "3g.40g"' in result.err
    assert mutations(host.counters()) == 0


def test_replaced_gpu_is_reported_and_the_others_restored(tmp_path: Path) -> None:
    """An index entry naming another model's profile: that GPU is reported, the rest restored."""
    host = make_host(tmp_path, (A100, 2))
    host.write_layout(
        'version = 1\n[[gpu]]\nselect = { index = 0 }\n[[gpu.instance]]\nprofile = "3g.71gb"\n'
        '[[gpu]]\nselect = { index = 1 }\n[[gpu.instance]]\nprofile = "3g.40gb"\n'
    )
    result = host.run("apply")
    assert result.code == 1
    assert "GPU 0 (NVIDIA A100-SXM4-80GB" in result.out
    assert json.loads(host.run("plan", "--json").out)["gpus"][0]["steps"] == []


def test_damaged_run_record_does_not_break_apply_or_status(tmp_path: Path) -> None:
    """A last-run file from another version or damaged is ignored, then replaced."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    records = Path(f"{host.state}.lib")
    records.mkdir()
    (records / "last-run.json").write_text("[]")
    assert host.run("status").code == 0
    assert host.run("apply").code == 0
    assert "last run: " in host.run("status").out


def test_export_of_a_pending_ampere_host_verifies_as_pending(tmp_path: Path) -> None:
    """Export keeps the asked-for mode: verify against it says 'reset pending' (4), not drift."""
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT)
    simulator.attach(host.state, 0, "dcgm")
    assert host.run("apply").code == 4
    host.write_layout(host.run("export").out)
    assert host.run("verify").code == 4


@pytest.mark.parametrize("value", ["-5", "nan", "soon"])
def test_bad_lock_wait_is_a_usage_error(tmp_path: Path, value: str) -> None:
    """--lock-wait takes a finite number of seconds, 0 or more."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    result = host.run("apply", "--lock-wait", value)
    assert result.code == 2
    assert "--lock-wait" in result.err


def test_plan_json_has_structured_actions(tmp_path: Path) -> None:
    """`plan --json` gives machines each step's action, profile and placement, not only prose."""
    host = make_host(tmp_path, (H100, 1), layout=LAYOUT)
    actions = json.loads(host.run("plan", "--json").out)["gpus"][0]["actions"]
    assert actions[0] == {
        "action": "set-mig-mode",
        "description": "enable MIG mode",
        "enabled": True,
    }
    creates = [a for a in actions if a["action"] == "create-gpu-instance"]
    assert [(a["profile"], a["placement"]["start"]) for a in creates] == [
        ("2g.20gb", 0),
        ("1g.10gb", 2),
        ("3g.40gb", 4),
    ]


def test_check_mixed_file_with_model_for_the_identity_entries(tmp_path: Path) -> None:
    """`check --model` stands in for index entries; model entries keep their own model."""
    from migrestore import cli

    layout = tmp_path / "mixed.toml"
    layout.write_text(
        'version = 1\n[[gpu]]\nselect = { model = "NVIDIA A30" }\n'
        '[[gpu.instance]]\nprofile = "2g.12gb"\n'
        '[[gpu]]\nselect = { index = 3 }\n[[gpu.instance]]\nprofile = "3g.40gb"\n'
    )
    assert cli.main(["--config", str(layout), "check", "--model", H100]) == 0
    assert cli.main(["--config", str(layout), "check"]) == 2
