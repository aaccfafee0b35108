"""Profile tables: the shipped GPU model catalogue; resolving profiles as operators write them."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore.model import (
    Architecture,
    CiProfile,
    GiProfile,
    Placement,
    ProfileShape,
    ProfileTable,
)


@dataclass(frozen=True)
class ModelInfo:
    """One GPU model from the shipped catalogue."""

    name: str
    key: str
    aliases: tuple[str, ...]
    architecture: Architecture
    nvml_architecture: int
    pci_device_ids: tuple[int, ...]
    memory_mb: int
    placement_units: int
    table: ProfileTable

    def matches(self, text: str) -> bool:
        """True if `text` names this model (NVML name, catalogue key or alias; case-insensitive)."""
        return _is_named(text, (self.name, self.key, *self.aliases))


def _is_named(text: str, names: tuple[str, ...]) -> bool:
    wanted = text.strip().casefold()
    return any(wanted == name.casefold() for name in names)


def _placements(rows: list[list[int]]) -> tuple[Placement, ...]:
    return tuple(Placement(start, size) for start, size in rows)


def _ci_profile(row: dict[str, Any]) -> CiProfile:
    return CiProfile(
        index=row["index"],
        id=row["id"],
        name=row["name"],
        slices=row["slices"],
        instances=row["instances"],
        sms=row["sms"] or 0,
        placements=_placements(row["placements"]),
        default=row["default"],
    )


def _gi_profile(row: dict[str, Any]) -> GiProfile:
    return GiProfile(
        index=row["index"],
        id=row["id"],
        name=row["name"],
        slices=row["slices"],
        instances=row["instances"],
        memory_mb=row["memory_mb"],
        sms=row["sms"],
        placements=_placements(row["placements"]),
        copy_engines=row["ce"],
        decoders=row["dec"],
        encoders=row["enc"],
        jpegs=row["jpeg"],
        ofas=row["ofa"],
    )


def _ci_profiles(row: dict[str, Any]) -> tuple[CiProfile, ...]:
    """A GPU-instance profile's compute-instance profiles; derived when the row lists none."""
    if "ci" not in row:
        return derive_ci_profiles(_gi_profile(row))
    return tuple(_ci_profile(c) for c in row["ci"])


def model_from_entry(row: dict[str, Any]) -> ModelInfo:
    """A model from one entry in the catalogue's format (`models.json`), e.g. a simulated GPU
    the catalogue does not know; an entry without `ci` rows gets derived ones. KeyError,
    TypeError or ValueError on a malformed entry."""
    return _model(row)


def _model(row: dict[str, Any]) -> ModelInfo:
    gis = row["gi_profiles"]
    table = ProfileTable(
        gi=tuple(_gi_profile(g) for g in gis),
        ci=tuple((g["id"], _ci_profiles(g)) for g in gis),
    )
    return ModelInfo(
        name=row["name"],
        key=row["key"],
        aliases=tuple(row["aliases"]),
        architecture=Architecture(row["architecture"]),
        nvml_architecture=row["nvml_architecture"],
        pci_device_ids=tuple(int(p, 16) for p in row["pci_device_ids"]),
        memory_mb=row["memory_mb"],
        placement_units=row["placement_units"],
        table=table,
    )


@functools.cache
def _rows() -> tuple[dict[str, Any], ...]:
    """The shipped catalogue's raw rows (a plain file read: no importlib.resources)."""
    text = (Path(__file__).parent / "data" / "models.json").read_text()
    return tuple(json.loads(text)["models"])


@functools.cache
def _built(index: int) -> ModelInfo:
    """One model of the catalogue, built on first use: a run builds the models it meets only."""
    return _model(_rows()[index])


def catalogue() -> tuple[ModelInfo, ...]:
    """Every GPU model migrestore ships a profile table for."""
    return tuple(_built(index) for index in range(len(_rows())))


def find_model(text: str) -> ModelInfo | None:
    """The catalogue model named `text` (NVML name, key or alias; case-insensitive), if any."""
    for index, row in enumerate(_rows()):
        if _is_named(text, (row["name"], row["key"], *row["aliases"])):
            return _built(index)
    return None


def find_model_by_pci_id(pci_device_id: int) -> ModelInfo | None:
    """The catalogue model with this packed PCI id (`0x233010DE`), ignoring the subsystem."""
    for index, row in enumerate(_rows()):
        if any(pci_device_id == int(p, 16) for p in row["pci_device_ids"]):
            return _built(index)
    return None


