"""/dev/nvidia-caps nodes for new instances, on a fixture tree built from the real H200 readings."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import caps, profiles
from migrestore.model import ComputeInstance, GpuInstance, MigMode, NodeState, Placement
from migrestore.offline import modelled_gpu

HARDWARE = Path(__file__).parent / "fixtures" / "simulator" / "h200-driver-580"
MINORS = HARDWARE / "proc-driver-nvidia-caps-mig-minors.txt"


def h200_with(*instances: GpuInstance) -> NodeState:
    """One H200 (device minor 0) with these instances."""
    model = profiles.find_model("NVIDIA H200")
    assert model is not None
    return NodeState((replace(modelled_gpu(model), mig=MigMode(True, True), instances=instances),))


def sysroot(tmp_path: Path, access_files: dict[str, int]) -> Path:
    """A /proc tree like the real H200's, with per-instance access files as the driver has them."""
    root = tmp_path / "root"
    (root / "proc/driver/nvidia-caps").mkdir(parents=True)
    shutil.copy(MINORS, root / caps.MIG_MINORS)
    (root / "proc/devices").write_text("Character devices:\n195 nvidia\n241 nvidia-caps\n")
    for name, minor in access_files.items():
        path = root / "proc/driver/nvidia/capabilities" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    (root / caps.CAPS_DIR).mkdir(parents=True)
    return root


def test_minors_table_matches_the_real_file(tmp_path: Path) -> None:
    """The parsed table has every line of the real mig-minors file (32 GPUs x 15 GIs x 9 + 2)."""
    table = caps.mig_minors(sysroot(tmp_path, {}))
    assert len(table) == 32 * 15 * 9 + 2
    assert table["gpu0/gi1/access"] == 12
    assert table["gpu0/gi1/ci0/access"] == 13
    assert table["gpu31/gi14/ci7/access"] == 4322


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_nodes_created_for_new_instances(tmp_path: Path) -> None:
    """GI 1 and its CI 0 on GPU minor 0 get nvidia-cap12 and nvidia-cap13, char 241:N, mode 0444."""
    root = sysroot(tmp_path, {"gpu0/mig/gi1/access": 12, "gpu0/mig/gi1/ci0/access": 13})
    state = h200_with(GpuInstance(1, 5, Placement(0, 4), (ComputeInstance(0, 3, Placement(0, 4)),)))
    made = caps.ensure_nodes(state, root)
    assert sorted(p.name for p in made) == ["nvidia-cap12", "nvidia-cap13"]
    node = root / caps.CAPS_DIR / "nvidia-cap13"
    info = node.stat()
    assert stat.S_ISCHR(info.st_mode)
    assert os.major(info.st_rdev) == 241
    assert os.minor(info.st_rdev) == 13
    assert info.st_mode & 0o777 == 0o444
    assert caps.ensure_nodes(state, root) == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_minor_falls_back_to_the_minors_table(tmp_path: Path) -> None:
    """Without an access file the minor comes from mig-minors (gpu0/gi2/access is 21)."""
    root = sysroot(tmp_path, {})
    made = caps.ensure_nodes(h200_with(GpuInstance(2, 9, Placement(4, 4))), root)
    assert [p.name for p in made] == ["nvidia-cap21"]


def test_legacy_proc_mode_makes_no_nodes(tmp_path: Path) -> None:
    """A driver without mig-minors (legacy /proc capability mode) gets no /dev nodes."""
    assert not caps.uses_dev_nodes(tmp_path)
    assert caps.ensure_nodes(h200_with(GpuInstance(2, 9, Placement(4, 4))), tmp_path) == ()
