"""`check --consumer`: one warning per layout problem a MIG consumer has, exit 6 if any."""

from __future__ import annotations

from pathlib import Path

import pytest

from .simhost import Host, make_host

H100 = "NVIDIA H100 80GB HBM3"
# The index entries below say the host's GPU count (`gpus = 2`): without it `check` warns.

UNIFORM = """version = 2
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 7
"""

TWO_TYPES = """version = 2
[[gpu]]
select = { index = 0 }
gpus = 2
  [[gpu.instance]]
  profile = "3g.40gb"
[[gpu]]
select = { index = 1 }
gpus = 2
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 7
"""

NO_DEVICES = """version = 2
[[gpu]]
select = { index = 0 }
gpus = 2
mig = true
"""

SHARED_GI = """version = 2
[[gpu]]
select = { index = 0 }
gpus = 2
  [[gpu.instance]]
  profile = "3g.40gb"
  compute = ["1c.3g.40gb", "1c.3g.40gb", "1c.3g.40gb"]
"""

WHOLE_BESIDE_MIG = """version = 2
[[gpu]]
select = { index = 0 }
gpus = 2
  [[gpu.instance]]
  profile = "7g.80gb"
[[gpu]]
select = { index = 1 }
gpus = 2
mig = false
"""


def _host(tmp_path: Path, layout: str) -> Host:
    return make_host(tmp_path, (H100, 2), layout=layout)


def _check(host: Host, consumer: str) -> tuple[int, list[str]]:
    result = host.run("check", "--model", H100, "--consumer", consumer)
    return result.code, [line for line in result.out.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("consumer", ["k8s-single", "k8s-mixed", "slurm"])
def test_a_uniform_layout_passes_every_consumer(tmp_path: Path, consumer: str) -> None:
    """Seven 1g.10gb on every GPU: no warning, exit 0, and a closing line saying so."""
    host = _host(tmp_path, UNIFORM)
    result = host.run("check", "--model", H100, "--consumer", consumer)
    assert result.code == 0
    assert "warning:" not in result.out
    assert result.out.splitlines()[-1] == f"{consumer}: no problem(s) with this layout"


def test_single_warns_about_two_device_types_naming_the_entry(tmp_path: Path) -> None:
    """k8s-single: 1g.10gb beside 3g.40gb of gpu[0] is one warning on gpu[1], exit 6."""
    code, warnings = _check(_host(tmp_path, TWO_TYPES), "k8s-single")
    assert code == 6
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: gpu[1] (index=1) on {H100}: one-device-type: ")
    assert "1g.10gb beside 3g.40gb of gpu[0]" in warnings[0]


def test_mixed_accepts_two_device_types(tmp_path: Path) -> None:
    """k8s-mixed and slurm have no rule against different profiles on a node."""
    host = _host(tmp_path, TWO_TYPES)
    assert _check(host, "k8s-mixed") == (0, [])
    assert _check(host, "slurm") == (0, [])


@pytest.mark.parametrize("consumer", ["k8s-single", "k8s-mixed", "slurm"])
def test_mig_without_devices_is_a_warning_for_every_consumer(tmp_path: Path, consumer: str) -> None:
    """MIG on with no instance: the mig-without-devices rule for each consumer, exit 6."""
    code, warnings = _check(_host(tmp_path, NO_DEVICES), consumer)
    assert code == 6
    assert [w.split(": ")[2] for w in warnings] == ["mig-without-devices"]


def test_gpu_instances_without_compute_instances_have_no_mig_devices(tmp_path: Path) -> None:
    """`compute = []` makes a GPU instance but no MIG device: slurmd would stop, a warning."""
    layout = NO_DEVICES + '  [[gpu.instance]]\n  profile = "3g.40gb"\n  compute = []\n'
    code, warnings = _check(_host(tmp_path, layout), "slurm")
    assert code == 6
    assert "mig-without-devices: GPU instances without compute" in warnings[0]


def test_compute_instances_sharing_a_gpu_instance(tmp_path: Path) -> None:
    """Three 1c.3g.40gb in one 3g.40gb: mixed and slurm warn once each, single does not."""
    host = _host(tmp_path, SHARED_GI)
    for consumer in ("k8s-mixed", "slurm"):
        code, warnings = _check(host, consumer)
        assert code == 6
        assert len(warnings) == 1
        assert "partial-compute-instance: " in warnings[0]
        assert "1c.3g.40gb in 3g.40gb at 0" in warnings[0]
    assert _check(host, "k8s-single") == (0, [])


def test_single_warns_about_a_whole_gpu_beside_mig_gpus(tmp_path: Path) -> None:
    """k8s-single: mig = false beside a MIG entry is the mig-and-whole-gpus rule on it."""
    code, warnings = _check(_host(tmp_path, WHOLE_BESIDE_MIG), "k8s-single")
    assert code == 6
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: gpu[1] (index=1)")
    assert "mig-and-whole-gpus" in warnings[0]
    assert _check(_host(tmp_path, WHOLE_BESIDE_MIG), "k8s-mixed") == (0, [])


def test_single_says_disable_mig_does_not_keep_the_node(tmp_path: Path) -> None:
    """k8s-single: on-failure = "disable-mig" is a warning (a whole GPU is refused there too)."""
    layout = UNIFORM.replace('select = "all"', 'select = "all"\non-failure = "disable-mig"')
    code, warnings = _check(_host(tmp_path, layout), "k8s-single")
    assert code == 6
    assert [w.split(": ")[2] for w in warnings] == ["on-failure"]
    assert _check(_host(tmp_path, layout), "k8s-mixed") == (0, [])


def test_the_layout_file_names_the_consumer(tmp_path: Path) -> None:
    """[restore] consumer stands in for --consumer; --consumer wins over it."""
    host = _host(
        tmp_path,
        TWO_TYPES.replace("version = 2\n", 'version = 2\n[restore]\nconsumer = "k8s-single"\n'),
    )
    result = host.run("check", "--model", H100)
    assert result.code == 6
    assert "one-device-type" in result.out
    assert host.run("check", "--model", H100, "--consumer", "k8s-mixed").code == 0


def test_without_a_consumer_check_does_not_warn(tmp_path: Path) -> None:
    """Plain `check` keeps exit 0 for a layout only a consumer would refuse."""
    result = _host(tmp_path, TWO_TYPES).run("check", "--model", H100)
    assert result.code == 0
    assert "warning:" not in result.out


def test_an_unknown_consumer_is_a_usage_error(tmp_path: Path) -> None:
    """`--consumer k8s` is refused by the argument parser with exit 2."""
    result = _host(tmp_path, UNIFORM).run("check", "--model", H100, "--consumer", "k8s")
    assert result.code == 2
    assert "k8s-single" in result.err
