"""Per-GPU `managed = false`: the GPUs an entry selects are left to another owner. plan, apply and
verify never touch or judge them, status shows them as "unmanaged (managed = false)", and the key
needs layout version 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrestore import config
from migrestore.errors import ConfigError

from .simhost import H100, Host, make_host, mutations

LAYOUT = f"""version = 2
[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "3g.40gb"
placement = 4

[[gpu]]
select = {{ index = 1 }}
managed = false
"""

# What the other owner (say the GPU operator's MIG manager) made of GPU 1.
OTHER_OWNERS = f"""version = 1
[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "1g.10gb"
placement = 0
"""


def handed_off_host(tmp_path: Path) -> Host:
    """Two H100s, both partitioned by another owner; the layout leaves GPU 1 to it."""
    host = make_host(tmp_path, (H100, 2), layout=OTHER_OWNERS)
    assert host.run("apply").code == 0
    host.write_layout(LAYOUT)
    return host


def gpu_instances(host: Host, index: int) -> list[object]:
    """GPU `index`'s GPU instances as `status --json` shows them."""
    document = json.loads(host.run("status", "--json").out)
    gpu = next(g for g in document["gpus"] if g["index"] == index)
    instances: list[object] = gpu["instances"]
    return instances


def test_apply_and_verify_leave_a_managed_false_gpu_alone(tmp_path: Path) -> None:
    """GPU 0 is restored, GPU 1 keeps the other owner's instance, verify says in sync (0)."""
    host = handed_off_host(tmp_path)
    before = gpu_instances(host, 1)
    assert host.run("verify").code == 3  # GPU 0 drifted; GPU 1 is not judged
    result = host.run("apply")
    assert result.code == 0, result
    assert gpu_instances(host, 1) == before
    assert len(gpu_instances(host, 0)) == 1
    calls = host.counters()
    assert host.run("apply").code == 0
    assert mutations(host.counters()) == mutations(calls)
    assert host.run("verify").code == 0


def test_plan_names_a_managed_false_gpu_unmanaged(tmp_path: Path) -> None:
    """plan: no steps for GPU 1, one line "unmanaged (managed = false)", its UUID in the JSON."""
    host = handed_off_host(tmp_path)
    lines = [line for line in host.run("plan").out.splitlines() if "GPU 1" in line]
    assert len(lines) == 1
    assert lines[0].endswith(": unmanaged (managed = false)")
    document = json.loads(host.run("plan", "--json").out)
    assert [g["index"] for g in document["gpus"]] == [0]
    status = json.loads(host.run("status", "--json").out)
    uuid1 = next(g["uuid"] for g in status["gpus"] if g["index"] == 1)
    assert document["unmanaged"] == [uuid1]


def test_status_shows_unmanaged_managed_false(tmp_path: Path) -> None:
    """status tags GPU 1 "[unmanaged (managed = false)]" and GPU 0 not at all."""
    host = handed_off_host(tmp_path)
    heads = [line for line in host.run("status").out.splitlines() if line.startswith("GPU ")]
    assert "[" not in heads[0]
    assert heads[1].endswith("[unmanaged (managed = false)]")


def test_managed_false_beats_a_model_entry_by_precedence(tmp_path: Path) -> None:
    """An identity selector with managed = false wins over "all"; the others are still restored."""
    host = make_host(tmp_path, (H100, 3), layout=OTHER_OWNERS)
    assert host.run("apply").code == 0
    host.write_layout(
        LAYOUT.replace(f'{{ model = "{H100}" }}', '"all"').replace("index = 1", "index = 2")
    )
    assert host.run("apply").code == 0
    assert [len(gpu_instances(host, i)) for i in range(3)] == [1, 1, 1]
    document = json.loads(host.run("status", "--json").out)
    assert document["gpus"][2]["instances"][0]["profile"] == "1g.10gb"
    assert document["gpus"][0]["instances"][0]["profile"] == "3g.40gb"


def test_all_entries_managed_false_apply_touches_nothing(tmp_path: Path) -> None:
    """Every GPU left to another owner: apply succeeds without a single NVML change."""
    host = make_host(tmp_path, (H100, 1), layout=OTHER_OWNERS)
    assert host.run("apply").code == 0
    calls = mutations(host.counters())
    host.write_layout('version = 2\n[[gpu]]\nselect = "all"\nmanaged = false\n')
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0
    assert mutations(host.counters()) == calls


def test_managed_false_needs_version_2() -> None:
    """Under version = 1 the key is refused at the version line, naming version 2."""
    with pytest.raises(ConfigError, match=r"version = 2"):
        config.parse('version = 1\n[[gpu]]\nselect = "all"\nmanaged = false\n')
    spec = config.parse('version = 2\n[[gpu]]\nselect = "all"\nmanaged = false\n').gpus[0]
    assert spec.managed is False
    assert config.needed_version([spec]) == 2
    managed = config.parse('version = 1\n[[gpu]]\nselect = "all"\nmanaged = true\n').gpus[0]
    assert config.needed_version([managed]) == 1


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("managed = 0", r"gpu\[0\]\.managed: must be true or false, got 0"),
        ("managed = false\nmig = false", r"gpu\[0\]\.mig: not allowed with managed = false"),
        (
            'managed = false\n[[gpu.instance]]\nprofile = "1g.10gb"',
            r"gpu\[0\]\.instance: not allowed with managed = false",
        ),
    ],
)
def test_managed_false_mistakes_are_one_line_errors(extra: str, problem: str) -> None:
    """A non-boolean, or MIG settings beside managed = false: an error naming the key."""
    with pytest.raises(ConfigError, match=problem):
        config.parse(f'version = 2\n[[gpu]]\nselect = "all"\n{extra}\n')


def test_check_and_its_consumer_rules_skip_a_managed_false_entry(tmp_path: Path) -> None:
    """Offline `check` says the entry is another owner's, and `--consumer` finds no MIG GPU
    without devices in it (the other owner partitions that GPU)."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT)
    checked = host.run_offline("check", "--model", H100, "--consumer", "k8s-mixed")
    assert checked.code == 0, checked
    assert "gpu[1] (index=1): managed = false, left to another owner" in checked.out
    assert "mig-without-devices" not in checked.out
