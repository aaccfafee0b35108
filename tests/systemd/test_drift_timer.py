"""Drift detection on a live host: the shipped migrestore-verify timer and service under a real
(private) systemd manager, a simulated GPU host and the metrics file they keep."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from migrestore import metrics

from .bootrig import BootRig
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

A100 = "NVIDIA A100-SXM4-80GB"
SERVICE = "migrestore-verify.service"
TIMER = "migrestore-verify.timer"
LAYOUT = """version = 1
[restore]
metrics-dir = "{directory}"
[[gpu]]
select = "all"
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
"""
CHECK_TIMEOUT = 30.0


@dataclass(frozen=True)
class Reading:
    """What the metrics file said at one moment."""

    in_layout: float
    success: float
    ended: float
    seconds: float
    changes: float


def read_metrics(directory: Path) -> Reading | None:
    """The metrics file, parsed by prometheus_client (None before the first run wrote it)."""
    try:
        text = (directory / metrics.FILE_NAME).read_text()
    except FileNotFoundError:
        return None
    found = {f.name: f.samples for f in text_string_to_metric_families(text)}
    [gpu] = found["migrestore_gpu_in_layout"]

    def one(name: str) -> float:
        return float(found[f"migrestore_last_run_{name}"][0].value)

    names = ("success", "timestamp_seconds", "duration_seconds", "changes")
    success, ended, seconds, changes = (one(name) for name in names)
    return Reading(gpu.value, success, ended, seconds, changes)


def in_layout(directory: Path) -> float | None:
    """migrestore_gpu_in_layout of the one GPU, None before the first check."""
    reading = read_metrics(directory)
    return None if reading is None else reading.in_layout


def a100_host(manager: UserManager, tmp_path: Path) -> tuple[BootRig, Path]:
    """A simulated A100 host, a layout naming a metrics directory, and the verify timer installed
    (firing every half second) and enabled; the manager not yet booted."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", A100)
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    rig.layout(LAYOUT.format(directory=directory))
    rig.install_verify_timer(every=0.5)
    manager.enable(TIMER)
    return rig, directory


def journal(rig: BootRig) -> list[tuple[int, str]]:
    """(priority, message) of the verify service's journal lines."""
    return rig.manager.journal_messages(SERVICE)


def checked_since(directory: Path, moment: float) -> bool:
    """A check (no changes made) wrote the metrics file after `moment` (Unix time)."""
    reading = read_metrics(directory)
    return reading is not None and reading.changes == 0 and reading.ended > moment


def test_the_timer_checks_and_the_metric_flips_with_the_layout(
    manager: UserManager, tmp_path: Path
) -> None:
    """Enabled, the timer runs the check again and again: 1 while the GPU is in its layout, 0
    with the differences journaled as warnings once its instances are gone (changed by hand),
    the unit failed (exit status 3); the checks go on and see the layout restored."""
    rig, directory = a100_host(manager, tmp_path)
    manager.boot()
    rig.migrestore("apply")
    applied = time.time()
    wait_until(lambda: checked_since(directory, applied), CHECK_TIMEOUT)
    assert in_layout(directory) == 1
    wait_until(lambda: manager.show(SERVICE, "Result")["Result"] == "success", 10)
    rig.simulate("reboot")  # Ampere keeps MIG mode; the GPU and compute instances are gone
    wait_until(lambda: in_layout(directory) == 0, CHECK_TIMEOUT)
    manager.systemctl("stop", TIMER)  # the last check ends; its result stays until the next
    manager.wait_settled(SERVICE)
    ended = manager.show(SERVICE, "ActiveState", "Result", "ExecMainStatus")
    assert ended == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "3"}
    manager.systemctl("start", TIMER)
    warnings = [text for priority, text in journal(rig) if priority == 4]
    assert any(": drift: needs to create 3g.40gb at 4" in text for text in warnings), journal(rig)
    assert not [text for priority, text in journal(rig) if priority < 4]
    rig.migrestore("apply")
    applied = time.time()
    wait_until(lambda: checked_since(directory, applied), CHECK_TIMEOUT)
    assert in_layout(directory) == 1
    wait_until(lambda: manager.show(SERVICE, "Result")["Result"] == "success", 10)
    assert manager.show(TIMER, "ActiveState")["ActiveState"] == "active"


def poll(directory: Path, seen: list[Reading], stop: threading.Event) -> None:
    """Record each new reading of the metrics file until `stop` is set."""
    while not stop.is_set():
        reading = read_metrics(directory)
        if reading is not None and (not seen or seen[-1] != reading):
            seen.append(reading)
        time.sleep(0.02)


def test_a_check_during_an_apply_skips(manager: UserManager, tmp_path: Path) -> None:
    """While an apply holds the lock the timer's checks skip (exit 0, one info line) and write
    nothing: the apply's GPU reset is never refused for their NVML session, and the metric
    goes from 0 to 1 once, when the apply ends, without flapping."""
    rig, directory = a100_host(manager, tmp_path)
    rig.simulate("latency", "--scale", "0.3")  # an apply of a few seconds, with a GPU reset
    manager.boot()
    wait_until(lambda: in_layout(directory) == 0, CHECK_TIMEOUT)
    seen: list[Reading] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(directory, seen, stop))
    poller.start()
    try:
        applied = rig.migrestore("apply", check=False)
        ended = time.time()
        wait_until(lambda: checked_since(directory, ended), CHECK_TIMEOUT)
        time.sleep(0.1)
    finally:
        stop.set()
        poller.join()
    assert applied.returncode == 0, applied.stderr
    [by_apply] = [r for r in seen if r.changes > 0]
    assert by_apply.changes == 4  # MIG on, the GPU reset, a GPU and a compute instance
    held_from = by_apply.ended - by_apply.seconds
    assert not [r for r in seen if held_from <= r.ended < by_apply.ended]
    before, after = seen[: seen.index(by_apply)], seen[seen.index(by_apply) :]
    assert {r.in_layout for r in before} == {0}
    assert {r.in_layout for r in after} == {1}
    skipped = [(priority, text) for priority, text in journal(rig) if "verify_skipped" in text]
    assert skipped, (applied.stderr, journal(rig))
    assert {priority for priority, _ in skipped} == {6}
