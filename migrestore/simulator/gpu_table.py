"""A simulated GPU the catalogue does not know, from a profile table file (`simulate init
--gpu-table FILE`): one entry in the catalogue's own format (`migrestore/data/models.json`).

Required: `name`, `pci_device_ids`, `memory_mb` and `gi_profiles`, each profile with `id`, `name`,
`slices`, `instances`, `memory_mb`, `sms` and `placements`. Everything else has a default, chosen
to be conservative: `architecture` "other" (NVML answers NVML_DEVICE_ARCH_UNKNOWN; MIG mode is
applied at once and lost at every reboot, as on Hopper), no media engines, `placement_units` the end
of the furthest placement, and compute-instance profiles derived from the GPU-instance geometry
(what migrestore itself assumes on real hardware for a model it does not know) unless the
profile lists its `ci` rows.

The whole model is kept in the state file, so a host built from the table needs the file only once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from migrestore import profiles
from migrestore.config import read_regular_file
from migrestore.errors import ConfigError
from migrestore.model import CiProfile, GiProfile, Placement

# NVML_DEVICE_ARCH_* by family; "other" answers NVML_DEVICE_ARCH_UNKNOWN.
NVML_ARCHITECTURE: Final = {"ampere": 7, "hopper": 9, "blackwell": 10, "other": 0xFFFFFFFF}
_GI_DEFAULTS: Final = {"ce": 0, "dec": 0, "enc": 0, "jpeg": 0, "ofa": 0}


def load(path: Path) -> profiles.ModelInfo:
    """The model a `--gpu-table` file defines; ConfigError (exit 2) naming the file otherwise."""
    data = read_regular_file(path)
    try:
        row = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return parse(row, str(path))


def parse(row: Any, source: str) -> profiles.ModelInfo:
    """Check one catalogue-format entry, fill in the defaults and build the model."""
    try:
        model = profiles.model_from_entry(_completed(row))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{source}: not a GPU profile table entry ({detail})") from None
    _check_unknown(model, source)
    _check_geometry(model, source)
    return model


def _completed(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise TypeError("expected a JSON object")
    architecture = row.get("architecture", "other")
    if architecture not in NVML_ARCHITECTURE:
        raise ValueError(f"architecture {architecture!r}: one of {', '.join(NVML_ARCHITECTURE)}")
    gis = []
    for index, gi in enumerate(row["gi_profiles"]):
        if not isinstance(gi, dict):
            raise TypeError("gi_profiles: each entry must be a JSON object")
        gis.append({**_GI_DEFAULTS, "index": index, **gi})
    if not gis:
        raise ValueError("gi_profiles is empty")
    ends = [start + size for gi in gis for start, size in gi["placements"]]
    return {
        "key": row["name"],
        "aliases": [],
        "nvml_architecture": NVML_ARCHITECTURE[architecture],
        "placement_units": max(ends, default=0),
        **row,
        "architecture": architecture,
        "gi_profiles": gis,
    }


def _check_unknown(model: profiles.ModelInfo, source: str) -> None:
    """The point is a GPU the catalogue does not know: a known name or id is a mistake."""
    if not isinstance(model.name, str) or not model.name.strip():
        raise ConfigError(f"{source}: name must be a non-empty string")
    known = profiles.find_model(model.name)
    for device in model.pci_device_ids:
        known = known or profiles.find_model_by_pci_id(device)
    if known is not None:
        raise ConfigError(
            f"{source}: {model.name} is a GPU the catalogue knows ({known.name}); "
            f'use simulate init --gpu "{known.name}"'
        )
    if not model.pci_device_ids or any(not 0 < d <= 0xFFFFFFFF for d in model.pci_device_ids):
        raise ConfigError(f"{source}: pci_device_ids: give at least one id like 0x20FF10DE")


def _check_geometry(model: profiles.ModelInfo, source: str) -> None:
    """Every number the simulator computes with is sane: ids unique, placements on the GPU."""
    ids = [gi.id for gi in model.table.gi]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: gi_profiles: profile ids repeat ({ids})")
    if model.memory_mb <= 0 or model.placement_units <= 0:
        raise ConfigError(f"{source}: memory_mb and placement_units must be positive")
    for gi in model.table.gi:
        where = f"{source}: gi_profiles id {gi.id} ({gi.name})"
        if gi.slices <= 0 or gi.instances <= 0 or not gi.placements or gi.memory_mb <= 0:
            raise ConfigError(f"{where}: slices, instances, memory_mb and placements must be set")
        if any(p.start < 0 or p.size <= 0 or p.end > model.placement_units for p in gi.placements):
            raise ConfigError(f"{where}: a placement lies outside {model.placement_units} slices")
        for ci in model.table.ci_for(gi.id):
            if any(p.start < 0 or p.size <= 0 or p.end > gi.slices for p in ci.placements):
                raise ConfigError(f"{where}: {ci.name}: a placement lies outside the instance")


def _placements(placements: tuple[Placement, ...]) -> list[list[int]]:
    return [[p.start, p.size] for p in placements]


def _ci_json(ci: CiProfile) -> dict[str, Any]:
    return {
        "index": ci.index,
        "id": ci.id,
        "name": ci.name,
        "slices": ci.slices,
        "instances": ci.instances,
        "sms": ci.sms,
        "placements": _placements(ci.placements),
        "default": ci.default,
    }


def _gi_json(gi: GiProfile, cis: tuple[CiProfile, ...]) -> dict[str, Any]:
    return {
        "index": gi.index,
        "id": gi.id,
        "name": gi.name,
        "slices": gi.slices,
        "instances": gi.instances,
        "memory_mb": gi.memory_mb,
        "sms": gi.sms,
        "ce": gi.copy_engines,
        "dec": gi.decoders,
        "enc": gi.encoders,
        "jpeg": gi.jpegs,
        "ofa": gi.ofas,
        "placements": _placements(gi.placements),
        "ci": [_ci_json(c) for c in cis],
    }


def entry_json(model: profiles.ModelInfo) -> dict[str, Any]:
    """The model as a complete catalogue-format entry (what the state file keeps)."""
    return {
        "name": model.name,
        "key": model.key,
        "aliases": list(model.aliases),
        "architecture": model.architecture.value,
        "nvml_architecture": model.nvml_architecture,
        "pci_device_ids": [f"0x{d:08X}" for d in model.pci_device_ids],
        "memory_mb": model.memory_mb,
        "placement_units": model.placement_units,
        "gi_profiles": [_gi_json(gi, model.table.ci_for(gi.id)) for gi in model.table.gi],
    }
