"""Prometheus metrics for node_exporter's textfile collector, left after every apply and verify.

`DIR/migrestore.prom` is rewritten whole by prometheus_client's `write_to_textfile` (a temporary
file in DIR renamed over it: node_exporter reads the old file or the new one, never a part). DIR
is `--metrics-dir`, else the layout file's `[restore] metrics-dir`, else node_exporter's Debian
default; nothing is written while DIR does not exist, and nothing by default on a simulated host
(a test must not publish made-up GPUs next to a real host's metrics).

The file describes the last run: one `migrestore_gpu_in_layout` series per GPU the layout governs
(GPUs no entry selects have none), and the run's outcome. A run that fails before it can read the
GPUs (no driver, the layout does not fit the host) leaves only the last-run metrics, with
`migrestore_last_run_success 0`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from migrestore.events import log

if TYPE_CHECKING:
    from migrestore.plan import NodePlan

DEFAULT_DIR = "/var/lib/prometheus/node-exporter"
FILE_NAME = "migrestore.prom"

# name -> help text, in the order the file lists them.
HELP = {
    "migrestore_gpu_in_layout": (
        "1 if the GPU is exactly as the layout file says, 0 if it differs, waits for a reset, "
        "or cannot be read"
    ),
    "migrestore_reset_pending": "1 if a GPU waits for a reset or reboot to reach its MIG mode",
    "migrestore_last_run_success": "1 if the last migrestore apply or verify exited 0",
    "migrestore_last_run_timestamp_seconds": "When the last apply or verify ended (Unix time)",
    "migrestore_last_run_duration_seconds": "How long the last apply or verify took",
    "migrestore_last_run_changes": "MIG changes the last run made (always 0 after verify)",
}
GPU_LABELS = ("uuid", "index", "model")


@dataclass(frozen=True)
class GpuSample:
    """One GPU the layout governs, and whether it is in its layout."""

    uuid: str
    index: int
    model: str
    in_layout: bool


@dataclass(frozen=True)
class RunSample:
    """Everything the file says about one run."""

    gpus: tuple[GpuSample, ...]
    reset_pending: bool
    success: bool
    ended: float  # Unix time
    seconds: float
    changes: int = 0


def add_argument(parser: argparse.ArgumentParser) -> None:
    """`--metrics-dir DIR` for the verbs that write the file."""
    parser.add_argument(
        "--metrics-dir",
        metavar="DIR",
        help=(
            "node_exporter textfile collector directory for migrestore.prom (default: the layout "
            f"file's [restore] metrics-dir, else {DEFAULT_DIR}; nothing is written while it "
            "does not exist)"
        ),
    )


def directory(flag: str | None, configured: str | None, simulated: bool) -> Path | None:
    """Where the file goes: the flag, else the layout file's key, else the default (none for a
    simulated host)."""
    chosen = flag or configured or (None if simulated else DEFAULT_DIR)
    return Path(chosen) if chosen else None


def gpu_samples(plan: NodePlan) -> tuple[GpuSample, ...]:
    """Per governed GPU: in its layout only when nothing is left to do on it. GPUs of the wrong
    model, with an unread profile table or that cannot be read count as not in their layout."""
    found: dict[tuple[str, int], GpuSample] = {}
    for p in plan.gpus:
        ok = p.is_empty and not p.reset_pending
        found[(p.gpu.uuid, p.gpu.index)] = GpuSample(p.gpu.uuid, p.gpu.index, p.gpu.name, ok)
    for gpu in (*(m.gpu for m in plan.mismatched), *plan.unplanned):
        found[(gpu.uuid, gpu.index)] = GpuSample(gpu.uuid, gpu.index, gpu.name, False)
    for lost in plan.unreadable:
        found[(lost.uuid, lost.index)] = GpuSample(lost.uuid, lost.index, lost.name, False)
    return tuple(sorted(found.values(), key=lambda g: (g.index, g.uuid)))


def write(target: Path, sample: RunSample) -> bool:
    """Replace `target/migrestore.prom` with the sample; False (and nothing written) while the
    directory does not exist. OSError when the file cannot be written."""
    if not target.is_dir():
        log.debug("metrics_not_written", reason="no such directory", directory=str(target))
        return False
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()

    def gauge(name: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, HELP[name], labels, registry=registry)

    in_layout = gauge("migrestore_gpu_in_layout", GPU_LABELS)
    for gpu in sample.gpus:
        labels = in_layout.labels(uuid=gpu.uuid, index=str(gpu.index), model=gpu.model)
        labels.set(int(gpu.in_layout))
    gauge("migrestore_reset_pending").set(int(sample.reset_pending))
    gauge("migrestore_last_run_success").set(int(sample.success))
    gauge("migrestore_last_run_timestamp_seconds").set(sample.ended)
    gauge("migrestore_last_run_duration_seconds").set(sample.seconds)
    gauge("migrestore_last_run_changes").set(sample.changes)
    write_to_textfile(str(target / FILE_NAME), registry)
    log.debug("metrics_written", path=str(target / FILE_NAME))
    return True


class Recorder:
    """Times one run from `with` on and writes its metrics: what `done` says, or a failed run
    when the block ends by an exception before `done`. Writing never fails the run: an error is
    a warning."""

    def __init__(self, target: Path | None) -> None:
        self.target = target
        self.started = time.monotonic()
        self.written = False

    def __enter__(self) -> Recorder:
        self.started = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None and not self.written:
            self._write((), reset_pending=False, success=False, changes=0)

    def done(
        self, plan: NodePlan, code: int, *, changes: int = 0, reset_pending: bool = False
    ) -> None:
        """The run ended with exit status `code`, its GPUs as `plan` (made after it) says."""
        pending = reset_pending or plan.reset_pending
        self._write(gpu_samples(plan), reset_pending=pending, success=code == 0, changes=changes)

    def _write(
        self, gpus: tuple[GpuSample, ...], *, reset_pending: bool, success: bool, changes: int
    ) -> None:
        self.written = True
        if self.target is None:
            return
        seconds = time.monotonic() - self.started
        sample = RunSample(gpus, reset_pending, success, time.time(), seconds, changes)
        try:
            write(self.target, sample)
        except OSError as exc:
            log.warning("metrics_not_written", directory=str(self.target), error=str(exc))
