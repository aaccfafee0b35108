"""How NVIDIA's tools name a MIG profile from its memory: the `gb` in `1g.23gb`.

mig-parted, the device plugin and GPU feature discovery do not take the name NVML prints; they
build it from the profile's `memorySizeMB` and the GPU's total memory (go-nvlib,
`pkg/nvlib/device/mig_profile.go`, `getMigMemorySizeGB`): the profile's share of the GPU, rounded up
to eighths, times the GPU's memory in GiB rounded up, rounded to the nearest integer, halves away
from zero. The catalogue's memory figures are checked against their names with it
(`tests/test_catalogue.py`), and the arithmetic is kept in floats as Go does, so borderline
figures round the same way.
"""

from __future__ import annotations

import math

MIB = 1024 * 1024
GIB = 1024 * MIB
EIGHTHS = 8


def memory_gb(profile_memory_mb: int, device_memory_bytes: int) -> int:
    """The GB a profile of `profile_memory_mb` MiB is named with on a GPU of this many bytes."""
    if profile_memory_mb < 0 or device_memory_bytes <= 0:
        raise ValueError("memory sizes must be positive")
    share = float(profile_memory_mb) * MIB / float(device_memory_bytes)
    share = math.ceil(share * EIGHTHS) / EIGHTHS
    device_gib = float((device_memory_bytes + GIB - 1) // GIB)
    return _round_half_away(share * device_gib)


def _round_half_away(value: float) -> int:
    """Go's `math.Round` for a non-negative value: the nearest integer, halves upwards."""
    whole = math.floor(value)
    return int(whole) + (1 if value - whole >= 0.5 else 0)
