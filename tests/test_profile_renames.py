"""Profiles a driver renamed: resolved by geometry with a warning, unless strict-profile-names."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrestore import profiles, simulator
from migrestore.model import ProfileTable

from .simhost import make_host

A100 = "NVIDIA A100-SXM4-80GB"
LAYOUT = """\
version = 1
{restore}
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "{name}"
  placement = 4
  compute = ["2c.{name}", "1c.{name}"]
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 2
"""


def table(model: str) -> ProfileTable:
    """The catalogue's profile table of a model."""
    info = profiles.find_model(model)
    assert info is not None
    return info.table


def gi_names(state: Path) -> list[str]:
    """GPU 0's GPU-instance profile names as the simulated driver reports them."""
    nvml = simulator.Simulator(state)
    nvml.nvmlInit()
    try:
        dev = nvml.nvmlDeviceGetHandleByIndex(0)
        return [nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, i).name for i in range(5)]
    finally:
        nvml.nvmlShutdown()


@pytest.mark.parametrize(("driver", "name"), [("535.x", "MIG 3g.39gb"), ("550.x", "MIG 3g.40gb")])
def test_simulator_names_a100_80gb_profile_by_driver(
    tmp_path: Path, driver: str, name: str
) -> None:
    """The A100-80GB's profile 2 is 3g.39gb on R535 and 3g.40gb from R550 on."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [(A100, 1)], driver=driver)
    nvml = simulator.Simulator(state)
    nvml.nvmlInit()
    nvml.nvmlDeviceSetMigMode(nvml.nvmlDeviceGetHandleByIndex(0), 1)
    nvml.nvmlShutdown()
    simulator.reset_gpus(state, ["00000000:07:00.0"])
    assert gi_names(state)[2] == name


@pytest.mark.parametrize(("written", "driver"), [("3g.40gb", "535.x"), ("3g.39gb", "580.x")])
def test_renamed_profile_restores_with_a_warning(tmp_path: Path, written: str, driver: str) -> None:
    """A name the driver spells otherwise restores by geometry; the warning names both names."""
    host = make_host(
        tmp_path, (A100, 1), layout=LAYOUT.format(restore="", name=written), driver=driver
    )
    applied = host.run("apply")
    verified = host.run("verify")
    assert (applied.code, verified.code) == (0, 0)
    other = "3g.39gb" if written == "3g.40gb" else "3g.40gb"
    assert f'"{written}" is called "{other}" by this driver' in verified.err


def test_strict_profile_names_refuses_a_renamed_profile(tmp_path: Path) -> None:
    """With strict-profile-names a name unknown to the driver stays a config error (2)."""
    restore = "[restore]\nstrict-profile-names = true"
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT.format(restore=restore, name="3g.39gb"))
    result = host.run("verify")
    assert result.code == 2
    assert 'unknown profile "3g.39gb"' in result.err


def test_geometry_match_needs_exactly_one_profile() -> None:
    """Slices, attributes and memory within 10% must match exactly one profile, else nothing."""
    a100 = table(A100)
    found = [profiles.resolve_renamed(a100, n) for n in ("2g.19gb", "1g.10gb+gfx", "1g.15gb")]
    assert [p.short_name if p else None for p in found] == ["2g.20gb", None, None]


def test_strict_profile_names_must_be_a_boolean(tmp_path: Path) -> None:
    """`strict-profile-names = "yes"` is refused with the key named."""
    restore = '[restore]\nstrict-profile-names = "yes"'
    host = make_host(tmp_path, (A100, 1), layout=LAYOUT.format(restore=restore, name="3g.40gb"))
    result = host.run("check")
    assert result.code == 2
    assert "strict-profile-names: must be true or false" in result.err
