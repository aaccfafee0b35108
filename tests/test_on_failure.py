"""`on-failure`: a GPU whose restore failed is left as it is ("leave") or gets MIG turned off
("disable-mig"); the others are restored either way, and the run stays a failure (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrestore import config, simulator
from migrestore.errors import ConfigError
from migrestore.model import OnFailure

from .simhost import Host, make_host

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-40GB"
CREATE_GI = "nvmlDeviceCreateGpuInstanceWithPlacement"


def _layout(profile: str, restore: str = "", entry: str = "") -> str:
    """Two GPU instances of `profile` on every GPU (at 0 and 4)."""
    table = f"[restore]\n{restore}\n" if restore else ""
    return (
        f'version = 2\n{table}[[gpu]]\nselect = "all"\n{entry}\n'
        f'[[gpu.instance]]\nprofile = "{profile}"\nplacement = 0\n'
        f'[[gpu.instance]]\nprofile = "{profile}"\nplacement = 4\n'
    )


def _record(host: Host) -> dict[str, Any]:
    path = Path(f"{host.state}.lib") / "last-run.json"
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _gpus(host: Host) -> list[dict[str, Any]]:
    result = host.run("status", "--json")
    gpus: list[dict[str, Any]] = json.loads(result.out)["gpus"]
    return gpus


def test_leave_is_the_default_and_keeps_the_half_made_layout(tmp_path: Path) -> None:
    """Without on-failure, GPU 1 fails at its second create and keeps MIG on with one instance."""
    host = make_host(tmp_path, (H100, 2), layout=_layout("3g.40gb"))
    simulator.inject_fault(host.state, CREATE_GI, 4, "InsufficientResources")
    result = host.run("apply")
    assert result.code == 1
    assert "on-failure" not in result.out
    gpu0, gpu1 = _gpus(host)
    assert (gpu0["mig"]["current"], len(gpu0["instances"])) == (True, 2)
    assert (gpu1["mig"]["current"], len(gpu1["instances"])) == (True, 1)
    assert [g["on_failure"] for g in _record(host)["gpus"]] == ["", ""]


def test_disable_mig_turns_mig_off_on_the_failed_gpu_only(tmp_path: Path) -> None:
    """[restore] on-failure = "disable-mig" (Hopper): GPU 1's instance destroyed, MIG off at
    once, GPU 0 restored; exit 1, the output, the record and the journal event say so."""
    layout = _layout("3g.40gb", restore='on-failure = "disable-mig"')
    host = make_host(tmp_path, (H100, 2), layout=layout)
    simulator.inject_fault(host.state, CREATE_GI, 4, "InsufficientResources")
    result = host.run("apply")
    assert result.code == 1
    assert "GPU 1 (NVIDIA H100 80GB HBM3, 00000000:0F:00.0): FAILED at 'create 3g.40gb at 4'" in (
        result.out
    )
    assert "  on-failure: MIG disabled: a whole GPU" in result.out
    assert "mig_disabled_after_failure" in result.err
    gpu0, gpu1 = _gpus(host)
    assert (gpu0["mig"]["current"], len(gpu0["instances"])) == (True, 2)
    assert (gpu1["mig"]["current"], gpu1["mig"]["pending"], gpu1["instances"]) == (False, False, [])
    record = _record(host)
    assert record["result"] == "failed"
    failed = record["gpus"][1]
    assert failed["result"] == "failed"
    assert "InsufficientResources" in failed["error"]
    assert failed["on_failure"] == "MIG disabled: a whole GPU"
    assert failed["steps"][-2:] == [
        "destroy GPU instance 3g.40gb at 0 (GI 1)",
        "disable MIG mode",
    ]


def test_the_entry_overrides_the_restore_default(tmp_path: Path) -> None:
    """An entry's on-failure = "leave" wins over [restore] on-failure = "disable-mig"."""
    layout = _layout("3g.40gb", restore='on-failure = "disable-mig"', entry='on-failure = "leave"')
    host = make_host(tmp_path, (H100, 2), layout=layout)
    simulator.inject_fault(host.state, CREATE_GI, 4, "InsufficientResources")
    assert host.run("apply").code == 1
    assert _gpus(host)[1]["mig"]["current"] is True
    assert _record(host)["gpus"][1]["on_failure"] == ""


def test_disable_mig_on_ampere_resets_the_gpu(tmp_path: Path) -> None:
    """A100: the failed GPU's instance is destroyed, MIG disabled and the GPU reset, so MIG is
    off now and at the next boot; the other A100 keeps its layout."""
    layout = _layout("3g.20gb", restore='on-failure = "disable-mig"')
    host = make_host(tmp_path, (A100, 2), layout=layout)
    simulator.inject_fault(host.state, CREATE_GI, 2, "InsufficientResources")
    result = host.run("apply", "--json")
    assert result.code == 1
    outcomes = json.loads(result.out)["gpus"]
    assert [o["on_failure"] for o in outcomes] == ["MIG disabled: a whole GPU", ""]
    gpu0, gpu1 = _gpus(host)
    assert (gpu0["mig"]["current"], gpu0["mig"]["pending"], gpu0["instances"]) == (False, False, [])
    assert (gpu1["mig"]["current"], len(gpu1["instances"])) == (True, 2)
    steps = _record(host)["gpus"][0]["steps"]
    assert steps[-2:] == ["disable MIG mode", "reset the GPU to apply the pending MIG mode"]


