"""import-mig-parted: mig-parted configs become layout files with exact, feasible placements."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import cli, config, migparted, offline, simulator
from migrestore.errors import ConfigError
from migrestore.model import SelectorKind

FIXTURES = Path(__file__).parent / "fixtures" / "mig-parted"
A100_40 = "NVIDIA A100-SXM4-40GB"
H100_SXM = "NVIDIA H100 80GB HBM3"

# Fixture labels whose entries select by "all" or index: the model they were written for.
MODEL_FOR = {
    "dgx-a100-40gb.yaml": A100_40,
    "subsystem-filter.yaml": H100_SXM,
}


def labels(fixture: Path) -> list[str]:
    """The labels of a mig-parted config."""
    return list(migparted.parse(fixture.read_text(), str(fixture)))


def every_label() -> list[tuple[Path, str]]:
    """(fixture, label) for every label of every fixture."""
    return [(f, label) for f in sorted(FIXTURES.glob("*.yaml")) for label in labels(f)]


def convert(fixture: str, label: str) -> str:
    """Convert one label of a fixture."""
    path = FIXTURES / fixture
    return migparted.convert(path.read_text(), str(path), label)


def one_entry(entry: dict[str, object], label: str = "test") -> str:
    """A mig-parted config with one label holding one entry (JSON is YAML too)."""
    return json.dumps({"version": "v1", "mig-configs": {label: [entry]}})


def check_offline(text: str, model: str | None) -> list[str]:
    """`migrestore check` on the converted file: each entry resolved on its modelled GPU."""
    desired = config.parse(text, "converted")
    lines = []
    for spec in desired.gpus:
        name = None if spec.selector.kind is SelectorKind.MODEL else model
        lines += offline.check(replace(desired, gpus=(spec,)), name)
    return lines


@pytest.mark.parametrize(("fixture", "label"), every_label(), ids=lambda v: getattr(v, "name", v))
def test_every_fixture_label_converts_to_a_feasible_layout(fixture: Path, label: str) -> None:
    """Each converted label is a valid layout file that resolves on its model, placements fixed."""
    text = migparted.convert(fixture.read_text(), str(fixture), label)
    desired = config.parse(text, "converted")
    assert desired.gpus
    lines = check_offline(text, MODEL_FOR.get(fixture.name))
    # Index entries without the host's GPU count (mig-parted's `devices: [0, 1]`) add a warning.
    assert len([line for line in lines if not line.startswith("warning: ")]) == len(desired.gpus)
    for spec in desired.gpus:
        assert all(inst.placement is not None for inst in spec.instances)
        assert all(inst.count == 1 for inst in spec.instances)


def test_balanced_a100_layout() -> None:
    """2 x 1g.5gb + 2g.10gb + 3g.20gb on every GPU: the planner's placements, written out."""
    desired = config.parse(convert("dgx-a100-40gb.yaml", "all-balanced"))
    [spec] = desired.gpus
    assert spec.selector.kind is SelectorKind.ALL
    placed = [(i.profile, i.placement, i.compute) for i in spec.instances]
    assert placed == [("2g.10gb", 0, None), ("1g.5gb", 2, None), ("1g.5gb", 3, None),
                      ("3g.20gb", 4, None)]  # fmt: skip


def test_disabled_entries_and_index_selectors() -> None:
    """custom-config: GPUs 0-3 get mig = false; GPUs 4-7 each get their own entry by index."""
    desired = config.parse(convert("dgx-a100-40gb.yaml", "custom-config"))
    by_index = {spec.selector.value: spec for spec in desired.gpus}
    assert sorted(by_index) == list(range(8))
    assert all(not by_index[i].mig and not by_index[i].instances for i in range(4))
    assert [i.profile for i in by_index[4].instances] == ["1g.5gb"] * 7
    assert [i.profile for i in by_index[6].instances] == ["3g.20gb"] * 2


def test_empty_mig_devices_means_mig_on_without_instances() -> None:
    """`mig-devices: {}` is MIG on with no instances, not MIG off."""
    [spec] = config.parse(convert("dgx-a100-40gb.yaml", "all-enabled")).gpus
    assert spec.mig
    assert spec.instances == ()


def test_device_filter_becomes_one_model_entry_per_model() -> None:
    """Each filter id becomes its own model's entry: the A100-40GB ids name SXM4, PCIe and A800."""
    desired = config.parse(convert("all-1g-per-model.yaml", "all-1g"))
    models = [spec.selector.value for spec in desired.gpus]
    assert models[:3] == [A100_40, "NVIDIA A100-PCIE-40GB", "NVIDIA A800 40GB Active"]
    assert "NVIDIA A100 80GB PCIe" in models
    assert H100_SXM in models
    assert "NVIDIA H100 PCIe" in models
    assert len(models) == len(set(models)) == 14


def test_unquoted_pci_id_is_read_as_written() -> None:
    """YAML reads an unquoted 0x233510DE as a number; it still selects the H200."""
    text = convert("all-balanced-per-model.yaml", "all-balanced")
    assert "0x233510DE" in text
    assert 'select = { model = "NVIDIA H200" }' in text


