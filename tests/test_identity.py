"""GPU identity over the hardware's life (issue 12 item 2): `export --by`, a GPU replaced in its
slot told apart from a missing one (and adopted on request), and index entries that need the
host's GPU count. Every test runs migrestore against a simulated host."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import config, offline, profiles, simulator
from migrestore.errors import ConfigError
from migrestore.model import GpuState, NodeState
from migrestore.selection import Slot, match

from .simhost import H100, Host, make_host, mutations

A100 = "NVIDIA A100-SXM4-80GB"
ONE_3G = '  [[gpu.instance]]\n  profile = "3g.40gb"\n  placement = 4\n'


def uuids(host: Host) -> list[str]:
    """The GPUs' UUIDs, in index order."""
    return [g["uuid"] for g in json.loads(host.run("status", "--json").out)["gpus"]]


def by_uuid(host: Host, *, adopt: bool = False) -> str:
    """A layout with one entry per GPU by UUID: GPU 0 gets a 3g.40gb at 4, the others MIG off."""
    head = "version = 2\n[restore]\nadopt-replaced = true\n" if adopt else "version = 1\n"
    entries = []
    for n, gpu in enumerate(uuids(host)):
        body = ONE_3G if n == 0 else "mig = false\n"
        entries.append(f'[[gpu]]\nselect = {{ uuid = "{gpu}" }}\n{body}')
    return head + "".join(entries)


def last_run(host: Host) -> dict[str, object]:
    """The last run record of the simulated host."""
    record: dict[str, object] = json.loads(Path(f"{host.state}.lib/last-run.json").read_text())
    return record


def without_comments(text: str) -> str:
    """A layout file without its comment lines (the header holds the time of the export)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


# ---- export --by ----


def test_export_by_pci_survives_a_replaced_gpu(tmp_path: Path) -> None:
    """A layout exported by PCI bus id applies unchanged to the board that replaced a GPU in its
    slot: verify is in sync again after one apply."""
    host = make_host(tmp_path, (H100, 2), layout=f"version = 1\n[[gpu]]\nselect = 'all'\n{ONE_3G}")
    assert host.run("apply").code == 0
    exported = host.run("export", "--by", "pci").out
    assert 'select = { pci = "00000000:07:00.0" }' in exported
    host.write_layout(exported)
    simulator.replace_gpu(host.state, 0)
    assert host.run("verify").code == 3
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0


def test_export_by_index_writes_the_gpu_count(tmp_path: Path) -> None:
    """`export --by index` writes `[restore] gpus` with NVML's count, and the file verifies."""
    host = make_host(tmp_path, (H100, 3))
    exported = host.run("export", "--by", "index").out
    assert re.search(r"^\[restore\]\ngpus = 3$", exported, re.MULTILINE)
    assert config.parse(exported).restore.gpus == 3
    host.write_layout(exported)
    assert host.run("verify").code == 0


@pytest.mark.parametrize(("old", "new"), [("--by-model", "model"), ("--by-index", "index")])
def test_the_old_export_flags_are_aliases_of_by(tmp_path: Path, old: str, new: str) -> None:
    """`--by-model` and `--by-index` write what `--by model` and `--by index` write."""
    host = make_host(tmp_path, (H100, 2))
    first, second = host.run("export", old), host.run("export", "--by", new)
    assert first.code == second.code == 0
    assert without_comments(first.out) == without_comments(second.out)


def test_export_refuses_two_ways_at_once(tmp_path: Path) -> None:
    """`--by` and an old flag together are a usage error (exit 2)."""
    host = make_host(tmp_path, (H100, 1))
    result = host.run("export", "--by", "pci", "--by-model")
    assert result.code == 2
    assert "not allowed with argument" in result.err


# ---- a GPU replaced in its slot ----


def test_simulate_replace_keeps_slot_and_model_with_a_new_uuid_and_serial(tmp_path: Path) -> None:
    """`simulate replace` gives the GPU in the slot a new UUID and serial number, MIG off."""
    host = make_host(tmp_path, (A100, 2))
    before = json.loads(host.state.read_text())["gpus"]
    code, out, _ = _simulate("replace", str(host.state), "--gpu", "1")
    after = json.loads(host.state.read_text())["gpus"]
    assert code == 0
    assert after[1]["uuid"] in out
    assert after[1]["pci_bus_id"] == before[1]["pci_bus_id"]
    assert after[1]["model"] == before[1]["model"]
    assert after[1]["uuid"] != before[1]["uuid"]
    assert after[1]["serial"] != before[1]["serial"]
    assert after[0]["uuid"] == before[0]["uuid"]


