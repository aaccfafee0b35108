"""One layout file for a whole fleet: entries for GPUs a host lacks are skipped, not errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrestore import migparted
from tests.simhost import ROOT, make_host

ALL_BALANCED = ROOT / "tests" / "fixtures" / "mig-parted" / "all-balanced-per-model.yaml"


@pytest.mark.parametrize(
    "model",
    ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA H200", "NVIDIA A30"],
)
def test_one_converted_multi_model_file_serves_single_model_hosts(
    tmp_path: Path, model: str
) -> None:
    """NVIDIA's all-balanced label, converted once, applies and verifies unchanged on a host of
    each model; the other models' entries are listed as absent."""
    text = ALL_BALANCED.read_text()
    layout = migparted.convert(text, str(ALL_BALANCED), "all-balanced")
    host = make_host(tmp_path, (model, 2), layout=layout)
    assert host.run("apply").code == 0
    verified = host.run("verify", "--json")
    assert verified.code == 0, verified.err
    document = json.loads(verified.out)
    entries = layout.count("[[gpu]]")
    assert len(document["absent"]) == entries - 1
    assert "entry_selects_no_gpu_here" in verified.err


def test_a_device_id_entry_selects_by_pci_id_and_beats_a_model_entry(tmp_path: Path) -> None:
    """`device-id` picks the GPUs with that PCI id, taking precedence over a model entry."""
    layout = (
        "version = 2\n"
        '[[gpu]]\nselect = { model = "NVIDIA H100 80GB HBM3" }\nmig = false\n'
        '[[gpu]]\nselect = { device-id = "0x233010de" }\n'
        '[[gpu.instance]]\nprofile = "7g.80gb"\n'
    )
    host = make_host(tmp_path, ("NVIDIA H100 80GB HBM3", 2), layout=layout)
    applied = host.run("apply", "--json")
    assert applied.code == 0, applied.err
    status = json.loads(host.run("status", "--json").out)
    assert [len(g["instances"]) for g in status["gpus"]] == [1, 1]


def test_an_optional_entry_naming_an_unknown_gpu_is_skipped(tmp_path: Path) -> None:
    """`optional = true` lets an entry name a GPU nobody knows yet; without it, exit 2."""
    entry = '[[gpu]]\nselect = { model = "NVIDIA Z900" }\n'
    host = make_host(
        tmp_path,
        ("NVIDIA A30", 1),
        layout=f'version = 2\n[[gpu]]\nselect = "all"\n{entry}optional = true\n',
    )
    assert host.run("apply").code == 0
    host.write_layout(f'version = 2\n[[gpu]]\nselect = "all"\n{entry}')
    refused = host.run("verify")
    assert refused.code == 2
    assert "names no GPU migrestore knows" in refused.err
