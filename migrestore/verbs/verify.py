"""`verify`: does the host match the layout file? 0 in sync, 3 drift, 4 a reset pending, 5 the
driver runs in the GPU operator's container (no NVML on the host: nothing to verify here).

Also the drift check of a live host: migrestore-verify.timer runs `verify --skip-during-apply`
every few minutes. That takes the run lock shared, so an apply that starts meanwhile waits until
the check has closed NVML (an open NVML session makes a GPU reset fail), and while an apply holds
the lock it skips: one info line, exit 0, neither the GPUs nor the metrics touched, so a layout
half-way through its change is never reported as drift. Under the journal each difference is a
line at warning priority. Every verify rewrites the metrics file (`migrestore.metrics`), the drift
check while it still holds the lock.
"""

from __future__ import annotations

import argparse
import sys

from migrestore import contract, metrics, report, runs
from migrestore.context import Context
from migrestore.errors import DriverError, ExitCode
from migrestore.events import log
from migrestore.plan import NodePlan, plan_node
from migrestore.verbs.common import (
    add_json_flag,
    container_driver,
    emit,
    load_layout,
    read,
    warn_renamed,
)

WARNING = 4  # syslog priority of each difference in the journal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`, `--skip-during-apply`, `--metrics-dir`."""
    add_json_flag(parser)
    parser.add_argument(
        "--skip-during-apply",
        action="store_true",
        help=(
            "take the run lock shared; while an apply holds it, exit 0 without reading the GPUs "
            "or writing metrics (the drift timer)"
        ),
    )
    metrics.add_argument(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the differences, refresh the metrics and exit with the verdict."""
    if not args.skip_during_apply:
        return _verify(ctx, args)
    with runs.shared_unless_applying(ctx.run_dir) as free:
        if free:
            return _verify(ctx, args)
    log.info("verify_skipped", reason="an apply is running", lock=str(ctx.run_dir / "lock"))
    return ExitCode.OK


def _verify(ctx: Context, args: argparse.Namespace) -> int:
    desired = load_layout(ctx)
    target = metrics.directory(args.metrics_dir, desired.restore.metrics_dir, ctx.simulated)
    with metrics.Recorder(target) as recorder:
        try:
            state = read(ctx, details="layout")
        except DriverError:
            container = container_driver(ctx)
            if not container:
                raise
            return _driver_in_container(ctx, container, args.json)
        node = warn_renamed(plan_node(desired, state))
        if args.json:
            document = {"simulated": ctx.simulated, **report.plan_json(node)}
            print(report.dumps(contract.versioned("verify", document)))
        else:
            emit(ctx, _differences_as_warnings(node, report.drift_text(node)))
        code = verdict(node)
        recorder.done(node, code)
    return code


def _driver_in_container(ctx: Context, container: str, as_json: bool) -> int:
    """NVML does not open and the GPU operator's driver container is there: the operator owns
    MIG on this host. Exit 5, which the consumer gate and the drift check's unit let pass (a
    gated kubelet must start: it starts the driver pod). No metrics: nothing was read. Under
    --json stdout stays empty (no verify document describes this); the event says why."""
    text = f"driver runs in a container ({container}): nothing to verify on the host"
    log.info("driver_in_container", reason=text)
    if not as_json:
        emit(ctx, text)
    return ExitCode.NOT_ON_HOST


def _differences_as_warnings(node: NodePlan, text: str) -> str:
    """Under the journal (stdout is its stream), every line of a verify that is not in sync
    carries the warning priority prefix; on a terminal the text is unchanged."""
    if node.is_empty:
        return text
    from migrestore.logs import journal_prefix  # only when there is drift: logging is heavy

    prefix = journal_prefix(WARNING, sys.stdout)
    return "\n".join(prefix + line for line in text.split("\n"))


def verdict(node: NodePlan) -> ExitCode:
    """The exit status of `verify` for a plan (1: a GPU cannot be read)."""
    if node.unreadable:
        return ExitCode.FAILURE
    if node.is_empty:
        return ExitCode.OK
    return ExitCode.PENDING if node.reset_pending else ExitCode.DRIFT
