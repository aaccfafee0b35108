"""GPUs the catalogue does not know: a simulated host built with `simulate init --gpu-table FILE`
(tests/fixtures/simulator/unknown-gpu/x200.json, a made-up GPU), driven through every verb, and
offline `check` of entries for such a GPU."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from migrestore import cli, profiles
from migrestore.model import CiProfile
from migrestore.simulator import gpu_table

from .simhost import H100, ROOT, Host, Result, make_host

X200 = ROOT / "tests/fixtures/simulator/unknown-gpu/x200.json"
X200_NAME = "NVIDIA X200 Test GPU"
X200_ID = "0x2FFF10DE"
H200_PROBE = ROOT / "tests/fixtures/simulator/h200-driver-580/host-readonly-probe.txt"
BY_DEVICE_ID = f"""version = 2
[[gpu]]
select = {{ device-id = "{X200_ID}" }}
  [[gpu.instance]]
  profile = "3g.48gb"
  [[gpu.instance]]
  profile = "2g.24gb"
  compute = ["1c.2g.24gb", "1c.2g.24gb"]
  [[gpu.instance]]
  profile = "1g.12gb"
"""


def migrestore(*args: str) -> Result:
    """`migrestore ARGS...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


def x200_host(tmp_path: Path, layout: str, count: int = 1, *extra: str) -> Host:
    """A host made by `simulate init`: `count` X200s, then the GPUs of `extra` options."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    table = f"{X200}:{count}"
    made = migrestore("simulate", "init", str(host.state), "--gpu-table", table, *extra)
    assert made.code == 0, made.err
    host.write_layout(layout)
    return host


def entry(**changes: object) -> dict[str, object]:
    """The fixture's entry with some keys changed."""
    row: dict[str, object] = json.loads(X200.read_text())
    row.update(changes)
    return row


ALL = 'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "{profile}"\n'
FIRST_PROFILE = json.loads(X200.read_text())["gi_profiles"][0]


def test_the_fixture_is_a_gpu_the_catalogue_does_not_know() -> None:
    """Neither the fixture's name nor its device id is in the catalogue (else the test proves
    nothing), and its compute-instance profiles are derived from the geometry."""
    model = gpu_table.load(X200)
    assert profiles.find_model(model.name) is None
    assert profiles.find_model_by_pci_id(model.pci_device_ids[0]) is None
    two = model.table.gi_by_id(14)
    assert two is not None
    assert [c.name for c in model.table.ci_for(two.id)] == ["MIG 1c.2g.24gb", "MIG 2g.24gb"]


def test_derived_compute_instance_profiles_are_the_catalogues() -> None:
    """What migrestore derives for a GPU it does not know, applied to every catalogue model's
    GPU-instance profiles, gives that model's compute-instance profiles: index, id, name, slices,
    count, placements and default (the one-slice double-memory profile's is id 7)."""

    def rows(cis: tuple[CiProfile, ...]) -> list[tuple[object, ...]]:
        fields = ("index", "id", "name", "slices", "instances", "placements", "default")
        return sorted(tuple(getattr(c, f) for f in fields) for c in cis)

    checked = 0
    for model in profiles.catalogue():
        for gi in model.table.gi:
            derived = rows(profiles.derive_ci_profiles(gi))
            assert derived == rows(model.table.ci_for(gi.id)), (model.name, gi.name)
            checked += 1
    assert checked > 200


def test_the_double_memory_one_slice_profile_gets_the_drivers_compute_profile(
    tmp_path: Path,
) -> None:
    """The X200's 1g.24gb (NVML index 9) holds compute-instance profile 7 in the simulated
    driver, as on real GPUs: migrestore derives that id, so apply creates it and verify agrees."""
    layout = 'version = 1\n[[gpu]]\nselect = "all"\n'
    layout += "".join(f'[[gpu.instance]]\nprofile = "1g.24gb"\nplacement = {p}\n' for p in (0, 2))
    host = x200_host(tmp_path, layout)
    applied = host.run("apply")
    assert applied.code == 0, applied.out + applied.err
    assert host.run("verify").code == 0
    assert host.run("status").out.count("CI 0 1g.24gb") == 2


def test_every_verb_works_on_an_unknown_gpu_selected_by_device_id(tmp_path: Path) -> None:
    """Two X200s and an H100: plan, apply, verify, status, export, doctor all exit 0; the
    planner places the instances from the driver's table; the H100 is left unmanaged."""
    host = x200_host(tmp_path, BY_DEVICE_ID, 2, "--gpu", H100)
    plan = host.run("plan")
    assert plan.code == 0, plan.err
    assert "create 3g.48gb at 0" in plan.out
    assert "create 2g.24gb at 4" in plan.out
    assert "create 1g.12gb at 6" in plan.out
    assert "GPU 2 (NVIDIA H100 80GB HBM3" in plan.out
    assert "unmanaged" in plan.out
    applied = host.run("apply")
    assert applied.code == 0, applied.err
    assert applied.out.count("ok (8 change(s))") == 2
    assert host.run("verify").code == 0
    status = host.run("status")
    assert status.code == 0
    assert status.out.count("1c.2g.24gb") == 4
    assert f"GPU 0  {X200_NAME}" in status.out
    exported = host.run("export", "--by-model")
    assert exported.code == 0, exported.err
    assert f'model = "{X200_NAME}"' in exported.out
    host.write_layout(exported.out)
    assert host.run("verify").code == 0
    doctor = host.run("doctor")
    assert doctor.code == 0, doctor.out
    assert "MIG-capable, not in migrestore's model catalogue" in doctor.out


def test_an_unknown_gpu_loses_mig_mode_at_a_reboot_and_apply_restores_it(tmp_path: Path) -> None:
    """By default an unknown GPU is Hopper-like: after a reboot MIG is off (verify exits 3 for
    drift) and apply restores the layout with no GPU reset."""
    host = x200_host(tmp_path, BY_DEVICE_ID)
    assert host.run("apply").code == 0
    assert migrestore("simulate", "reboot", str(host.state)).code == 0
    drift = host.run("verify")
    assert drift.code == 3
    assert "needs to enable MIG mode" in drift.out
    plan = host.run("plan")
    assert "reset" not in plan.out
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0


def test_on_r535_the_table_is_read_once_mig_is_on(tmp_path: Path) -> None:
    """R535 shows no profile table with MIG off: plan says the instances wait for it, apply
    enables MIG, reads the driver's table and places them; verify --json is in sync."""
    host = x200_host(tmp_path, BY_DEVICE_ID, 1, "--driver", "535.x")
    plan = host.run("plan")
    assert "instances not planned yet" in plan.out
    assert host.run("apply").code == 0
    verify = host.run("verify", "--json")
    assert verify.code == 0
    document = json.loads(verify.out)
    assert document["in_sync"] is True
    assert [g["name"] for g in document["gpus"]] == [X200_NAME]


def test_a_table_saying_ampere_keeps_mig_mode_and_plans_a_reset(tmp_path: Path) -> None:
    """With `architecture = ampere` in the table the driver reports Ampere: the planner resets
    the GPU to apply the pending mode, and the mode survives a reboot."""
    table = tmp_path / "a900.json"
    table.write_text(json.dumps(entry(name="NVIDIA A900 Test", architecture="ampere")))
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    assert migrestore("simulate", "init", str(host.state), "--gpu-table", str(table)).code == 0
    host.write_layout(
        'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "4g.48gb"\n'
    )
    plan = host.run("plan")
    assert "reset the GPU to apply the pending MIG mode" in plan.out, plan.out
    assert host.run("apply").code == 0
    assert migrestore("simulate", "reboot", str(host.state)).code == 0
    assert "MIG on" in host.run("status").out


def test_all_selects_an_unknown_gpu_and_the_state_file_needs_no_table(tmp_path: Path) -> None:
    """The state file keeps the whole model: with the table file gone, a separate process
    applies an `all` layout and verifies it."""
    table = tmp_path / "copy.json"
    shutil.copy(X200, table)
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    assert migrestore("simulate", "init", str(host.state), "--gpu-table", f"{table}:2").code == 0
    table.unlink()
    host.write_layout(
        'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "7g.96gb"\n'
    )
    applied = host.spawn("apply")
    assert applied.code == 0, applied.err
    assert applied.out.count("ok (3 change(s))") == 2
    assert host.spawn("verify").code == 0


def test_gpus_come_in_command_line_order(tmp_path: Path) -> None:
    """`--gpu H100 --gpu-table X200` makes the H100 GPU 0 and the X200 GPU 1."""
    state = tmp_path / "host.json"
    made = migrestore("simulate", "init", str(state), "--gpu", H100, "--gpu-table", str(X200))
    assert made.code == 0
    assert f"1 x {X200_NAME} (device id {X200_ID}, not in the catalogue)" in made.out
    status = Host(state, tmp_path / "none.toml").run("status")
    assert f"GPU 0  {H100}" in status.out
    assert f"GPU 1  {X200_NAME}" in status.out


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (entry(name="NVIDIA H100 80GB HBM3"), "a GPU the catalogue knows (NVIDIA H100 80GB HBM3)"),
        (entry(pci_device_ids=["0x233010DE"]), "a GPU the catalogue knows"),
        (entry(pci_device_ids=[]), "pci_device_ids: give at least one id"),
        (entry(architecture="volta"), "architecture 'volta'"),
        (entry(gi_profiles=[]), "gi_profiles is empty"),
        ({"name": "X"}, "missing key 'gi_profiles'"),
        (
            entry(placement_units=8, gi_profiles=[{**FIRST_PROFILE, "placements": [[7, 2]]}]),
            "a placement lies outside 8 slices",
        ),
    ],
)
def test_a_bad_table_is_a_one_line_error(tmp_path: Path, row: object, says: str) -> None:
    """A table naming a known GPU, or malformed, is refused with exit 2 on one line; no host."""
    table = tmp_path / "table.json"
    table.write_text(json.dumps(row))
    state = tmp_path / "host.json"
    result = migrestore("simulate", "init", str(state), "--gpu-table", str(table))
    assert result.code == 2
    assert says in result.err
    assert len(result.err.strip().splitlines()) <= 2
    assert "Traceback" not in result.err
    assert not state.exists()


def test_init_needs_a_gpu(tmp_path: Path) -> None:
    """Neither --gpu nor --gpu-table: exit 2, one line."""
    result = migrestore("simulate", "init", str(tmp_path / "host.json"))
    assert result.code == 2
    assert "at least one --gpu MODEL or --gpu-table FILE" in result.err


FLEET = f"""version = 2
[[gpu]]
select = {{ device-id = "{X200_ID}" }}
  [[gpu.instance]]
  profile = "3g.71gb"
[[gpu]]
select = {{ device-id = "0x233010DE" }}
  [[gpu.instance]]
  profile = "{{h100}}"
"""


def test_offline_check_says_an_unknown_device_id_is_not_checkable(tmp_path: Path) -> None:
    """No host: the unknown id's entry is one `not checkable offline` line and exit 0; the known
    id's entry is still checked against its catalogue model."""
    layout = tmp_path / "layout.toml"
    layout.write_text(FLEET.replace("{h100}", "3g.40gb"))
    result = migrestore("--config", str(layout), "check")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (
        f"gpu[0] (device-id={X200_ID}): not checkable offline: unknown device id {X200_ID}"
    )
    assert lines[1] == f"gpu[1] (device-id=0x233010DE) on {H100}: 3g.40gb@0 [1 CI]"


def test_offline_check_still_fails_the_entries_it_can_check(tmp_path: Path) -> None:
    """An entry for a known id that does not fit fails the file (exit 2) as before."""
    layout = tmp_path / "layout.toml"
    layout.write_text(FLEET.replace("{h100}", "3g.99gb"))
    result = migrestore("--config", str(layout), "check")
    assert result.code == 2
    assert 'unknown profile "3g.99gb"' in result.err


def test_check_with_a_profile_table_checks_an_unknown_device_id(tmp_path: Path) -> None:
    """`check --profile-table` (a driver's captured table): the unknown id's entry is checked
    against that table, a profile it lacks is exit 2."""
    only_unknown = FLEET.split('[[gpu]]\nselect = { device-id = "0x2330', maxsplit=1)[0]
    host = make_host(tmp_path, (H100, 1), layout=only_unknown)
    result = host.run("check", "--profile-table", str(H200_PROBE))
    assert result.code == 0, result.err
    assert result.out == f"gpu[0] (device-id={X200_ID}) on device id {X200_ID}: 3g.71gb@0 [1 CI]\n"
    host.write_layout(only_unknown.replace("3g.71gb", "3g.48gb"))
    refused = host.run("check", "--profile-table", str(H200_PROBE))
    assert refused.code == 2
    assert 'unknown profile "3g.48gb" for device id' in refused.err


def test_a_profile_table_alone_stands_for_an_all_entry(tmp_path: Path) -> None:
    """`check --profile-table` with no --model: an "all" entry (the way to select a GPU with no
    catalogue name) is checked against the table; without the table it still needs --model."""
    host = make_host(tmp_path, (H100, 1), layout=ALL.format(profile="3g.71gb"))
    result = host.run("check", "--profile-table", str(H200_PROBE))
    assert result.code == 0, result.err
    assert result.out == "gpu[0] (all) on the --profile-table GPU: 3g.71gb@0 [1 CI]\n"
    alone = host.run_offline("check")
    assert alone.code == 2
    assert "give --model NAME (or --profile-table FILE) to check it" in alone.err


def test_an_exported_unknown_model_checks_against_a_profile_table(tmp_path: Path) -> None:
    """`export --by-model` on a host with an X200 writes its NVML name; offline `check` refuses
    that name (exit 2, it could be a typo) but checks it against the X200's table with
    `--profile-table` (captured as nvidia-smi prints it, here the H200 probe renamed)."""
    host = x200_host(tmp_path, ALL.format(profile="3g.48gb"))
    assert host.run("apply").code == 0
    exported = host.run("export", "--by-model")
    host.write_layout(exported.out.replace("3g.48gb", "3g.71gb"))
    alone = host.run_offline("check")
    assert alone.code == 2
    assert f'gpu[0].select.model: unknown model "{X200_NAME}"' in alone.err
    checked = host.run("check", "--profile-table", str(H200_PROBE))
    assert checked.code == 0, checked.err
    assert checked.out.startswith(f"gpu[0] (model={X200_NAME}) on {X200_NAME}: 3g.71gb@0 [1 CI]")
