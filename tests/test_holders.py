"""holders: naming the processes that keep NVIDIA device files open."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrestore.holders import Holder, describe, holders
from tests.fakes import fake_process


def test_holders_below_sysroot(tmp_path: Path) -> None:
    """Only processes with a descriptor on /dev/nvidia* are named, by pid, with their comm."""
    fake_process(tmp_path, 990, "dcgm-exporter", ["/dev/null", "/dev/nvidiactl"])
    fake_process(tmp_path, 812, "nv-hostengine", ["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap1"])
    fake_process(tmp_path, 77, "bash", ["/dev/pts/0", "socket:[1234]"])
    (tmp_path / "proc" / "self").mkdir()
    assert holders(tmp_path, exclude=()) == (
        Holder(812, "nv-hostengine"),
        Holder(990, "dcgm-exporter"),
    )


def test_deleted_device_link_still_counts(tmp_path: Path) -> None:
    """A descriptor on a removed node ("/dev/nvidia0 (deleted)") still holds the GPU."""
    fake_process(tmp_path, 5, "Xorg", ["/dev/nvidia0 (deleted)"])
    assert holders(tmp_path, exclude=()) == (Holder(5, "Xorg"),)


def test_name_falls_back_to_cmdline(tmp_path: Path) -> None:
    """Without a comm file the name is argv[0]'s basename, else "?"."""
    fake_process(tmp_path, 10, None, ["/dev/nvidia1"], b"/usr/bin/nvsm-core\0--flag\0")
    fake_process(tmp_path, 11, None, ["/dev/nvidia1"])
    assert holders(tmp_path, exclude=()) == (Holder(10, "nvsm-core"), Holder(11, "?"))


def test_excluded_pids_are_skipped(tmp_path: Path) -> None:
    """Excluded pids (by default our own) are not reported."""
    fake_process(tmp_path, 10, "a", ["/dev/nvidia0"])
    fake_process(tmp_path, os.getpid(), "migrestore", ["/dev/nvidiactl"])
    assert holders(tmp_path) == (Holder(10, "a"),)
    assert holders(tmp_path, exclude=[10]) == (Holder(os.getpid(), "migrestore"),)


def test_missing_proc_means_no_holders(tmp_path: Path) -> None:
    """A sysroot without /proc (or an unreadable one) yields nothing rather than an error."""
    assert holders(tmp_path) == ()


@pytest.fixture(name="child_holding")
def fixture_child_holding(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real child process (`sleep`) that keeps a file open on descriptor 3."""
    device = tmp_path / "nvidia-fake0"
    device.write_text("")
    with device.open("rb") as held:
        child = subprocess.Popen(["sleep", "30"], stdin=held)
    try:
        yield child, device
    finally:
        child.kill()
        child.wait()


def test_real_proc(child_holding: tuple[subprocess.Popen[bytes], Path]) -> None:
    """On the real /proc the holder of a file is found with its name; this process is not."""
    child, device = child_holding
    with device.open("rb"):
        found = holders(prefix=str(device))
    assert Holder(child.pid, "sleep") in found
    assert all(holder.pid != os.getpid() for holder in found)


def test_describe() -> None:
    """Holders read as `name (pid N)`, capped at ten with a count of the rest."""
    assert describe(()) == "no process holds /dev/nvidia*"
    assert describe((Holder(812, "nv-hostengine"), Holder(990, "dcgm-exporter"))) == (
        "nv-hostengine (pid 812), dcgm-exporter (pid 990)"
    )
    many = tuple(Holder(pid, "w") for pid in range(12))
    assert describe(many).endswith("w (pid 9) and 2 more")
