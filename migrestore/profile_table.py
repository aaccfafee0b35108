"""A driver's GPU-instance profile table from captured `nvidia-smi mig -lgip` and `-lgipp` output,
for `check --profile-table FILE`: check a layout against the next driver's table before upgrading.

The file holds both outputs (`{ nvidia-smi mig -lgip; nvidia-smi mig -lgipp; } > FILE`), as printed
by the driver with MIG on or off (R550 and later list the table with MIG off). Only the first GPU's
rows are read: capture on a host of the model to check, or restrict with `-i N`. Memory is given
there in GiB with two decimals, so it is read back to MiB within rounding; compute-instance profiles
are not listed by these commands and are derived from the GPU-instance geometry, as for a model the
catalogue does not know.
"""

from __future__ import annotations

import re
from pathlib import Path

from migrestore import profiles
from migrestore.config import read_regular_file
from migrestore.errors import ConfigError
from migrestore.model import GiProfile, Placement, ProfileTable

# `|   0  MIG 3g.71gb          9     2/2        69.75      No     60     3     0   |`
# `|                                                               3     3     0   |`
_ROW = re.compile(
    r"\|\s*(?P<gpu>\d+)\s+(?P<name>MIG \S+)\s+(?P<id>\d+)\s+\d+/(?P<total>\d+)\s+"
    r"(?P<gib>\d+(?:\.\d+)?)\s+(?:Yes|No)\s+(?P<sm>\d+)\s+(?P<dec>\d+)\s+(?P<enc>\d+)\s*\|\s*\n"
    r"\|\s+(?P<ce>\d+)\s+(?P<jpeg>\d+)\s+(?P<ofa>\d+)\s*\|"
)
# `GPU  0 Profile ID  9 Placements: {0,4}:4` (one placement: `Placement : {0}:8`)
_PLACEMENTS = re.compile(
    r"GPU\s+(?P<gpu>\d+)\s+Profile ID\s+(?P<id>\d+)\s+Placements?\s*:\s*"
    r"\{(?P<starts>\d+(?:,\d+)*)\}:(?P<size>\d+)"
)
_SLICES = re.compile(r"MIG (\d+)g\.")


def load(path: Path) -> ProfileTable:
    """The first GPU's profile table in the file; ConfigError (exit 2) when it holds none."""
    data = read_regular_file(path)
    return parse(data.decode("utf-8", errors="replace"), str(path))


def parse(text: str, source: str) -> ProfileTable:
    """Read `-lgip` rows and `-lgipp` placements of the first GPU listed."""
    rows = list(_ROW.finditer(text))
    if not rows:
        raise ConfigError(f"{source}: no `nvidia-smi mig -lgip` profile rows found")
    gpu = rows[0]["gpu"]
    placements = {
        int(m["id"]): tuple(Placement(int(s), int(m["size"])) for s in m["starts"].split(","))
        for m in _PLACEMENTS.finditer(text)
        if m["gpu"] == gpu
    }
    gis = []
    for index, row in enumerate(r for r in rows if r["gpu"] == gpu):
        profile_id, name = int(row["id"]), row["name"]
        if profile_id not in placements:
            raise ConfigError(
                f"{source}: no `nvidia-smi mig -lgipp` placements for profile {profile_id}"
                f" ({name}) of GPU {gpu}; capture both commands into the file"
            )
        slices = _SLICES.match(name)
        if slices is None:
            raise ConfigError(f"{source}: profile {profile_id}: cannot read slices from {name!r}")
        gis.append(
            GiProfile(
                index=index,
                id=profile_id,
                name=name,
                slices=int(slices.group(1)),
                instances=int(row["total"]),
                memory_mb=round(float(row["gib"]) * 1024),
                sms=int(row["sm"]),
                placements=placements[profile_id],
                copy_engines=int(row["ce"]),
                decoders=int(row["dec"]),
                encoders=int(row["enc"]),
                jpegs=int(row["jpeg"]),
                ofas=int(row["ofa"]),
            )
        )
    table = tuple(gis)
    return ProfileTable(table, profiles.derive_ci_table(table))
