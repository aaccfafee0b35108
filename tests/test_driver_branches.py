"""Driver branches: R535 hides the profile table with MIG off; capability never comes from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pynvml
import pytest

from migrestore import profiles, simulator
from migrestore.errors import ConfigError
from migrestore.model import DesiredNode, GpuSpec, NodeState, Selector, SelectorKind
from migrestore.offline import modelled_gpu
from migrestore.plan import plan_node
from migrestore.simulator.host import driver_version

from .simhost import make_host

H100 = "NVIDIA H100 80GB HBM3"
LAYOUT = """\
version = 1
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 2
"""


def profile_query(state: Path) -> int:
    """The NVML return code of GPU 0's first GPU-instance profile query (0: it answered)."""
    nvml = simulator.Simulator(state)
    nvml.nvmlInit()
    try:
        nvml.nvmlDeviceGetGpuInstanceProfileInfo(nvml.nvmlDeviceGetHandleByIndex(0), 0)
    except pynvml.NVMLError as exc:
        return int(exc.value)
    finally:
        nvml.nvmlShutdown()
    return 0


def test_r535_cold_boot_restores_and_verifies(tmp_path: Path) -> None:
    """8 x H100 on R535 after a reboot: verify 3, the boot restore 0, then verify 0."""
    host = make_host(tmp_path, (H100, 8), layout=LAYOUT, driver="535.x")
    assert host.run("apply").code == 0
    simulator.reboot(host.state)
    drift = host.run("verify")
    restored = host.run("apply", "--boot")
    assert (drift.code, restored.code, host.run("verify").code) == (3, 0, 0)
    assert "R535" in drift.out
    assert "in sync: 8 GPU(s)" in host.run("verify").out


def test_r535_model_selector_is_drift_not_config_error(tmp_path: Path) -> None:
    """A model selector on R535 with MIG off is drift (3), not "does not support MIG" (2)."""
    layout = LAYOUT.replace('select = "all"', f'select = {{ model = "{H100}" }}')
    host = make_host(tmp_path, (H100, 1), layout=layout, driver="535.x")
    assert host.run("verify").code == 3
    assert host.run("apply").code == 0


@pytest.mark.parametrize(("driver", "mig_off", "mig_on"), [("535.x", 3, 0), ("550.x", 0, 0)])
def test_profile_queries_by_driver_branch(
    tmp_path: Path, driver: str, mig_off: int, mig_on: int
) -> None:
    """R535 answers the profile query NOT_SUPPORTED while MIG is off; R550 answers it."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [(H100, 1)], driver=driver)
    before = profile_query(state)
    nvml = simulator.Simulator(state)
    nvml.nvmlInit()
    nvml.nvmlDeviceSetMigMode(nvml.nvmlDeviceGetHandleByIndex(0), 1)
    nvml.nvmlShutdown()
    assert (mig_off, mig_on) == (before, profile_query(state))


def test_driver_branch_names_a_released_version() -> None:
    """`--driver 535.x`, `R550` and `570` name versions of those branches; others are kept."""
    found = [driver_version(t) for t in ("535.x", "R550", "570", "580.x", "535.104.05")]
    assert found == ["535.161.07", "550.90.07", "570.133.20", "580.159.04", "535.104.05"]


def test_driver_branch_typo_is_a_config_error() -> None:
    """An unknown driver spelling is refused with the known branches named."""
    with pytest.raises(ConfigError, match=r"535\.x"):
        driver_version("latest")


def test_layout_selecting_no_mig_capable_gpu_is_exit_2() -> None:
    """`select = "all"` on a host without any MIG-capable GPU is a config error, not in sync."""
    info = profiles.find_model(H100)
    assert info is not None
    plain = replace(modelled_gpu(info), name="NVIDIA L40S", mig_capable=False)
    plain = replace(plain, profiles=replace(plain.profiles, gi=()))
    desired = DesiredNode((GpuSpec(Selector(SelectorKind.ALL), where="gpu[0]"),), source="f")
    with pytest.raises(ConfigError, match="no MIG-capable GPU"):
        plan_node(desired, NodeState((plain,)))


def test_doctor_does_not_pass_an_unplanned_layout(tmp_path: Path) -> None:
    """doctor warns, never passes, a layout it cannot check against a hidden profile table."""
    host = make_host(tmp_path, (H100, 2), layout=LAYOUT, driver="535.x")
    result = host.run("doctor")
    fit = next(line for line in result.out.splitlines() if "layout.fit" in line)
    assert fit.startswith("WARN")