def _normalise(text: str) -> str:
    return text.strip().casefold().removeprefix("mig ").strip()


def resolve_gi(table: ProfileTable, wanted: str | int) -> GiProfile | None:
    """A GPU-instance profile given as short name `3g.40gb`, full name `MIG 3g.40gb` or id `9`."""
    if isinstance(wanted, int) or wanted.strip().isdigit():
        return table.gi_by_id(int(wanted))
    name = _attributes_sorted(wanted)
    return next((p for p in table.gi if _attributes_sorted(p.name) == name), None)


def _attributes_sorted(name: str) -> str:
    """The normalised name with its `+` attributes in one order: mig-parted writes several as
    `1g.24gb+me,gfx`, in any order; `+me.all` is one attribute, `-me` another form."""
    base, plus, attributes = _normalise(name).partition("+")
    if not plus:
        return base
    return base + "+" + "+".join(sorted(re.split(r"[+,]", attributes)))


_GEOMETRY = re.compile(r"(?P<slices>\d+)g\.(?P<gb>\d+)gb(?P<attributes>[+-].*)?")


@dataclass(frozen=True)
class Geometry:
    """What a GPU-instance profile name says: compute slices, memory in GB, attributes (`+me`)."""

    slices: int
    memory_gb: int
    attributes: str

    def same_class(self, other: Geometry) -> bool:
        """Same slices and attributes, memory within 10% (a driver's 3g.39gb is 3g.40gb)."""
        close = abs(self.memory_gb - other.memory_gb) * 10 <= max(self.memory_gb, other.memory_gb)
        return (self.slices, self.attributes) == (other.slices, other.attributes) and close


def geometry(name: str) -> Geometry | None:
    """The geometry in a profile name (`3g.40gb`, `MIG 1g.10gb+me`); None for anything else."""
    found = _GEOMETRY.fullmatch(_normalise(name))
    if found is None:
        return None
    return Geometry(int(found["slices"]), int(found["gb"]), found["attributes"] or "")


def geometry_name(name: str) -> str:
    """`3g.40gb` for `MIG 3g.40gb` or ` 3G.40GB `: the short name, as compute names embed it."""
    return _normalise(name)


def resolve_renamed(
    table: ProfileTable, wanted: str | int, shape: ProfileShape | None = None
) -> GiProfile | None:
    """For a name this driver does not know: the one profile of the table with its geometry.

    With the `geometry` an export wrote beside the name (`shape`), that decides: same compute
    slices, same placement size, memory within 10%, and the name's attributes (`+me`) when both
    names carry them. Without it, the geometry the name spells (`3g.40gb`) decides.
    """
    want = geometry(wanted) if isinstance(wanted, str) else None
    if shape is not None:
        matches = [p for p in table.gi if _same_shape(shape, want, p)]
    elif want is not None:
        matches = [p for p in table.gi if _same_class(want, p)]
    else:
        return None
    return matches[0] if len(matches) == 1 else None


def shape_of(profile: GiProfile) -> ProfileShape:
    """What `export` writes beside a profile's name."""
    size = profile.placements[0].size if profile.placements else profile.slices
    return ProfileShape(profile.slices, size, profile.memory_mb)


def _same_shape(shape: ProfileShape, named: Geometry | None, profile: GiProfile) -> bool:
    have = shape_of(profile)
    memory = max(shape.memory_mib, have.memory_mib)
    close = abs(shape.memory_mib - have.memory_mib) * 10 <= memory
    if (shape.slices, shape.size) != (have.slices, have.size) or not close:
        return False
    spelled = geometry(profile.name)
    return named is None or spelled is None or named.attributes == spelled.attributes


def _same_class(want: Geometry, profile: GiProfile) -> bool:
    have = geometry(profile.name)
    return have is not None and want.same_class(have)


def resolve_ci(table: ProfileTable, gi: GiProfile, wanted: str | int) -> CiProfile | None:
    """A compute-instance profile of `gi`: `1c.3g.40gb`, `MIG 1c.3g.40gb`, `3g.40gb` or id `0`."""
    candidates = table.ci_for(gi.id)
    if isinstance(wanted, int) or wanted.strip().isdigit():
        return next((c for c in candidates if c.id == int(wanted)), None)
    name = _normalise(wanted)
    return next((c for c in candidates if _normalise(c.name) == name), None)


def gi_names(table: ProfileTable) -> str:
    """The valid GPU-instance profile names of a table, for error messages."""
    return ", ".join(p.short_name for p in sorted(table.gi, key=lambda p: (p.slices, p.index)))