def test_compute_profiles_fill_gpu_instances_as_mig_parted_does() -> None:
    """4 x 1c.2g.10gb are two 2g.10gb instances with two 1c compute instances each."""
    [spec] = config.parse(convert("compute-profiles.yaml", "shared-2g")).gpus
    twos = [i for i in spec.instances if i.profile == "2g.10gb"]
    assert len(twos) == 2
    for inst in twos:
        assert inst.compute is not None
        assert [(c.profile, c.placement) for c in inst.compute] == [
            ("1c.2g.10gb", 0),
            ("1c.2g.10gb", 1),
        ]
    assert [i.profile for i in spec.instances if i.compute is None] == ["3g.20gb"]


def test_larger_compute_instances_are_placed_first() -> None:
    """1 x 2c.3g + 3 x 1c.3g: the 2c shares its GPU instance with one 1c; two 1c share the other."""
    [spec] = config.parse(convert("compute-profiles.yaml", "split-3g")).gpus
    computes = [[(c.profile, c.placement) for c in i.compute or ()] for i in spec.instances]
    assert computes == [
        [("2c.3g.40gb", 0), ("1c.3g.40gb", 2)],
        [("1c.3g.40gb", 0), ("1c.3g.40gb", 1)],
    ]


def test_media_extension_profiles() -> None:
    """`1g.18gb+me` stays a +me instance beside six plain 1g.18gb instances."""
    [spec] = config.parse(convert("compute-profiles.yaml", "media-extension")).gpus
    assert sorted(str(i.profile) for i in spec.instances) == ["1g.18gb"] * 6 + ["1g.18gb+me"]


def test_subsystem_filter_is_kept_in_a_device_id_selector() -> None:
    """A filter with a subsystem id selects by PCI id and subsystem id, placed on its model."""
    text = convert("subsystem-filter.yaml", "h100-sxm-vendor-board")
    [spec] = config.parse(text).gpus
    assert spec.selector.kind is SelectorKind.DEVICE_ID
    assert spec.selector.value == "0x233010DE:0x16C110DE"
    assert not spec.optional
    assert [(i.profile, i.placement) for i in spec.instances] == [("3g.40gb", 0), ("3g.40gb", 4)]


def test_index_entry_with_filter_is_checked_on_the_filter_model() -> None:
    """devices: [0, 1] behind an H100 board filter: index entries, resolved on the H100, noted
    with the board's subsystem id."""
    text = convert("subsystem-filter.yaml", "h100-first-two")
    desired = config.parse(text)
    assert [s.selector.value for s in desired.gpus] == [0, 1]
    assert f"the GPU must be an {H100_SXM} with PCI subsystem id 0x16C110DE" in text


def test_profile_missing_on_the_model_is_an_error_naming_everything() -> None:
    """2g.10gb on an A100 80GB (mig-parted #18 applied it as an empty layout): exit 2, one line."""
    text = one_entry(
        {
            "device-filter": "0x20B210DE",
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"2g.10gb": 1},
        },
        "mistake",
    )
    with pytest.raises(ConfigError) as caught:
        migparted.convert(text, "cfg.yaml", "mistake")
    message = str(caught.value)
    assert message.startswith("cfg.yaml: mig-configs.mistake[0].mig-devices: ")
    assert 'profile "2g.10gb" does not exist on NVIDIA A100-SXM4-80GB' in message
    assert "valid profiles: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb" in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_unknown_compute_profile_lists_the_valid_ones() -> None:
    """3c.2g.20gb does not exist: the valid compute profiles of 2g.20gb are listed."""
    text = one_entry(
        {
            "device-filter": "0x20B210DE",
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"3c.2g.20gb": 1},
        }
    )
    with pytest.raises(ConfigError, match=r"valid compute profiles of 2g.20gb: 1c.2g.20gb, 2g"):
        migparted.convert(text, "cfg.yaml")


def test_unknown_pci_id_becomes_an_optional_device_id_entry() -> None:
    """A device-filter id no catalogue model has is kept as an optional device-id entry."""
    text = one_entry({"device-filter": ["0x1FB010DE"], "devices": "all", "mig-enabled": False})
    [spec] = config.parse(migparted.convert(text, "cfg.yaml")).gpus
    assert spec.selector.kind is SelectorKind.DEVICE_ID
    assert spec.selector.value == "0x1FB010DE"
    assert spec.optional
    assert not spec.mig


def test_too_many_instances_is_an_error() -> None:
    """Eight 1g.10gb on an A100 80GB cannot fit: the entry and the limit are named."""
    text = one_entry(
        {
            "device-filter": "0x20B210DE",
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"1g.10gb": 8},
        }
    )
    with pytest.raises(ConfigError, match=r'mig-devices."1g.10gb": 8 x 1g.10gb asked, at most 7'):
        migparted.convert(text, "cfg.yaml")


