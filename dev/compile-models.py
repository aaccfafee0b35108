#!/usr/bin/env python3
"""Compile the catalogue (docs/catalogue/mig-profiles.json) into migrestore/data/models.json.

The catalogue keeps every value with its source and confidence and leaves gaps where nothing was
found. The package needs a complete, compact table for the simulator, `check --model` and doctor, so
this fills the gaps by the documented rules (8-slice placement geometry, CI profile geometry) and
records which values were derived.

    dev/compile-models.py [CATALOGUE]           # write migrestore/data/models.json
    dev/compile-models.py --check [CATALOGUE]   # exit 1 if models.json is not what it compiles to
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ARCH_BY_PREFIX = (
    ("NVIDIA A100", "ampere", 7),
    ("NVIDIA A800", "ampere", 7),
    ("NVIDIA A30", "ampere", 7),
    ("NVIDIA PG506", "ampere", 7),
    ("NVIDIA H", "hopper", 9),
    ("NVIDIA GH200", "hopper", 9),
    ("NVIDIA B200", "blackwell", 10),
    ("NVIDIA GB200", "blackwell", 10),
    ("NVIDIA B300", "blackwell", 10),
    ("NVIDIA GB300", "blackwell", 10),
    ("NVIDIA RTX PRO", "blackwell", 10),
)

# What a model with `table_from` takes from the model it names, unless it states its own.
INHERITED = ("memory_mb", "sm_total_mig", "placement_units", "gi_profiles", "ci_profiles")

# 8-memory-slice parts: placements by GI profile index (the documented geometry; see
# docs/catalogue/mig-profiles.md).
EIGHT_SLICE_PLACEMENTS = {
    0: [(s, 1) for s in range(7)],
    7: [(s, 1) for s in range(7)],
    9: [(s, 2) for s in (0, 2, 4, 6)],
    1: [(s, 2) for s in (0, 2, 4)],
    2: [(0, 4), (4, 4)],
    3: [(0, 4)],
    4: [(0, 8)],
}

# NVML compute-instance profile index by compute-slice count.
CI_INDEX_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}


def architecture(nvml_name: str) -> tuple[str, int]:
    """Architecture family and NVML code for a model name."""
    for prefix, arch, code in ARCH_BY_PREFIX:
        if nvml_name.startswith(prefix):
            return arch, code
    raise SystemExit(f"unknown architecture for {nvml_name}")


def gib_from_name(short: str) -> int:
    """`3g.90gb` -> 90."""
    match = re.search(r"\.(\d+)gb", short)
    return int(match.group(1)) if match else 0


def ci_placements(gi_slices: int, ci_slices: int) -> list[tuple[int, int]]:
    """Compute-slice placements of a CI profile inside a GI (aligned like the GI grid)."""
    if ci_slices == gi_slices:
        return [(0, ci_slices)]
    align = ci_slices if ci_slices <= 2 else 4
    return [(s, ci_slices) for s in range(0, gi_slices - ci_slices + 1, align)]


def ci_count(gi_slices: int, ci_slices: int) -> int:
    """How many CIs of this size fit in a GI."""
    return len(ci_placements(gi_slices, ci_slices))


def derived_ci_profiles(gi: dict[str, Any], sm_per_slice: int) -> list[dict[str, Any]]:
    """CI profiles by the documented geometry: every CI size up to the GI's compute slices."""
    g = gi["slices"]
    short = gi["short_name"]
    base = short.split("+")[0].split("-")[0]
    out = []
    for k in (1, 2, 3, 4, 7):
        if k > g or (g == 4 and k == 3) or (g < 7 and k == 7):
            continue
        full = k == g
        index = CI_INDEX_BY_SLICES[k]
        if full and g == 1 and gi["index"] == 9:
            index = 7  # 1g REV2 GIs default to the REV1 CI profile (H100/GH200 readings)
        name = f"MIG {base}" if full else f"MIG {k}c.{base}"
        out.append(
            {
                "index": index,
                "id": index,
                "name": name,
                "slices": k,
                "instances": ci_count(g, k),
                "sms": gi["sms"] if full else sm_per_slice * k,
                "placements": ci_placements(g, k),
                "default": full,
                "derived": True,
            }
        )
    return out