def test_the_run_record_keeps_each_gpus_uuid_pci_bus_id_and_serial(tmp_path: Path) -> None:
    """Every GPU of an apply's record has its UUID, PCI bus id and the serial NVML reports."""
    host = make_host(tmp_path, (H100, 2), layout='version = 1\n[[gpu]]\nselect = "all"\n')
    assert host.run("apply").code == 0
    serials = [g["serial"] for g in json.loads(host.state.read_text())["gpus"]]
    record = last_run(host)["gpus"]
    assert isinstance(record, list)
    assert [(g["uuid"], g["pci"], g["serial"]) for g in record] == [
        (u, p, s) for u, p, s in zip(uuids(host), ("00000000:07:00.0", "00000000:0F:00.0"), serials)
    ]


def test_a_replaced_gpu_is_reported_apart_from_a_missing_one(tmp_path: Path) -> None:
    """After an RMA, verify, plan and doctor say "GPU replaced in the same slot" for the uuid
    entry, not "missing"; apply leaves the new GPU alone and exits 1."""
    host = make_host(tmp_path, (H100, 2))
    host.write_layout(by_uuid(host))
    assert host.run("apply").code == 0
    simulator.replace_gpu(host.state, 0)
    verify = host.run("verify")
    assert verify.code == 3
    assert "gpu[0] (select uuid=" in verify.out
    assert "GPU replaced in the same slot: 00000000:07:00.0 now holds" in verify.out
    assert "missing" not in verify.out
    plan = json.loads(host.run("plan", "--json").out)
    assert plan["missing"] == []
    [swap] = plan["replaced"]
    assert (swap["entry"], swap["pci"], swap["adopted"]) == ("gpu[0]", "00000000:07:00.0", False)
    assert swap["uuid"] == uuids(host)[0]
    doctor = host.run("doctor").out
    assert re.search(r"FAIL\s+layout\.fit\s+gpu\[0\].*GPU replaced in the same slot", doctor)
    simulator.reset_counters(host.state)
    applied = host.run("apply")
    assert applied.code == 1
    assert "gpu_replaced" in applied.err
    assert mutations(host.counters()) == 0
    assert host.run("verify").code == 3  # still replaced (not missing) after apply's record


def test_a_run_that_aborted_before_reading_the_gpus_keeps_the_slots(tmp_path: Path) -> None:
    """An apply that stopped before it read any GPU (no driver) records none; the GPU replaced
    afterwards is still told apart from a missing one, from the run before it."""
    host = make_host(tmp_path, (H100, 2))
    host.write_layout(by_uuid(host))
    assert host.run("apply").code == 0
    simulator.unload_driver(host.state)
    assert host.run("apply").code == 1
    assert last_run(host)["gpus"] == []
    simulator.load_driver(host.state)
    simulator.replace_gpu(host.state, 0)
    verify = host.run("verify")
    assert "GPU replaced in the same slot: 00000000:07:00.0 now holds" in verify.out
    assert "missing" not in verify.out


def test_a_gpu_gone_from_its_slot_is_missing(tmp_path: Path) -> None:
    """With the slot empty (the GPU removed), the uuid entry is missing, not replaced."""
    host = make_host(tmp_path, (H100, 2))
    host.write_layout(by_uuid(host))
    assert host.run("apply").code == 0
    simulator.remove_gpu(host.state, 0)
    verify = host.run("verify")
    assert verify.code == 3
    assert "missing: no GPU matches gpu[0]" in verify.out
    assert "replaced" not in verify.out


def test_without_a_run_record_a_replaced_gpu_is_missing(tmp_path: Path) -> None:
    """No record, no slot to compare: the uuid entry is missing, as before."""
    host = make_host(tmp_path, (H100, 1))
    host.write_layout(by_uuid(host))
    simulator.replace_gpu(host.state, 0)
    assert "missing: no GPU matches gpu[0]" in host.run("verify").out


