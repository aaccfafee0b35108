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
    simulator.set_persistence(state, 0, False)  # it would block the reset
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


def exported_then_renamed(tmp_path: Path, new_name: str) -> tuple[str, str]:
    """Restore 3g.40gb on an A100-80GB (R580), export it, then write the export again with the
    profile renamed as a later driver might: (the export, the renamed export)."""
    layout = 'version = 1\n[[gpu]]\nselect = "all"\n  [[gpu.instance]]\n  profile = "3g.40gb"\n'
    host = make_host(tmp_path, (A100, 1), layout=layout + "  placement = 4\n")
    assert host.run("apply").code == 0
    exported = host.run("export", "--by-model").out
    return exported, exported.replace('profile = "3g.40gb"', f'profile = "{new_name}"')


def test_export_writes_the_geometry_beside_each_name(tmp_path: Path) -> None:
    """export writes `geometry = { slices, size, memory-mib }` from the driver's table after each
    profile name, and the export restores and verifies as before."""
    exported, _ = exported_then_renamed(tmp_path, "3g.40gb")
    three_g = next(p for p in table(A100).gi if p.short_name == "3g.40gb")
    line = f"geometry = {{ slices = 3, size = 4, memory-mib = {three_g.memory_mb} }}"
    assert exported.count(line) == 1
    host = make_host(tmp_path / "again", (A100, 1), layout=exported)
    assert (host.run("apply").code, host.run("verify").code) == (0, 0)


def test_the_written_geometry_resolves_a_name_its_spelling_cannot(tmp_path: Path) -> None:
    """A later driver's name for the profile that its spelling no longer ties to it (3g.48gb: 20%
    more memory): without the geometry field it is an unknown profile (2); with it, the one
    profile of that geometry restores, with the rename warning."""
    _, renamed = exported_then_renamed(tmp_path, "3g.48gb")
    without = "\n".join(line for line in renamed.splitlines() if "geometry =" not in line)
    bare = make_host(tmp_path / "bare", (A100, 1), layout=without + "\n")
    result = bare.run("verify")
    assert result.code == 2
    assert 'unknown profile "3g.48gb"' in result.err
    host = make_host(tmp_path / "geometry", (A100, 1), layout=renamed)
    assert host.run("apply").code == 0
    verified = host.run("verify")
    assert verified.code == 0
    assert '"3g.48gb" is called "3g.40gb" by this driver' in verified.err


def test_a_geometry_no_profile_has_is_an_unknown_profile(tmp_path: Path) -> None:
    """A written geometry that fits no profile of the table (placement size 8 for 3 slices)
    resolves nothing, even though the name's own spelling would: exit 2."""
    _, renamed = exported_then_renamed(tmp_path, "3g.39gb")
    wrong = renamed.replace("slices = 3, size = 4", "slices = 3, size = 8")
    host = make_host(tmp_path / "wrong", (A100, 1), layout=wrong)
    assert host.run("verify").code == 2


def test_strict_profile_names_ignores_the_geometry(tmp_path: Path) -> None:
    """With strict-profile-names the written geometry does not rescue an unknown name."""
    _, renamed = exported_then_renamed(tmp_path, "3g.48gb")
    strict = renamed.replace(
        "version = 2\n", "version = 2\n[restore]\nstrict-profile-names = true\n"
    )
    host = make_host(tmp_path / "strict", (A100, 1), layout=strict)
    assert host.run("verify").code == 2