def test_several_labels_need_a_choice() -> None:
    """Without --config-name a file with several labels is an error listing them."""
    path = FIXTURES / "compute-profiles.yaml"
    with pytest.raises(ConfigError, match=r"4 labels; choose one .*: shared-2g, split-3g, media"):
        migparted.convert(path.read_text(), str(path))
    with pytest.raises(ConfigError, match=r'no label "nope"; labels: shared-2g, split-3g'):
        migparted.convert(path.read_text(), str(path), "nope")


def test_model_from_profile_names_and_ambiguity() -> None:
    """Without a filter the model comes from the profile names; several different layouts fail."""
    fits = one_entry({"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 7}})
    text = migparted.convert(fits, "cfg.yaml")
    assert "Placements checked on: NVIDIA A100-SXM4-80GB; NVIDIA H100 80GB HBM3" in text
    ambiguous = one_entry({"devices": "all", "mig-enabled": True, "mig-devices": {"1g.24gb": 1}})
    with pytest.raises(ConfigError, match=r"several models with different layouts") as caught:
        migparted.convert(ambiguous, "cfg.yaml")
    assert "--model" in caught.value.hint
    chosen = migparted.convert(ambiguous, "cfg.yaml", model="NVIDIA H20")
    assert check_offline(chosen, "NVIDIA H20")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"devices": 7, "mig-enabled": False}, r'devices: must be "all" or a list'),
        ({"devices": "all"}, r"mig-enabled: must be true or false"),
        ({"devices": "all", "mig-enabled": True}, r"mig-devices: required with mig-enabled"),
        (
            {"devices": "all", "mig-enabled": False, "mig-devices": {"1g.5gb": 1}},
            r"must be empty when mig-enabled is false",
        ),
        (
            {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 0}},
            r"all counts are 0",
        ),
        (
            {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": -1}},
            r"count must be an integer >= 0",
        ),
        (
            {"devices": "all", "mig-enabled": True, "mig-devices": {"big": 1}},
            r"'big' is not a MIG profile name",
        ),
        ({"devices": "all", "mig-enabled": False, "gpus": 1}, r"unexpected field 'gpus'"),
        (
            {"devices": "all", "mig-enabled": False, "device-filter": "20B0"},
            r"must be PCI ids such as",
        ),
    ],
)
def test_malformed_entries_are_refused_like_mig_parted(
    entry: dict[str, object], problem: str
) -> None:
    """mig-parted's strict schema: every malformed entry is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=problem):
        migparted.convert(one_entry(entry), "cfg.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: v2\nmig-configs: {a: [{devices: all, mig-enabled: false}]}\n", r'"v1"'),
        ("version: v1\nmig-configs: {}\n", r"mig-configs: must be a non-empty mapping"),
        ("version: v1\nmig-configs: {a: []}\n", r"mig-configs.a: must be a non-empty list"),
        ("version: v1\nmig-configs: [\n", r"line \d+: not valid YAML"),
    ],
)
def test_malformed_documents_are_refused(text: str, problem: str) -> None:
    """Version, empty configs and broken YAML are errors."""
    with pytest.raises(ConfigError, match=problem):
        migparted.convert(text, "cfg.yaml")


def test_a_broader_entry_after_a_narrower_one_is_refused() -> None:
    """mig-parted lets the later `devices: all` override GPU 0; migrestore would not: refuse."""
    text = json.dumps(
        {
            "version": "v1",
            "mig-configs": {
                "x": [
                    {"devices": [0], "mig-enabled": False},
                    {"devices": "all", "mig-enabled": True, "mig-devices": {}},
                ]
            },
        }
    )
    with pytest.raises(ConfigError, match=r"x\[1\] \(all\) comes after .*x\[0\] \(index=0\)"):
        migparted.convert(text, "cfg.yaml")


def test_cli_prints_the_layout_and_fails_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrestore import-mig-parted FILE --config-name L` prints the file; a bad label exits 2."""
    path = FIXTURES / "dgx-a100-40gb.yaml"
    code = cli.main(["import-mig-parted", str(path), "--config-name", "all-3g.20gb"])
    out = capsys.readouterr().out
    assert code == 0
    assert [i.profile for i in config.parse(out).gpus[0].instances] == ["3g.20gb", "3g.20gb"]
    assert cli.main(["import-mig-parted", str(path), "--config-name", "nope"]) == 2
    assert 'no label "nope"' in capsys.readouterr().err
    assert cli.main(["import-mig-parted", str(tmp_path / "missing.yaml")]) == 2


def test_converted_layouts_apply_on_simulated_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-model balanced config, converted, applies and verifies on a host with each model."""
    fixture = FIXTURES / "all-balanced-per-model.yaml"
    layout = tmp_path / "layout.toml"
    layout.write_text(migparted.convert(fixture.read_text(), str(fixture), "all-balanced"))
    models = [str(spec.selector.value) for spec in config.load(layout).gpus]
    state = tmp_path / "host.json"
    simulator.init_host(state, [(name, 1) for name in models])
    run = ["--simulate", str(state), "--config", str(layout)]
    assert cli.main([*run, "apply"]) == 0
    assert cli.main([*run, "verify"]) == 0
    assert "in sync" in capsys.readouterr().out.lower()