def test_adopt_replaced_applies_the_entry_to_the_new_gpu_at_every_boot(tmp_path: Path) -> None:
    """With adopt-replaced, apply restores the uuid entry's layout on the GPU that replaced its
    GPU (one gpu_adopted info line), verify is in sync, and a later boot adopts it again."""
    host = make_host(tmp_path, (H100, 2))
    host.write_layout(by_uuid(host, adopt=True))
    assert host.run("apply").code == 0
    simulator.replace_gpu(host.state, 0)
    applied = host.run("apply")
    assert applied.code == 0
    assert len(re.findall(r"gpu_adopted .*entry=gpu\[0\]", applied.err)) == 1
    assert host.run("verify").code == 0
    new = uuids(host)[0]
    status = json.loads(host.run("status", "--json").out)["gpus"][0]
    assert status["mig"]["current"]
    assert [i["profile"] for i in status["instances"]] == ["3g.40gb"]
    record = last_run(host)["gpus"]
    assert isinstance(record, list)
    assert record[0]["uuid"] == new
    assert record[0]["replaces"]
    simulator.reboot(host.state)
    assert host.run("apply", "--boot").code == 0
    assert host.run("verify").code == 0


def test_adoption_yields_to_an_identity_entry_of_the_new_gpu(tmp_path: Path) -> None:
    """A pci entry that selects the new GPU governs it; the uuid entry is reported replaced."""
    host = make_host(tmp_path, (H100, 1))
    old = uuids(host)[0]
    entry = (
        f'version = 2\n[restore]\nadopt-replaced = true\n[[gpu]]\nselect = {{ uuid = "{old}" }}\n'
    )
    host.write_layout(entry + ONE_3G)
    assert host.run("apply").code == 0
    simulator.replace_gpu(host.state, 0)
    host.write_layout(f'{entry}{ONE_3G}[[gpu]]\nselect = {{ pci = "0000:07:00.0" }}\nmig = false\n')
    plan = json.loads(host.run("plan", "--json").out)
    assert [r["adopted"] for r in plan["replaced"]] == [False]
    assert host.run("apply").code == 1
    assert not json.loads(host.run("status", "--json").out)["gpus"][0]["mig"]["current"]


# ---- index entries and the GPU count ----


def index_layout(expected: str = "[restore]\ngpus = 3\n") -> str:
    """GPU 1 by index with one 3g.40gb, GPU 2 by index MIG off."""
    return (
        f"version = 2\n{expected}"
        f"[[gpu]]\nselect = {{ index = 1 }}\n{ONE_3G}"
        "[[gpu]]\nselect = { index = 2 }\nmig = false\n"
    )


def test_index_entries_stop_when_a_gpu_is_absent(tmp_path: Path) -> None:
    """GPU 0 gone from the bus shifts the indices: apply, verify and plan stop with one line
    naming the entry and both counts, exit 1, and no GPU is touched."""
    host = make_host(tmp_path, (H100, 3), layout=index_layout())
    simulator.remove_gpu(host.state, 0)
    simulator.reset_counters(host.state)
    for verb in ("apply", "verify", "plan"):
        result = host.run(verb)
        assert result.code == 1, verb
        [line] = [x for x in result.err.splitlines() if x.startswith("migrestore: error:")]
        assert "gpu[0].select: index 1 expects 3 GPUs (restore.gpus), NVML counts 2" in line
    assert mutations(host.counters()) == 0
    doctor = host.run("doctor").out
    assert re.search(r"FAIL\s+layout\.fit\s+.*NVML counts 2", doctor)


def test_a_per_entry_count_works_like_the_restore_one(tmp_path: Path) -> None:
    """`gpus` on the index entry itself is checked the same way, and named in the error."""
    layout = (
        "version = 2\n[[gpu]]\nselect = { index = 1 }\ngpus = 3\nmig = false\n"
        "[[gpu]]\nselect = { model = 'NVIDIA H100 80GB HBM3' }\nmig = false\n"
    )
    host = make_host(tmp_path, (H100, 3), layout=layout)
    assert host.run("apply").code == 0
    simulator.remove_gpu(host.state, 2)
    result = host.run("apply")
    assert result.code == 1
    assert "gpu[0].select: index 1 expects 3 GPUs (gpu[0].gpus)" in result.err


def test_a_lost_gpu_keeps_its_index_so_the_others_still_apply(tmp_path: Path) -> None:
    """A GPU that fell off the bus this boot is still counted (GpuIsLost): no index shift, the
    other index entries apply, the lost GPU fails alone (exit 1)."""
    host = make_host(tmp_path, (H100, 3), layout=index_layout())
    simulator.lose_gpu(host.state, 0)
    assert host.run("apply").code == 1
    gpus = json.loads(host.run("status", "--json").out)["gpus"]
    assert [(g["index"], g["mig"]["current"]) for g in gpus] == [(1, True), (2, False)]


