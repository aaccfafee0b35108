"""The shipped model table: compiled from docs/catalogue, names agreeing with memory, ids mapped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migrestore import naming, profiles

REPOSITORY = Path(__file__).resolve().parent.parent


def test_models_json_is_compiled_from_the_catalogue() -> None:
    """dev/compile-models.py --check finds migrestore/data/models.json up to date."""
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "dev" / "compile-models.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ---- names against memory: the formula NVIDIA's tools name profiles by ----

CATALOGUE = REPOSITORY / "docs" / "catalogue" / "mig-profiles.json"
MODELS_JSON = REPOSITORY / "migrestore" / "data" / "models.json"
H200_READING = (
    REPOSITORY / "tests" / "fixtures" / "simulator" / "h200-driver-580" / "nvml-readonly.json"
)


def name_disagreements(table: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    """Profiles whose memory names another GB than their name, without a sourced exception."""
    found = []
    for model in table["models"]:
        total = model["memory_mb"] * naming.MIB
        for gi in model["gi_profiles"]:
            shape = profiles.geometry(gi["name"])
            assert shape is not None, gi["name"]
            named = naming.memory_gb(gi["memory_mb"], total)
            exception = gi.get("name_exception") or {}
            sourced = exception.get("source") in sources and bool(exception.get("why"))
            if named != shape.memory_gb and not sourced:
                found.append(
                    f"{model['name']}: {gi['name']} has {gi['memory_mb']} of "
                    f"{model['memory_mb']} MiB, which mig-parted names {shape.slices}g.{named}gb"
                )
    return found


def shipped() -> tuple[dict[str, Any], dict[str, Any]]:
    """models.json and the catalogue's sources."""
    table = json.loads(MODELS_JSON.read_text())
    return table, json.loads(CATALOGUE.read_text())["sources"]


def test_naming_formula_names_the_real_h200_profiles() -> None:
    """On the real H200 reading every profile's memory gives its name (3g: 70.5 rounds up to 71)."""
    device = json.loads(H200_READING.read_text())["devices"][0]
    read = [row["info_v3"] for row in device["profiles"] if "name" in row["info_v3"]]
    assert len(read) == 7
    for info in read:
        shape = profiles.geometry(info["name"])
        assert shape is not None
        assert naming.memory_gb(info["memorySizeMB"], device["memory"]["total"]) == shape.memory_gb


def test_every_catalogue_profile_name_agrees_with_its_memory() -> None:
    """Every GPU-instance profile's memory gives its name, or a sourced exception says why."""
    table, sources = shipped()
    assert name_disagreements(table, sources) == []


def test_the_name_check_catches_a_wrong_figure_unless_an_exception_is_sourced() -> None:
    """B200 with the CUDA memory figure names 1g.22gb; only a sourced exception excuses that."""
    table, sources = shipped()
    b200 = next(m for m in table["models"] if m["name"] == "NVIDIA B200")
    b200["memory_mb"] = 182631
    found = name_disagreements(table, sources)
    assert any("MIG 1g.23gb has 22528 of 182631 MiB" in f and "1g.22gb" in f for f in found)
    for gi in b200["gi_profiles"]:
        gi["name_exception"] = {"source": "NO_SUCH_SOURCE", "why": "says so"}
    assert name_disagreements(table, sources) == found
    for gi in b200["gi_profiles"]:
        gi["name_exception"] = {"source": "B200_REAL_JAN25", "why": "the driver prints it"}
    assert name_disagreements(table, sources) == []


# ---- identities: NVML names and the PCI ids NVIDIA's configs filter on ----

# The device-filter ids of NVIDIA's published mig-parted configs (mig-parted's config-default.yaml,
# the GPU operator's default config map) and B300/GB300's, with the NVML name of that PCI id.
NVIDIA_FILTER_IDS = {
    0x20B010DE: "NVIDIA A100-SXM4-40GB",
    0x20B110DE: "NVIDIA A100-PCIE-40GB",
    0x20F110DE: "NVIDIA A100-PCIE-40GB",
    0x20F610DE: "NVIDIA A800 40GB Active",
    0x20B210DE: "NVIDIA A100-SXM4-80GB",
    0x20B510DE: "NVIDIA A100 80GB PCIe",
    0x20F310DE: "NVIDIA A800-SXM4-80GB",
    0x20F510DE: "NVIDIA A800 80GB PCIe",
    0x20B610DE: "NVIDIA PG506-232",
    0x20B710DE: "NVIDIA A30",
    0x233010DE: "NVIDIA H100 80GB HBM3",
    0x233110DE: "NVIDIA H100 PCIe",
    0x232210DE: "NVIDIA H800 PCIe",
    0x232410DE: "NVIDIA H800",
    0x232110DE: "NVIDIA H100 NVL",
    0x233A10DE: "NVIDIA H800 NVL",
    0x233510DE: "NVIDIA H200",
    0x233B10DE: "NVIDIA H200 NVL",
    0x234210DE: "NVIDIA GH200 480GB",
    0x233D10DE: "NVIDIA H100 96GB",
    0x232910DE: "NVIDIA H20",
    0x234810DE: "NVIDIA GH200 144G HBM3e",
    0x290110DE: "NVIDIA B200",
    0x294110DE: "NVIDIA GB200",
    0x318210DE: "NVIDIA B300 SXM6 AC",
    0x31C210DE: "NVIDIA GB300",
    0x2BB510DE: "NVIDIA RTX PRO 6000 Blackwell Server Edition",
}


@pytest.mark.parametrize("pci_id", sorted(NVIDIA_FILTER_IDS), ids=lambda i: f"0x{i:08X}")
def test_nvidia_filter_ids_map_to_the_model_nvml_names(pci_id: int) -> None:
    """Each PCI id NVIDIA's configs filter on finds the catalogue model with that id's NVML name."""
    model = profiles.find_model_by_pci_id(pci_id)
    assert model is not None
    assert model.name == NVIDIA_FILTER_IDS[pci_id]


def test_ids_and_names_each_belong_to_one_model() -> None:
    """No PCI id, NVML name, key or alias is shared by two models (a lookup would pick either)."""
    owners: dict[object, str] = {}
    for model in profiles.catalogue():
        names = {n.casefold() for n in (model.name, model.key, *model.aliases)}
        for token in (*model.pci_device_ids, *names):
            assert owners.setdefault(token, model.key) == model.key, token