def merge_ci(derived: list[dict[str, Any]], known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prefer the reference's CI values where it has them."""
    by_slices = {c["slices"]: c for c in derived}
    for k in known:
        row = by_slices.get(k["slices"])
        if row is None or k.get("index") is None:
            continue
        row.update(index=k["index"], id=k["id"], instances=k["instances"], derived=False)
        if k.get("sms"):
            row["sms"] = k["sms"]
        if k.get("placements"):
            row["placements"] = [tuple(p) for p in k["placements"]]
    return sorted(by_slices.values(), key=lambda c: c["index"])


def compile_gi(model: dict[str, Any], gi: dict[str, Any], sm_per_slice: int) -> dict[str, Any]:
    """One GI profile with every field filled."""
    placements = gi["placements"] or EIGHT_SLICE_PLACEMENTS[gi["index"]]
    memory = gi["memory_mb"] or gib_from_name(gi["short_name"]) * 1000
    return {
        "index": gi["index"],
        "id": gi["id"],
        "name": gi["name"],
        "slices": gi["slices"],
        "instances": gi["instances"],
        "memory_mb": memory,
        "sms": gi.get("sms") or sm_per_slice * gi["slices"],
        "ce": gi.get("ce") or gi["slices"],
        "dec": gi.get("dec") or 0,
        "enc": gi.get("enc") or 0,
        "jpeg": gi.get("jpeg") or 0,
        "ofa": gi.get("ofa") or 0,
        "placements": [list(p) for p in placements],
        "derived": not (gi["placements"] and gi["memory_mb"] and gi.get("sms")),
        # a name that disagrees with mig-parted's naming of its memory, and why it stands
        **({"name_exception": gi["name_exception"]} if gi.get("name_exception") else {}),
    }


def with_table(key: str, model: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """A model whose `table_from` names another: that model's tables, its own identity.

    Variants of one chip (PCIe and SXM boards, export versions) share the profile table but not
    the NVML name or PCI id, so each is a model of its own; the table is stated once.
    """
    base_key = model.get("table_from")
    if base_key is None:
        return model
    base = models.get(base_key)
    if base is None or base.get("table_from"):
        raise SystemExit(f"{key}: table_from {base_key!r} is not a model with its own table")
    inherited = {field: base.get(field) for field in INHERITED if model.get(field) is None}
    return {**model, **inherited}


def compile_model(key: str, model: dict[str, Any]) -> dict[str, Any]:
    """One model."""
    name = model["nvml_name"]
    arch, code = architecture(name)
    sm_total = model.get("sm_total_mig") or 132
    sm_per_slice = sm_total // 8 if sm_total > 100 else sm_total // 4
    gis = [compile_gi(model, gi, sm_per_slice) for gi in model["gi_profiles"]]
    known_ci = model.get("ci_profiles") or {}
    for gi in gis:
        gi["ci"] = merge_ci(
            derived_ci_profiles(
                {**gi, "short_name": gi["name"].removeprefix("MIG ")}, sm_per_slice
            ),
            known_ci.get(gi["name"], []),
        )
        for ci in gi["ci"]:
            ci["placements"] = [list(p) for p in ci["placements"]]
    if model.get("table_from"):
        # carried over from another model: every value is by analogy, none measured on this one
        for gi in gis:
            gi["derived"] = True
            for ci in gi["ci"]:
                ci["derived"] = True
    memory_mb = model.get("memory_mb") or max(g["memory_mb"] for g in gis)
    return {
        "key": key,
        **({"table_from": model["table_from"]} if model.get("table_from") else {}),
        "name": name,
        "aliases": model.get("aliases", []),
        "architecture": arch,
        "nvml_architecture": code,
        "pci_device_ids": model.get("pci_device_ids", []),
        "memory_mb": memory_mb,
        "placement_units": model.get("placement_units") or 8,
        "confidence": model.get("confidence", ""),
        "gi_profiles": sorted(gis, key=lambda g: g["index"]),
    }


REPOSITORY = Path(__file__).resolve().parent.parent
CATALOGUE = REPOSITORY / "docs" / "catalogue" / "mig-profiles.json"
TARGET = REPOSITORY / "migrestore" / "data" / "models.json"
# The catalogue's first home, in the research notes the project started from; models.json names
# it and is kept byte for byte as compiled then (docs/catalogue/README.md).
COMPILED_FROM = "docs/catalogue/mig-profiles.json"


def compile_table(reference: dict[str, Any]) -> str:
    """The text of models.json for a catalogue."""
    catalogue = reference["models"]
    models = [compile_model(k, with_table(k, m, catalogue)) for k, m in catalogue.items()]
    h200 = next(m for m in reference["models"].values() if m["nvml_name"] == "NVIDIA H200")
    behaviour = h200["nvml_index_behaviour"]
    table = {
        "schema": 1,
        "compiled_from": COMPILED_FROM,
        "not_supported_indices_h200": behaviour["NVML_ERROR_NOT_SUPPORTED"],
        "first_invalid_index": 17,
        "models": models,
    }
    return json.dumps(table, indent=1) + "\n"


def main() -> None:
    """Read the catalogue, write (or with --check compare) the package table."""
    args = sys.argv[1:]
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if len(paths) > 1 or any(a.startswith("-") for a in paths):
        raise SystemExit("usage: dev/compile-models.py [--check] [CATALOGUE]")
    source = Path(paths[0]) if paths else CATALOGUE
    text = compile_table(json.loads(source.read_text()))
    count = len(json.loads(text)["models"])
    if check:
        if TARGET.read_text() != text:
            raise SystemExit(f"{TARGET} differs from what {source} compiles to")
        print(f"{TARGET} is up to date with {source} ({count} models)")
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({count} models)")


if __name__ == "__main__":
    main()
