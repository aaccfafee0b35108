"""The table of GPU-using units (consumers.py) and the boot unit's ordering agree."""

from __future__ import annotations

from migrestore import consumers
from tests.simhost import ROOT

UNIT_FILE = ROOT / "units" / "migrestore.service"
# Ordered around for other reasons than using the GPUs: the shutdown, DGX's reset target, our own
# restore after a driver reload.
NOT_CONSUMERS = {"shutdown.target", "nvidia-gpu-reset.target", "migrestore-reload.service"}


def _ordering(key: str) -> set[str]:
    """Every unit the [Unit] section names in `key=` lines (repeated keys add up)."""
    names: set[str] = set()
    for line in UNIT_FILE.read_text().splitlines():
        if line.startswith(f"{key}="):
            names.update(line.partition("=")[2].split())
    return names


def test_every_consumer_starts_after_the_restore() -> None:
    """The unit file is Before= every unit of the table but the driver's own daemons."""
    assert set(consumers.STARTED_AFTER) - _ordering("Before") == set()


def test_the_driver_daemons_start_before_the_restore() -> None:
    """The unit file is After= the driver's daemons (persistenced, fabric manager)."""
    assert set(consumers.STARTED_BEFORE) - _ordering("After") == set()


def test_the_unit_file_orders_before_no_unit_missing_from_the_table() -> None:
    """Each unit the boot unit is Before= is a row of the table (one list, not two)."""
    assert _ordering("Before") - NOT_CONSUMERS - set(consumers.STARTED_AFTER) == set()


def test_the_defaults_are_subsets_of_the_table() -> None:
    """stop-units, refresh-units and the known GPU holders are drawn from the table, each once."""
    names = [u.name for u in consumers.UNITS]
    assert len(names) == len(set(names))
    for derived in (
        consumers.DEFAULT_STOP_UNITS,
        consumers.DEFAULT_REFRESH_UNITS,
        consumers.KNOWN_GPU_CLIENTS,
    ):
        assert set(derived) <= set(names)
        assert len(derived) == len(set(derived))
    assert consumers.DEFAULT_REFRESH_UNITS[0] in consumers.ONESHOT_REFRESH_UNITS


def test_dcgm_and_its_exporter_are_refreshed_by_default() -> None:
    """DCGM and dcgm-exporter list MIG devices at start: refreshed, DCGM before the exporter."""
    refreshed = consumers.DEFAULT_REFRESH_UNITS
    assert refreshed.index("nvidia-dcgm.service") < refreshed.index("dcgm-exporter.service")
