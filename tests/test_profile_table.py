"""`check --profile-table FILE`: a layout checked against a driver's captured profile table
(`nvidia-smi mig -lgip` and `-lgipp`), read from the real H200 probe (driver 580.159.04)."""

from __future__ import annotations

from pathlib import Path

from migrestore import profile_table, profiles

from .simhost import ROOT, make_host

H200 = "NVIDIA H200"
PROBE = ROOT / "tests/fixtures/simulator/h200-driver-580/host-readonly-probe.txt"
LAYOUT = """\
version = 1
{restore}
[[gpu]]
select = {{ model = "{model}" }}
  [[gpu.instance]]
  profile = "{name}"
  placement = 0
  [[gpu.instance]]
  profile = "2g.35gb"
  placement = 4
"""


def check(tmp_path: Path, name: str, table: Path = PROBE, restore: str = "") -> tuple[int, str]:
    """`migrestore check --profile-table TABLE` on a layout asking for `name` at 0: (code, text)."""
    layout = LAYOUT.format(restore=restore, model=H200, name=name)
    host = make_host(tmp_path, (H200, 1), layout=layout)
    result = host.run("check", "--profile-table", str(table))
    return result.code, result.out + result.err


def test_the_real_h200_table_reads_as_the_catalogue_has_it() -> None:
    """Every profile of the captured table: id, name, slices, count, memory and placements are the
    catalogue's H200 entry (which came from the same host's NVML reading)."""
    read = profile_table.load(PROBE)
    model = profiles.find_model(H200)
    assert model is not None
    fields = ("id", "name", "slices", "instances", "memory_mb", "placements")
    by_id = {p.id: p for p in model.table.gi}
    assert len(read.gi) == len(by_id) == 7
    for profile in read.gi:
        row = [getattr(profile, f) for f in fields]
        assert row == [getattr(by_id[profile.id], f) for f in fields]


def test_a_layout_the_table_holds_checks_out(tmp_path: Path) -> None:
    """3g.71gb at 0 and 2g.35gb at 4 against the captured table: exit 0, the layout shown."""
    code, text = check(tmp_path, "3g.71gb")
    assert code == 0, text
    assert "3g.71gb@0 [1 CI] + 2g.35gb@4 [1 CI]" in text


def test_a_name_this_table_spells_otherwise_is_reported(tmp_path: Path) -> None:
    """A name the captured driver does not have (3g.70gb) resolves by geometry, and check says
    so as apply would warn; with strict-profile-names it is refused (2)."""
    code, text = check(tmp_path, "3g.70gb")
    assert code == 0, text
    assert '"3g.70gb" is called "3g.71gb" by this driver' in text
    strict = "[restore]\nstrict-profile-names = true"
    code, text = check(tmp_path / "strict", "3g.70gb", restore=strict)
    assert code == 2
    assert 'unknown profile "3g.70gb"' in text


def test_a_profile_the_table_lacks_is_exit_2(tmp_path: Path) -> None:
    """A profile no row of the table has (3g.90gb): exit 2 with the key named."""
    code, text = check(tmp_path, "3g.90gb")
    assert code == 2
    assert "gpu[0].instance[0].profile" in text


def test_a_table_without_placements_is_refused(tmp_path: Path) -> None:
    """Only the -lgip output (no -lgipp): a one-line error naming what is missing, exit 2."""
    lgip_only = tmp_path / "lgip.txt"
    lgip_only.write_text(PROBE.read_text().split("== mig -lgipp")[0])
    code, text = check(tmp_path / "host", "3g.71gb", table=lgip_only)
    assert code == 2
    assert "no `nvidia-smi mig -lgipp` placements for profile" in text
    assert "Traceback" not in text


def test_a_file_with_no_table_is_refused(tmp_path: Path) -> None:
    """A file that holds no -lgip rows: exit 2, one line."""
    empty = tmp_path / "empty.txt"
    empty.write_text("No MIG-enabled devices found.\n")
    code, text = check(tmp_path / "host", "3g.71gb", table=empty)
    assert code == 2
    assert "no `nvidia-smi mig -lgip` profile rows found" in text