def test_index_entries_without_a_count_still_work_with_warnings(tmp_path: Path) -> None:
    """A version 1 file with index entries and no count applies as before; apply, check and
    doctor warn that an absent GPU would shift the indices."""
    layout = index_layout(expected="").replace("version = 2", "version = 1")
    host = make_host(tmp_path, (H100, 3), layout=layout)
    applied = host.run("apply")
    assert applied.code == 0
    assert "index_entries_uncounted" in applied.err
    assert "gpu[0],gpu[1]" in applied.err
    check = host.run("check", "--model", H100)
    assert check.code == 0
    assert "warning: gpu[0]: selects by index, but the file does not say how many GPUs" in (
        check.out
    )
    doctor = host.run("doctor").out
    assert re.search(r"WARN\s+layout\.index-count\s+.*select by index.*\n.*gpus = 3", doctor)
    assert re.search(r"PASS\s+layout\.fit\s", doctor)


def test_the_count_keys_are_checked_and_need_version_2() -> None:
    """`gpus` on a non-index entry, a count of 0 and version 1 are each one-line errors."""
    cases = {
        "version = 2\n[[gpu]]\nselect = 'all'\ngpus = 2\n": "gpu[0].gpus: only an entry that",
        "version = 2\n[restore]\ngpus = 0\n": "restore.gpus: must be a positive integer, got 0",
        "version = 1\n[restore]\nadopt-replaced = false\n": (
            "restore.adopt-replaced: needs version = 2 (the file says version = 1)"
        ),
        "version = 1\n[[gpu]]\nselect = { index = 0 }\ngpus = 2\n": "version: is 1, but the file",
        "version = 2\n[restore]\nadopt-replaced = 1\n": "adopt-replaced: must be true or false",
    }
    for text, problem in cases.items():
        with pytest.raises(ConfigError, match=re.escape(problem)):
            config.parse(text)


def _simulate(*args: str) -> tuple[int, str, str]:
    """`migrestore simulate ARGS` in this process."""
    import contextlib
    import io

    from migrestore import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["simulate", *args])
    return code, out.getvalue(), err.getvalue()


def _gpu_at(model: str, uuid: str, pci: str, index: int = 0) -> GpuState:
    """A modelled GPU of `model` with this UUID and PCI bus id."""
    info = profiles.find_model(model)
    assert info is not None
    return replace(offline.modelled_gpu(info, index), uuid=uuid, pci=pci)


def test_a_gpu_of_another_model_in_the_slot_is_no_replacement() -> None:
    """Only a GPU of the recorded model in the recorded slot replaces; another model there leaves
    the uuid entry missing, and UUIDs compare without regard to case."""
    desired = config.parse('version = 1\n[[gpu]]\nselect = { uuid = "GPU-old" }\nmig = false\n')
    slots = (Slot(("GPU-OLD",), "0000:07:00.0", H100, "1000"),)
    same = NodeState((_gpu_at(H100, "GPU-new", "00000000:07:00.0"),))
    other = NodeState((_gpu_at(A100, "GPU-new", "00000000:07:00.0"),))
    moved = NodeState((_gpu_at(H100, "GPU-new", "00000000:0F:00.0"),))
    [swap] = match(desired, same, slots).replaced
    assert (swap.gpu.uuid, swap.previous_serial, swap.adopted) == ("GPU-new", "1000", False)
    for state in (other, moved):
        selection = match(desired, state, slots)
        assert selection.replaced == ()
        assert selection.missing == desired.gpus


def test_a_drop_in_gives_the_count_and_on_failure(tmp_path: Path) -> None:
    """`[restore] gpus` and `on-failure` from a conf.d drop-in merge over the main file (the
    merge raised KeyError for on-failure before), and the count then guards the index entries."""
    host = make_host(tmp_path, (H100, 3), layout=index_layout(expected=""))
    (tmp_path / "conf.d").mkdir()
    drop_in = 'version = 2\n[restore]\ngpus = 3\non-failure = "disable-mig"\n'
    (tmp_path / "conf.d" / "count.toml").write_text(drop_in)
    restore = config.load(host.config).restore
    assert (restore.gpus, restore.on_failure.value) == (3, "disable-mig")
    assert host.run("apply").code == 0
    simulator.remove_gpu(host.state, 2)
    result = host.run("apply")
    assert result.code == 1
    assert "index 1 expects 3 GPUs (restore.gpus), NVML counts 2" in result.err