def test_a_failed_disable_is_reported_and_the_run_still_fails(tmp_path: Path) -> None:
    """If turning MIG off fails too, the record says where, and the exit stays 1."""
    layout = _layout("3g.40gb", restore='on-failure = "disable-mig"')
    host = make_host(tmp_path, (H100, 2), layout=layout)
    simulator.inject_fault(host.state, CREATE_GI, 4, "InsufficientResources")
    simulator.inject_fault(host.state, "nvmlDeviceSetMigMode", 3, "Unknown")
    result = host.run("apply")
    assert result.code == 1
    assert "  on-failure: disabling MIG failed at 'disable MIG mode':" in result.out
    assert _record(host)["gpus"][1]["on_failure"].startswith("disabling MIG failed")
    assert _gpus(host)[1]["mig"]["current"] is True


def test_a_gpu_that_did_not_fail_is_never_disabled(tmp_path: Path) -> None:
    """With disable-mig and no failure, nothing is turned off and the run is ok."""
    layout = _layout("3g.40gb", restore='on-failure = "disable-mig"')
    host = make_host(tmp_path, (H100, 2), layout=layout)
    assert host.run("apply").code == 0
    assert [g["mig"]["current"] for g in _gpus(host)] == [True, True]


def test_on_failure_is_read_from_the_file() -> None:
    """[restore] gives the default, an entry its own; DesiredNode.on_failure picks."""
    desired = config.parse(
        'version = 2\n[restore]\non-failure = "disable-mig"\n'
        '[[gpu]]\nselect = { index = 0 }\non-failure = "leave"\n'
        "[[gpu]]\nselect = { index = 1 }\n"
    )
    assert [desired.on_failure(s) for s in desired.gpus] == [
        OnFailure.LEAVE,
        OnFailure.DISABLE_MIG,
    ]
    assert config.needed_version(desired.gpus) == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            'version = 1\n[restore]\non-failure = "leave"\n',
            "restore.on-failure: needs version = 2 (the file says version = 1)",
        ),
        (
            'version = 1\n[restore]\nconsumer = "slurm"\n',
            "restore.consumer: needs version = 2 (the file says version = 1)",
        ),
        (
            'version = 1\n[[gpu]]\nselect = "all"\non-failure = "leave"\n',
            "version: is 1, but the file uses",
        ),
        (
            'version = 2\n[[gpu]]\nselect = "all"\non-failure = "off"\n',
            'gpu[0].on-failure: must be one of "leave", "disable-mig", got "off"',
        ),
        (
            'version = 2\n[restore]\nconsumer = "k8s"\n',
            'restore.consumer: must be one of "k8s-single", "k8s-mixed", "slurm", got "k8s"',
        ),
        (
            'version = 2\n[[gpu]]\nselect = "all"\nmig = false\non-failure = "disable-mig"\n',
            'gpu[0].on-failure: "disable-mig" with mig = false',
        ),
    ],
)
def test_bad_on_failure_and_consumer_are_one_line_errors(text: str, problem: str) -> None:
    """Wrong values, or keys in a version 1 file, name the key."""
    with pytest.raises(ConfigError) as error:
        config.parse(text, "layout.toml")
    assert str(error.value).startswith(f"layout.toml: {problem}")


def test_an_ampere_gpu_whose_reset_is_refused_stays_pending(tmp_path: Path) -> None:
    """A100 with MIG on and a driver client attached: the disable waits for a reset, which the
    client blocks; the GPU is reported as "MIG disable pending a GPU reset", the run fails."""
    host = make_host(tmp_path, (A100, 1), layout='version = 2\n[[gpu]]\nselect = "all"\n')
    assert host.run("apply").code == 0
    simulator.attach(host.state, 0, "dcgm")
    host.write_layout(_layout("3g.20gb", restore='on-failure = "disable-mig"'))
    simulator.inject_fault(host.state, CREATE_GI, 2, "InsufficientResources")
    result = host.run("apply")
    assert result.code == 1
    assert "  on-failure: MIG disable pending a GPU reset (" in result.out
    [gpu] = _gpus(host)
    assert (gpu["mig"]["current"], gpu["mig"]["pending"], gpu["instances"]) == (True, False, [])


def test_a_gpu_whose_mode_change_was_refused_is_already_whole(tmp_path: Path) -> None:
    """H100 held by a client refuses MIG on: nothing to undo, "MIG was off: a whole GPU"."""
    layout = _layout("3g.40gb", restore='on-failure = "disable-mig"')
    host = make_host(tmp_path, (H100, 1), layout=layout)
    simulator.attach(host.state, 0, "dcgm")
    result = host.run("apply")
    assert result.code == 1
    assert "FAILED at 'enable MIG mode'" in result.out
    assert "  on-failure: MIG was off: a whole GPU" in result.out
    assert _gpus(host)[0]["mig"]["current"] is False


def test_a_gpu_refused_for_busy_instances_is_left_alone(tmp_path: Path) -> None:
    """A plan refused because it would destroy an instance in use is no failed layout: with
    disable-mig the busy instance and MIG mode are kept."""
    host = make_host(tmp_path, (H100, 1), layout=_layout("3g.40gb"))
    assert host.run("apply").code == 0
    simulator.attach(host.state, 0, "python", gi_id=1, ci_id=0)
    host.write_layout(
        'version = 2\n[restore]\non-failure = "disable-mig"\n[[gpu]]\nselect = "all"\n'
        '[[gpu.instance]]\nprofile = "1g.10gb"\ncount = 7\n'
    )
    result = host.run("apply")
    assert result.code == 1
    assert "would destroy instances in use" in result.out
    assert "on-failure" not in result.out
    [gpu] = _gpus(host)
    assert (gpu["mig"]["current"], len(gpu["instances"])) == (True, 2)
