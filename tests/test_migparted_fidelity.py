"""import-mig-parted reads what mig-parted reads: unknown and named filters, subsystem ids,
`devices: []`, multi-attribute profiles and every grouping of compute instances that fits."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import config, migparted, profiles, simulator
from migrestore.errors import ConfigError
from migrestore.model import SelectorKind
from tests.simhost import make_host

A100_40 = "NVIDIA A100-SXM4-40GB"
H100 = "NVIDIA H100 80GB HBM3"
UNKNOWN_ID = "0x1FB010DE"  # a PCI id no catalogue model has (DGX Station's display GPU)


def convert(yaml: str, model: str | None = None) -> str:
    """The layout file of the only label of a mig-parted config."""
    return migparted.convert(yaml, "cfg.yaml", model=model)


def test_unknown_filter_id_is_kept_as_an_optional_entry_placed_by_the_planner() -> None:
    """An unknown id beside a known one: the known one is placed, the unknown one is an optional
    device-id entry whose instances have no placements (its profile table is the driver's)."""
    text = convert(
        f"""version: v1
mig-configs:
  all-balanced:
    - device-filter: ["0x20B010DE", "{UNKNOWN_ID}"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 2
        "3g.20gb": 1
"""
    )
    known, unknown = config.parse(text).gpus
    assert known.selector.value == A100_40
    assert all(i.placement is not None for i in known.instances)
    assert unknown.selector.kind is SelectorKind.DEVICE_ID
    assert unknown.selector.value == UNKNOWN_ID
    assert unknown.optional
    assert [(i.profile, i.placement, i.count) for i in unknown.instances] == [
        ("1g.5gb", None, 2),
        ("3g.20gb", None, 1),
    ]
    assert f"catalogue does not know {UNKNOWN_ID}" in text


def test_compute_profiles_on_an_unknown_gpu_are_refused_with_the_reason() -> None:
    """Grouping 1c.2g.10gb into GPU instances needs the profile table: a one-line error."""
    yaml = f"""version: v1
mig-configs:
  shared:
    - device-filter: "{UNKNOWN_ID}"
      devices: all
      mig-enabled: true
      mig-devices:
        "1c.2g.10gb": 2
"""
    with pytest.raises(ConfigError, match=r"compute-instance profiles need the GPU's profile"):
        convert(yaml)


def test_index_entries_behind_an_unknown_filter_are_placed_on_the_host(tmp_path: Path) -> None:
    """`devices: [0]` behind an unknown id: an index entry without placements, which the planner
    places from the host's table; apply and verify succeed."""
    text = convert(
        f"""version: v1
mig-configs:
  first:
    - device-filter: "{UNKNOWN_ID}"
      devices: [0]
      mig-enabled: true
      mig-devices:
        "1g.10gb": 3
"""
    )
    [spec] = config.parse(text).gpus
    assert spec.selector.kind is SelectorKind.INDEX
    assert [(i.placement, i.count) for i in spec.instances] == [(None, 3)]
    host = make_host(tmp_path, (H100, 1), layout=text)
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0
    status = json.loads(host.run("status", "--json").out)
    assert len(status["gpus"][0]["instances"]) == 3


def test_filters_by_model_name() -> None:
    """A name the catalogue knows selects its model with placements; an unknown name is an
    optional model entry; a malformed id is still refused."""
    text = convert(
        f"""version: v1
mig-configs:
  named:
    - device-filter: ["{A100_40}", "NVIDIA Z900"]
      devices: all
      mig-enabled: true
      mig-devices:
        "3g.20gb": 2
"""
    )
    known, unknown = config.parse(text).gpus
    assert (known.selector.kind, known.selector.value) == (SelectorKind.MODEL, A100_40)
    assert [i.placement for i in known.instances] == [0, 4]
    assert not known.optional
    assert (unknown.selector.value, unknown.optional) == ("NVIDIA Z900", True)
    assert "mig-parted matches a device-filter by PCI id only" in text
    malformed = "version: v1\nmig-configs:\n  x:\n    - device-filter: '0x20B0'\n"
    malformed += "      devices: all\n      mig-enabled: false\n"
    with pytest.raises(ConfigError, match=r"must be PCI ids such as"):
        convert(malformed)


SUBSYSTEM = """version: v1
mig-configs:
  vendor-board:
    - device-filter: "0x233010DE:0x16C110DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
"""


def test_subsystem_id_selects_only_that_board(tmp_path: Path) -> None:
    """Of two H100s, only the one whose board reads subsystem 0x16C110DE gets the layout; the
    other stays unmanaged and untouched."""
    host = make_host(tmp_path, (H100, 2), layout=convert(SUBSYSTEM))
    simulator.set_subsystem_id(host.state, 1, 0x16C110DE)
    applied = host.run("apply")
    assert applied.code == 0, applied.err
    assert host.run("verify").code == 0
    status = json.loads(host.run("status", "--json").out)
    assert [len(g["instances"]) for g in status["gpus"]] == [0, 2]


def test_subsystem_entry_is_absent_on_other_boards(tmp_path: Path) -> None:
    """Without a board of that subsystem id the entry selects nothing: absent, not an error."""
    host = make_host(tmp_path, (H100, 1), layout=convert(SUBSYSTEM))
    verified = host.run("verify", "--json")
    assert verified.code == 0, verified.err
    assert len(json.loads(verified.out)["absent"]) == 1


def test_set_subsystem_id_refuses_zero(tmp_path: Path) -> None:
    """A simulated board needs a real 32-bit subsystem id."""
    host = make_host(tmp_path, (H100, 1))
    with pytest.raises(ConfigError, match=r"32 bits"):
        simulator.set_subsystem_id(host.state, 0, 0)


def test_an_entry_for_no_devices_is_dropped_with_a_comment() -> None:
    """`devices: []` selects no GPU: no [[gpu]] entry, a header line says so."""
    text = convert(
        """version: v1
mig-configs:
  nothing-for-some:
    - devices: []
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
    - devices: all
      mig-enabled: false
"""
    )
    [spec] = config.parse(text).gpus
    assert spec.selector.kind is SelectorKind.ALL
    assert "# mig-configs.nothing-for-some[0] (devices: []) selects no GPU" in text
    alone = "version: v1\nmig-configs:\n  x:\n    - devices: []\n      mig-enabled: false\n"
    assert config.parse(convert(alone)).gpus == ()


def test_multi_attribute_profiles_resolve_when_the_table_has_them() -> None:
    """`1g.24gb+me,gfx` names the profile whose attributes are me and gfx, in any order; a model
    without it refuses it naming the profiles it has."""
    model = profiles.find_model("NVIDIA RTX PRO 6000 Blackwell Server Edition")
    assert model is not None
    gfx = profiles.resolve_gi(model.table, "1g.24gb+gfx")
    assert gfx is not None
    both = replace(gfx, name="MIG 1g.24gb+gfx+me")
    table = replace(model.table, gi=tuple(both if p == gfx else p for p in model.table.gi))
    assert profiles.resolve_gi(table, "1g.24gb+me,gfx") == both
    entry = migparted.parse(
        """version: v1
mig-configs:
  media:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.24gb+me,gfx": 1
        "1g.24gb": 2
""",
        "cfg.yaml",
    )["media"][0]
    [block] = migparted.entry_blocks(entry, "cfg.yaml", replace(model, table=table))
    assert sorted(str(i.profile) for i in block.instances) == [
        "1g.24gb",
        "1g.24gb",
        "1g.24gb+gfx+me",
    ]
    with pytest.raises(ConfigError, match=r'profile "1g.24gb\+me,gfx" does not exist on NVIDIA'):
        migparted.entry_blocks(entry, "cfg.yaml", model)


@pytest.mark.parametrize(
    ("devices", "gpu_instances"),
    [
        ({"2c.7g.40gb": 2, "3c.7g.40gb": 1}, [["2c.7g.40gb", "2c.7g.40gb", "3c.7g.40gb"]]),
        (
            {"1c.3g.20gb": 2, "2c.3g.20gb": 2},
            [["1c.3g.20gb", "2c.3g.20gb"], ["1c.3g.20gb", "2c.3g.20gb"]],
        ),
    ],
)
def test_compute_instances_are_grouped_in_any_order_that_fits(
    tmp_path: Path, devices: dict[str, int], gpu_instances: list[list[str]]
) -> None:
    """mig-parted tries the orders of the profiles: a layout that fits in one of them is
    accepted, grouped that way, and applies and verifies on a simulated A100."""
    yaml = json.dumps(
        {
            "version": "v1",
            "mig-configs": {
                "cis": [{"devices": "all", "mig-enabled": True, "mig-devices": devices}]
            },
        }
    )
    text = convert(yaml, model=A100_40)
    [spec] = config.parse(text).gpus
    grouped = [sorted(str(c.profile) for c in i.compute or ()) for i in spec.instances]
    assert grouped == gpu_instances
    host = make_host(tmp_path, (A100_40, 1), layout=text)
    applied = host.run("apply")
    assert applied.code == 0, applied.err
    assert host.run("verify").code == 0


def test_compute_instances_that_fit_no_grouping_are_refused_with_the_reason() -> None:
    """3 x 1c.3g + 2 x 2c.3g need three 3g instances in every grouping: refused, naming the limit
    and that no other order fits either."""
    yaml = json.dumps(
        {
            "version": "v1",
            "mig-configs": {
                "cis": [
                    {
                        "devices": "all",
                        "mig-enabled": True,
                        "mig-devices": {"1c.3g.20gb": 3, "2c.3g.20gb": 2},
                    }
                ]
            },
        }
    )
    with pytest.raises(ConfigError) as caught:
        convert(yaml, model=A100_40)
    assert "3 x 3g.20gb asked, at most 2 fit" in str(caught.value)
    assert "in any order of its profiles mig-parted may try" in str(caught.value)


def test_a_fleet_config_imports_then_plans_applies_and_verifies(tmp_path: Path) -> None:
    """One mig-parted config with an unknown id, a model-name filter with compute instances that
    fit only in another order, a subsystem-id filter and `devices: []`: imported, it plans,
    applies and verifies on two H100s, one of them the vendor board."""
    text = convert(
        f"""version: v1
mig-configs:
  fleet:
    - device-filter: "{UNKNOWN_ID}"
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 2
    - device-filter: "{H100}"
      devices: all
      mig-enabled: true
      mig-devices:
        "2c.7g.80gb": 2
        "3c.7g.80gb": 1
    - device-filter: "0x233010DE:0x16C110DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
    - devices: []
      mig-enabled: false
"""
    )
    host = make_host(tmp_path, (H100, 2), layout=text)
    simulator.set_subsystem_id(host.state, 1, 0x16C110DE)
    planned = host.run("plan")
    assert planned.code == 0, planned.err
    applied = host.run("apply")
    assert applied.code == 0, applied.err
    verified = host.run("verify", "--json")
    assert verified.code == 0, verified.err
    assert len(json.loads(verified.out)["absent"]) == 1  # the unknown id's entry
    status = json.loads(host.run("status", "--json").out)
    first, second = status["gpus"]
    assert [len(gi["compute"]) for gi in first["instances"]] == [3]
    assert len(second["instances"]) == 2


def test_a_large_entry_that_fits_nowhere_is_refused_quickly() -> None:
    """Eleven compute-instance profiles on one A100: orders that already need more GPU
    instances than the GPU has are not followed, so the refusal comes at once."""
    devices = {
        "1c.1g.5gb": 7,
        "1c.2g.10gb": 3,
        "2c.2g.10gb": 3,
        "1c.3g.20gb": 3,
        "2c.3g.20gb": 2,
        "3c.3g.20gb": 2,
        "1c.4g.20gb": 4,
        "2c.4g.20gb": 2,
        "4c.4g.20gb": 1,
        "1c.7g.40gb": 7,
        "2c.7g.40gb": 3,
    }
    yaml = json.dumps(
        {
            "version": "v1",
            "mig-configs": {
                "big": [{"devices": "all", "mig-enabled": True, "mig-devices": devices}]
            },
        }
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"x 7g.40gb asked, at most 1 fit"):
        convert(yaml, model=A100_40)
    assert time.monotonic() - started < 30  # minutes without the pruning
