"""The GPU models' profile tables, read straight from the shipped data file.

The benchmark's minimums must not come from migrestore's own code, so this reads
`migrestore/data/models.json` (the data the simulator serves) with nothing but `json`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

RESET_ARCHITECTURES = frozenset({"ampere"})  # MIG mode changes wait for a GPU reset; kept at reboot


def short_name(name: str) -> str:
    """`MIG 3g.40gb` -> `3g.40gb` (case-folded, as a key)."""
    return name.strip().casefold().removeprefix("mig ").strip()


@dataclass(frozen=True)
class GiKind:
    """One GPU-instance profile of a model: id, short name and its compute-instance profiles."""

    id: int
    name: str
    ci_names: tuple[str, ...]
    ci_ids: tuple[int, ...]
    default_ci: str | None


@dataclass(frozen=True)
class ModelData:
    """One GPU model: names, architecture and GPU-instance profiles."""

    name: str
    names: frozenset[str]
    architecture: str
    gi: tuple[GiKind, ...]

    @property
    def mode_needs_reset(self) -> bool:
        """Enabling MIG stays pending until a GPU reset (and survives a reboot)."""
        return self.architecture in RESET_ARCHITECTURES

    def gi_kind(self, wanted: str | int) -> GiKind:
        """A GPU-instance profile by id, short name or full name."""
        for kind in self.gi:
            if wanted == kind.id or (isinstance(wanted, str) and short_name(wanted) == kind.name):
                return kind
        raise ValueError(f"{self.name} has no GPU-instance profile {wanted!r}")


def _gi_kind(row: dict[str, Any]) -> GiKind:
    cis = row["ci"]
    default = next((short_name(c["name"]) for c in cis if c["default"]), None)
    return GiKind(
        id=row["id"],
        name=short_name(row["name"]),
        ci_names=tuple(short_name(c["name"]) for c in cis),
        ci_ids=tuple(c["id"] for c in cis),
        default_ci=default,
    )


def _model(row: dict[str, Any]) -> ModelData:
    names = {row["name"], row["key"], *row["aliases"]}
    return ModelData(
        name=row["name"],
        names=frozenset(n.casefold() for n in names),
        architecture=row["architecture"],
        gi=tuple(_gi_kind(g) for g in row["gi_profiles"]),
    )


@functools.cache
def _document() -> dict[str, Any]:
    text = resources.files("migrestore.data").joinpath("models.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def model(name: str) -> ModelData:
    """The model NVML calls `name` (or that a layout's `model` selector names)."""
    wanted = name.strip().casefold()
    for row in _document()["models"]:
        found = _model(row)
        if wanted in found.names:
            return found
    raise ValueError(f"no GPU model {name!r} in the catalogue")


def first_invalid_gi_index(driver: str) -> int:
    """GI profile indices from here answer INVALID_ARGUMENT (17 up to R580, 18 from R595)."""
    first: int = _document()["first_invalid_index"]
    return first + 1 if int(driver.split(".", 1)[0]) >= 595 else first