def ci_names(table: ProfileTable, gi: GiProfile) -> str:
    """The valid compute-instance profile names of a GPU-instance profile."""
    return ", ".join(c.short_name for c in sorted(table.ci_for(gi.id), key=lambda c: c.slices))


def gi_label(table: ProfileTable, profile_id: int) -> str:
    """The short name of a GPU-instance profile id in this table, for people (or `profile N`)."""
    profile = table.gi_by_id(profile_id)
    return profile.short_name if profile else f"profile {profile_id}"


def ci_label(table: ProfileTable, gi_profile_id: int, ci_profile_id: int) -> str:
    """The short name of a compute-instance profile id of a GPU-instance profile (or profile N)."""
    profile = next((c for c in table.ci_for(gi_profile_id) if c.id == ci_profile_id), None)
    return profile.short_name if profile else f"profile {ci_profile_id}"


def written_gi_name(table: ProfileTable, profile_id: int) -> str | int:
    """How a layout file names a GPU-instance profile: its short name if that resolves back to this
    profile in this table, else the numeric id."""
    profile = table.gi_by_id(profile_id)
    if profile is None or resolve_gi(table, profile.short_name) != profile:
        return profile_id
    return profile.short_name


def written_ci_name(table: ProfileTable, gi_profile_id: int, profile_id: int) -> str | int:
    """How a layout file names a compute-instance profile (short name, else the numeric id)."""
    gi = table.gi_by_id(gi_profile_id)
    ci = next((c for c in table.ci_for(gi_profile_id) if c.id == profile_id), None)
    if gi is None or ci is None or resolve_ci(table, gi, ci.short_name) != ci:
        return profile_id
    return ci.short_name


def fits(placement: Placement, taken: list[Placement] | tuple[Placement, ...]) -> bool:
    """True if `placement` overlaps none of `taken`."""
    return not any(placement.overlaps(t) for t in taken)


# NVML compute-instance profile index by compute-slice count (NVML_COMPUTE_INSTANCE_PROFILE_*).
_CI_INDEX_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
# The one-slice GPU instance with twice the memory (NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2,
# 1g.20gb on an H100) holds NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1, not 1_SLICE: so in every
# catalogue model that has it, the H100's and H200's from real readings.
_GI_INDEX_1_SLICE_REV2 = 0x9
_CI_INDEX_1_SLICE_REV1 = 0x7
# The geometry at the start of a profile name, its attributes (`+me`, `-me`, `+gfx`) left off.
_GEOMETRY_BASE = re.compile(r"\d+g\.\d+gb", re.IGNORECASE)


def _ci_starts(gi_slices: int, ci_slices: int) -> range:
    if ci_slices == gi_slices:
        return range(1)
    align = ci_slices if ci_slices <= 2 else 4
    return range(0, gi_slices - ci_slices + 1, align)


def derive_ci_profiles(gi: GiProfile) -> tuple[CiProfile, ...]:
    """Compute-instance profiles of a GPU-instance profile by the documented geometry.

    Used for GPU models the catalogue does not know: NVML can list compute-instance profiles only
    through an existing GPU instance, so before the first one exists they have to be inferred.
    """
    # Compute-instance names carry the geometry without the attributes.
    spelled = _GEOMETRY_BASE.match(gi.short_name)
    base = spelled.group(0) if spelled else gi.short_name.split("+")[0]
    sizes = [k for k in (1, 2, 3, 4, 7) if k <= gi.slices and not (gi.slices == 4 and k == 3)]
    out = []
    for k in sizes:
        full = k == gi.slices
        rev1 = k == 1 and gi.index == _GI_INDEX_1_SLICE_REV2
        index = _CI_INDEX_1_SLICE_REV1 if rev1 else _CI_INDEX_BY_SLICES[k]
        starts = _ci_starts(gi.slices, k)
        out.append(
            CiProfile(
                index=index,
                id=index,
                name=f"MIG {base}" if full else f"MIG {k}c.{base}",
                slices=k,
                instances=len(starts),
                sms=gi.sms * k // gi.slices,
                placements=tuple(Placement(s, k) for s in starts),
                default=full,
            )
        )
    return tuple(out)


def derive_ci_table(gis: tuple[GiProfile, ...]) -> tuple[tuple[int, tuple[CiProfile, ...]], ...]:
    """`ProfileTable.ci` for GPU-instance profiles with no catalogue entry."""
    return tuple((gi.id, derive_ci_profiles(gi)) for gi in gis)
