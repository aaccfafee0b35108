"""`check` against the host's own GPUs, and `plan` failing for a GPU it cannot plan (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.simhost import make_host, mutations

H100 = "NVIDIA H100 80GB HBM3"
A30 = "NVIDIA A30"
ALL_3G = 'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "3g.40gb"\ncount = 2\n'
# An index entry for GPU 2, which is an A30 on the host below: 3g.40gb is an H100 profile.
WRONG_MODEL = (
    f'version = 1\n[[gpu]]\nselect = {{ model = "{H100}" }}\n'
    '[[gpu.instance]]\nprofile = "7g.80gb"\n'
    '[[gpu]]\nselect = { index = 2 }\n[[gpu.instance]]\nprofile = "3g.40gb"\n'
)


def test_check_on_a_gpu_host_resolves_each_gpu_without_changing_anything(tmp_path: Path) -> None:
    """`check --simulate` resolves "all" against each simulated GPU (offline it needs --model),
    one line per GPU, exit 0, and makes no mutating NVML call."""
    host = make_host(tmp_path, (H100, 2), layout=ALL_3G)
    assert host.run_offline("check").code == 2  # "all" needs --model without a host
    before = host.run("status", "--json").out
    result = host.run("check")
    assert result.code == 0, result.err
    assert result.out.splitlines()[1:] == [  # after the SIMULATED banner
        f"gpu[0] (all) on {_label(before, n)}: 3g.40gb@0 [1 CI] + 3g.40gb@4 [1 CI]" for n in (0, 1)
    ]
    assert mutations(host.counters()) == 0
    assert host.run("status", "--json").out == before


def test_check_on_a_gpu_host_names_a_gpu_of_another_model(tmp_path: Path) -> None:
    """An index entry on a GPU of another model: check exits 1 naming that GPU; the GPUs the
    file fits are still listed."""
    host = make_host(tmp_path, (H100, 2), (A30, 1), layout=WRONG_MODEL)
    result = host.run("check")
    assert result.code == 1
    assert f"GPU 2 ({A30}, " in result.out
    assert 'unknown profile "3g.40gb" for NVIDIA A30' in result.out
    assert result.out.count(": 7g.80gb@0 [1 CI]") == 2


def test_check_on_a_gpu_host_refuses_what_apply_would(tmp_path: Path) -> None:
    """A layout that does not fit the host's GPU is exit 2 with apply's one-line error."""
    layout = ALL_3G.replace("count = 2", "count = 3")
    host = make_host(tmp_path, (H100, 1), layout=layout)
    checked, applied = host.run("check"), host.run("apply")
    assert (checked.code, applied.code) == (2, 2)
    assert checked.err.splitlines()[0] == applied.err.splitlines()[0]


def test_check_with_model_stays_offline_on_a_gpu_host(tmp_path: Path) -> None:
    """`--model` checks against the modelled GPU even with a host at hand."""
    host = make_host(tmp_path, (H100, 1), layout=ALL_3G.replace("3g.40gb", "2g.12gb"))
    result = host.run("check", "--model", A30)
    assert result.code == 0, result.err
    assert result.out == f"gpu[0] (all) on {A30}: 2g.12gb@0 [1 CI] + 2g.12gb@2 [1 CI]\n"
    assert host.counters().get("nvmlInit", 0) == 0  # the simulated driver was not opened


def test_check_with_the_driver_in_a_container_is_offline(tmp_path: Path) -> None:
    """The GPU operator's driver container: the module is loaded but NVML is not the host's,
    so `check` checks offline (it does not fail reaching for NVML)."""
    layout = f'version = 1\n[[gpu]]\nselect = {{ model = "{H100}" }}\nmig = false\n'
    host = make_host(tmp_path, (H100, 1), layout=layout)
    root = tmp_path / "root"
    (root / "proc/driver/nvidia").mkdir(parents=True)
    (root / "proc/driver/nvidia/version").write_text("NVRM version: 580.65.06\n")
    (root / "run/nvidia/driver").mkdir(parents=True)
    result = host.run_offline("--sysroot", str(root), "check")
    assert result.code == 0, result.err
    assert result.out == f"gpu[0] (model={H100}) on {H100}: MIG off\n"


def test_plan_exits_1_naming_a_gpu_it_cannot_plan(tmp_path: Path) -> None:
    """An index entry on a GPU of another model: plan prints the plan of the others and exits 1
    with one error line naming that GPU (plan --json too)."""
    host = make_host(tmp_path, (H100, 2), (A30, 1), layout=WRONG_MODEL)
    result = host.run("plan")
    assert result.code == 1
    assert result.err.splitlines() == [
        f"migrestore: error: cannot plan {_label(host.run('status', '--json').out, 2)} "
        "(not the model its entry names)"
    ]
    assert "create 7g.80gb at 0" in result.out
    assert host.run("plan", "--json").code == 1
    assert host.run("apply", "--dry-run").code == 1


def test_plan_exits_0_when_every_gpu_is_planned(tmp_path: Path) -> None:
    """The same host with a file that fits every GPU: plan exits 0."""
    layout = WRONG_MODEL.replace('profile = "3g.40gb"', 'profile = "2g.12gb"')
    host = make_host(tmp_path, (H100, 2), (A30, 1), layout=layout)
    result = host.run("plan")
    assert (result.code, result.err) == (0, "")


def _label(status: str, index: int) -> str:
    """`GPU 2 (NVIDIA A30, 00000000:47:00.0)` from `status --json`."""
    gpu = json.loads(status)["gpus"][index]
    return f"GPU {index} ({gpu['name']}, {gpu['pci']})"
