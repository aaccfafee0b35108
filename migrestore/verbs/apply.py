"""`apply`: check everything, plan, execute, read back, verify, record.

Nothing is touched unless the whole file resolves on every GPU it selects. Success means the plan
made from a fresh read of the GPUs after the changes is empty.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone

from migrestore import (
    __version__,
    allocations,
    audit,
    bindings,
    caps,
    config,
    execute,
    host,
    metrics,
    owners,
    refresh,
    report,
    runs,
)
from migrestore.consumers import ONESHOT_REFRESH_UNITS, SLURMD
from migrestore.context import Context
from migrestore.errors import ConfigError, DriverError, ExitCode, MigrestoreError, UnitError
from migrestore.events import log
from migrestore.interfaces import Gpus, Notifier, Units
from migrestore.logs import failures_at_error_priority, is_terminal
from migrestore.model import DesiredNode, NodeState, OnFailure, TargetLayout
from migrestore.plan import GpuPlan, NodePlan, plan_gpu, plan_node
from migrestore.progress import TerminalProgress
from migrestore.selection import Slot, match, uncounted_index_entries
from migrestore.systemd import restart_order
from migrestore.verbs.common import (
    add_json_flag,
    container_driver,
    emit,
    load_layout,
    seconds,
    warn_renamed,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--force`, `--dry-run`, `--boot`, `--json`, `--lock-wait`, `--metrics-dir`."""
    add = parser.add_argument
    add(
        "--force",
        action="store_true",
        help="go ahead despite a scheduler's allocation or busy instances (NVML refuses those)",
    )
    add("--dry-run", action="store_true", help="only show the plan (same as `plan`)")
    add(
        "--boot",
        action="store_true",
        help="run as the boot service (wait for the driver, notify systemd)",
    )
    add_json_flag(parser)
    add(
        "--lock-wait",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for another run to finish (default 30)",
    )
    metrics.add_argument(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Restore the layout file's partitioning."""
    if args.dry_run:
        from migrestore.verbs import plan

        return plan.run(ctx, args)
    notifier = host.notifier(args.boot, ctx.verbosity)
    # lexists: a dangling or looping symlink is a layout file that cannot be read (exit 2).
    if args.boot and not os.path.lexists(ctx.config):
        return _nothing_to_do(ctx, notifier, f"no layout file at {ctx.config}: nothing to restore")
    desired = load_layout(ctx)
    if not desired.gpus:
        return _nothing_to_do(
            ctx, notifier, f"{ctx.config} has no [[gpu]] entries: nothing to restore"
        )
    gpus = host.gpus(ctx)
    if args.boot:
        container = _driver_in_container(ctx, gpus)
        if container:
            text = f"driver runs in a container ({container}): nothing to restore on the host"
            return _nothing_to_do(ctx, notifier, text, ExitCode.NOT_ON_HOST)
    target = metrics.directory(args.metrics_dir, desired.restore.metrics_dir, ctx.simulated)
    with runs.locked(ctx.run_dir, args.lock_wait), _signals_interrupt():
        left = _start_left_stopped(ctx)
        with metrics.Recorder(target) as recorder:
            try:
                _open(gpus, args.boot, desired, notifier)
                try:
                    code = _apply_locked(ctx, args, desired, gpus, notifier, recorder)
                finally:
                    _end_progress(notifier)
                    gpus.close()
            except (MigrestoreError, KeyboardInterrupt) as exc:
                _save(_aborted(ctx, args, desired, exc), ctx)
                raise
    return ExitCode.FAILURE if left and code == ExitCode.OK else code


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (systemctl stop, the start timeout) as SIGINT: the NVML call under way finishes,
    then the run unwinds, starting again the units it stopped, and exits non-zero (130)."""

    def interrupt(signum: int, frame: object) -> None:
        log.error("interrupted", signal=signal.Signals(signum).name)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_left_stopped(ctx: Context) -> str:
    """Start the driver clients a killed earlier run left stopped; returns why that failed."""
    left = runs.left_stopped(ctx.state_dir)
    if not left:
        return ""
    log.warning("starting_units_left_stopped", units=",".join(left))
    try:
        host.units(ctx).start(restart_order(left))
    except UnitError as exc:
        log.error("gpu_clients_not_restarted", error=str(exc))
        return str(exc)
    runs.forget_stopped(ctx.state_dir)
    return ""


def _open(gpus: Gpus, boot: bool, desired: DesiredNode, notifier: Notifier) -> None:
    """Open NVML; at boot wait (bounded, with the start timeout extended) for the driver."""
    if not boot:
        gpus.open()
        return
    timeout = desired.restore.driver_timeout

    def waiting(left: float) -> None:
        notifier.status(f"waiting for the NVIDIA driver ({left:.0f} s left)")
        notifier.extend_timeout(left + 30)

    gpus.wait_for_driver(timeout, waiting)


def _nothing_to_do(
    ctx: Context,
    notifier: Notifier,
    message: str,
    code: ExitCode = ExitCode.OK,
) -> int:
    """A visible no-op success: nothing is changed (READY=1: the unit succeeds, so that the
    consumers ordered or gated after it start)."""
    if code == ExitCode.NOT_ON_HOST:
        log.info("driver_in_container", reason=message)
    else:
        log.info("nothing_to_restore", reason=message)
    emit(ctx, message)
    notifier.status(message)
    notifier.ready()
    return code


def _driver_in_container(ctx: Context, gpus: Gpus) -> str:
    """At boot: the GPU operator's driver container owns the driver and NVML does not open on the
    host. Returns the trace seen (/run/nvidia/driver or the operator's toolkit), "" otherwise.
    One NVML attempt, no wait: on such a host the driver never appears outside the container."""
    container = container_driver(ctx)
    if not container:
        return ""
    try:
        gpus.open()
    except DriverError:
        return container
    gpus.close()
    return ""


def _apply_locked(
    ctx: Context,
    args: argparse.Namespace,
    desired: DesiredNode,
    gpus: Gpus,
    notifier: Notifier,
    recorder: metrics.Recorder,
) -> int:
    started = time.monotonic()
    owner = _other_owner(ctx) if args.boot else ""
    notifier.status("reading GPUs")
    before = gpus.read_state()
    slots = runs.last_slots(ctx.state_dir)
    _warn_uncounted(desired)
    node = warn_renamed(plan_node(desired, before, slots))
    log.info(
        "planned",
        gpus=len(node.gpus),
        steps=sum(len(p.steps) for p in node.gpus),
        simulated=ctx.simulated,
    )
    options = execute.Options(
        force=args.force,
        stop_units=desired.restore.stop_units,
        state_dir=ctx.state_dir,
        sysroot=None if ctx.simulated and not ctx.sysroot_given else ctx.sysroot,
    )
    units = host.units(ctx)
    if not args.boot or _clients_running(units, desired):
        _check_allocations(ctx, args.force, desired, node, units)
    refresh_names = desired.restore.refresh_units
    with execute.clients_held(units, options.stop_units, ctx.state_dir, notifier) as held:

        def run(plans: tuple[GpuPlan, ...]) -> execute.Execution:
            return execute.execute(plans, gpus, units, notifier, options, held)

        execution = run(node.gpus)
        execution = _after_mode_change(desired, before, node, execution, gpus, run, slots)
        execution = _disable_mig_on_failure(desired, before, execution, gpus, run, slots)
        notifier.status("verifying")
        touched = {p.gpu.uuid for p in node.gpus if p.steps}
        after = gpus.reread(before, touched) if touched else before
        for lost in after.unreadable:
            log.error("gpu_unreadable", gpu=lost.label, uuid=lost.uuid, error=lost.error)
        final = plan_node(desired, after, slots)
        changed_layout = any(o.steps_done for o in execution.outcomes)
        # Which consumers run now, asked before anything may start them (READY at boot).
        refreshing = _running(units, refresh_names, execution) if changed_layout else ()
        live = not args.boot or bool(held.stopped) or bool(refreshing)
        notes = _device_nodes(ctx, before, after)
        if args.boot and live and _exit_code(execution, final) == ExitCode.OK and not notes:
            # `systemctl restart migrestore` on a running host: the units started again below
            # are ordered after migrestore.service; READY lets them start now, awaited.
            notifier.ready()
        consumers = _rerun_cdi(units, refresh_names) if changed_layout and live else ()
        consumers += tuple(p for p in (held.start_again(),) if p)
        consumers += _refresh(units, refreshing)
    if consumers:
        problems = "; ".join(p for p in (execution.unit_error, *consumers) if p)
        execution = replace(execution, unit_error=problems)
    notes += (execution.unit_error,) if execution.unit_error else ()
    code = _exit_code(execution, final)
    if notes and code == ExitCode.OK:
        code = ExitCode.FAILURE
    record = _record(ctx, args, desired, after, execution, code, final)
    changed = runs.changed_devices(runs.last(ctx.state_dir), record)
    _save(_with_notes(replace(record, notes=notes), changed), ctx)
    _end_progress(notifier)
    _report(ctx, args, execution, final, after, changed)
    pending = any(o.reset_pending for o in execution.outcomes)
    changes = sum(o.steps_done for o in execution.outcomes)
    recorder.done(final, code, changes=changes, reset_pending=pending)
    seconds = time.monotonic() - started
    _summary(notifier, node, execution, final, code, seconds, notes, owner)
    return code


def _other_owner(ctx: Context) -> str:
    """Another owner of MIG the boot restore can see with file checks alone (logged)."""
    if ctx.simulated and not ctx.sysroot_given:
        return ""
    owner = owners.at_boot(ctx.sysroot)
    if owner:
        log.warning("other_mig_owner", owner=owner)
    return owner


def _clients_running(units: Units, desired: DesiredNode) -> bool:
    """Whether GPU clients or refresh units run: `apply --boot` is then a live change (`systemctl
    restart migrestore` on a running host), not the first restore, which they are ordered after."""
    names = tuple(dict.fromkeys((*desired.restore.stop_units, *desired.restore.refresh_units)))
    try:
        return bool(units.active(names))
    except UnitError:
        return False


def _check_allocations(
    ctx: Context, force: bool, desired: DesiredNode, node: NodePlan, units: Units
) -> None:
    """A live change to a GPU whose MIG devices a pod or a Slurm job holds is refused before
    anything is stopped or changed (exit 1, naming the holder), unless --force."""
    changing = tuple(p for p in node.gpus if p.steps)
    if not changing:
        return
    try:
        slurmd = bool(units.active((SLURMD,)))
    except UnitError as exc:  # systemd out of reach: Slurm is asked if its client is here
        slurmd = shutil.which("scontrol") is not None
        log.debug("slurmd_state_unknown", error=str(exc), asking_slurm=slurmd)
    # A simulated host's kubelet is the one below its --sysroot, never the real host's.
    sysroot = None if ctx.simulated and not ctx.sysroot_given else ctx.sysroot
    try:
        held = allocations.read(changing, sysroot, slurmd, desired.restore.pre_apply)
    except allocations.AllocationsUnknown as exc:
        if not force:
            raise
        log.warning("allocations_overridden", error=str(exc))
        return
    found = allocations.conflicts(changing, held)
    if not found:
        return
    words = found[0].describe() + (f"; and {len(found) - 1} more" if len(found) > 1 else "")
    if force:
        log.warning("allocations_overridden", error=words)
        return
    raise allocations.AllocatedError(
        f"refused: {words}", hint="drain the node or wait for the holder to end, or use --force"
    )


def _warn_uncounted(desired: DesiredNode) -> None:
    """Index entries without the host's GPU count follow the indices wherever they shift."""
    entries = uncounted_index_entries(desired)
    if entries:
        log.warning("index_entries_uncounted", entries=",".join(s.label for s in entries))


def _save(record: runs.RunRecord, ctx: Context) -> None:
    """Keep the run record; failing to is a warning: it never undoes a restore or its READY."""
    try:
        runs.save(record, ctx.state_dir)
    except OSError as exc:
        log.warning("run_record_not_saved", state_dir=str(ctx.state_dir), error=str(exc))


def _aborted(
    ctx: Context, args: argparse.Namespace, desired: DesiredNode, exc: BaseException
) -> runs.RunRecord:
    """The record of a run that stopped before its end (a unit that would not stop, the driver
    not there, NVML failing, SIGTERM): failed, with why, so `status` never shows the previous
    run's result as the last. The error itself is logged once, by the command line."""
    why = "interrupted (SIGTERM or SIGINT)" if isinstance(exc, KeyboardInterrupt) else str(exc)
    nothing = execute.Execution(outcomes=())
    record = _record(ctx, args, desired, NodeState(gpus=()), nothing, ExitCode.FAILURE)
    return replace(record, notes=(f"aborted: {why}",))


def _digest(ctx: Context) -> str:
    """The layout file's SHA-256 for the record, "" if it can no longer be read."""
    try:
        return config.digest(ctx.config)
    except ConfigError as exc:
        log.warning("layout_digest_failed", error=str(exc))
        return ""


def _after_mode_change(
    desired: DesiredNode,
    before: NodeState,
    node: NodePlan,
    execution: execute.Execution,
    gpus: Gpus,
    run: Callable[[tuple[GpuPlan, ...]], execute.Execution],
    slots: tuple[Slot, ...],
) -> execute.Execution:
    """GPUs whose profile table the driver showed only with MIG on (R535): the first pass enabled
    MIG; read their tables now, then plan and create their instances."""
    outcomes = {o.uuid: o for o in execution.outcomes}
    enabled = {
        g.uuid for g in node.unplanned if outcomes[g.uuid].ok and not outcomes[g.uuid].reset_pending
    }
    if not enabled:
        return execution
    middle = gpus.reread(before, enabled)
    replanned = warn_renamed(plan_node(desired, middle, slots))
    plans = tuple(p for p in replanned.gpus if p.gpu.uuid in enabled)
    log.info("planned_after_mig_enabled", gpus=len(plans), steps=sum(len(p.steps) for p in plans))
    return execute.merged(execution, run(plans))


def _disable_mig_on_failure(
    desired: DesiredNode,
    before: NodeState,
    execution: execute.Execution,
    gpus: Gpus,
    run: Callable[[tuple[GpuPlan, ...]], execute.Execution],
    slots: tuple[Slot, ...],
) -> execute.Execution:
    """`on-failure = "disable-mig"`: a GPU whose layout failed has its instances destroyed and MIG
    mode turned off, so that consumers see a whole GPU rather than a half-made layout (Hopper and
    later at once; Ampere after the reset, or pending it). The GPU stays failed in the result."""
    chosen = match(desired, before, slots)
    failed = set()
    for outcome in execution.outcomes:
        spec = chosen.spec_for(outcome.uuid)
        if spec is None or not outcome.layout_failed or outcome.reset_pending:
            continue
        if desired.on_failure(spec) is OnFailure.DISABLE_MIG:
            failed.add(outcome.uuid)
    if not failed:
        return execution
    now = gpus.reread(before, failed)
    plans = tuple(plan_gpu(TargetLayout(mig=False), g) for g in now.gpus if g.uuid in failed)
    execution = execute.fell_back(execution, run(plans))
    for outcome in execution.outcomes:
        if outcome.uuid in failed:
            words = outcome.on_failure or "the GPU could not be read again"
            log.warning("mig_disabled_after_failure", gpu=outcome.uuid, result=words)
    return execution


def _running(units: Units, names: tuple[str, ...], execution: execute.Execution) -> tuple[str, ...]:
    """The refresh units that run now and were not stopped with the GPU clients (those start
    again anyway): after the relayout they are restarted, since they cache the MIG devices."""
    skip = (*execution.stopped_units, *ONESHOT_REFRESH_UNITS)
    wanted = tuple(u for u in names if u not in skip)
    try:
        return units.active(wanted) if wanted else ()
    except UnitError as exc:
        log.error("refresh_failed", error=str(exc))
        return ()


def _rerun_cdi(units: Units, names: tuple[str, ...]) -> tuple[str, ...]:
    """Run the CDI refresh oneshot again, awaited, before any consumer starts: the device plugin
    reads the CDI spec it writes. Returns a note if that failed."""
    try:
        refresh.rerun_oneshots(units, names)
    except UnitError as exc:
        log.error("refresh_failed", error=str(exc))
        return (f"refreshing the CDI spec failed: {exc}",)
    return ()


def _refresh(units: Units, running: tuple[str, ...]) -> tuple[str, ...]:
    """After a live relayout, restart the running units that cache the MIG device list, each
    start awaited. Returns a note if that failed."""
    try:
        restarted = refresh.refresh_consumers(units, running, rerun_oneshots=False)
    except UnitError as exc:
        log.error("refresh_failed", error=str(exc))
        return (f"refreshing MIG device consumers failed: {exc}",)
    if restarted:
        log.info("consumers_refreshed", units=",".join(restarted))
    return ()


def _device_nodes(ctx: Context, before: NodeState, after: NodeState) -> tuple[str, ...]:
    """/dev/nvidia-caps nodes made for new instances and removed for destroyed ones: on a real
    host, or on a simulated one given a --sysroot."""
    if ctx.simulated and not ctx.sysroot_given:
        return ()
    try:
        removed = caps.remove_stale_nodes(before, after, ctx.sysroot)
        made = caps.ensure_nodes(after, ctx.sysroot)
    except OSError as exc:
        log.error("device_nodes_failed", error=str(exc))
        return (f"could not update /dev/nvidia-caps nodes: {exc}",)
    if made:
        log.info("device_nodes_created", count=len(made))
    if removed:
        log.info("device_nodes_removed", count=len(removed))
    return ()


def _exit_code(execution: execute.Execution, final: NodePlan) -> ExitCode:
    if final.unreadable:
        return ExitCode.FAILURE
    if any(o.reset_pending for o in execution.outcomes) or final.reset_pending:
        return ExitCode.PENDING
    failed = any(not o.ok for o in execution.outcomes)
    return ExitCode.FAILURE if failed or not final.is_empty else ExitCode.OK


def _record(
    ctx: Context,
    args: argparse.Namespace,
    desired: DesiredNode,
    after: NodeState,
    execution: execute.Execution,
    code: ExitCode,
    final: NodePlan | None = None,
) -> runs.RunRecord:
    """The run record; `final` (the plan after the run) is None for a run that aborted early."""
    outcomes = {o.uuid: o for o in execution.outcomes}
    # A GPU replaced in its slot keeps the UUID it stands for, so that later runs still know it.
    replaced = final.replaced if final is not None else ()
    replaces = {r.gpu.uuid: str(r.spec.selector.value) for r in replaced}
    gpus = tuple(
        runs.GpuRecord(
            uuid=g.uuid,
            index=g.index,
            name=g.name,
            result="ok" if outcomes.get(g.uuid) is None or outcomes[g.uuid].ok else "failed",
            error=outcomes[g.uuid].error if g.uuid in outcomes else "",
            mig_devices=tuple(ci.uuid for gi in g.instances for ci in gi.compute),
            pci=g.pci,
            steps=outcomes[g.uuid].done if g.uuid in outcomes else (),
            on_failure=outcomes[g.uuid].on_failure if g.uuid in outcomes else "",
            serial=g.serial,
            replaces=replaces.get(g.uuid, ""),
        )
        for g in after.gpus
    )
    lost = tuple(
        runs.GpuRecord(
            uuid=u.uuid, index=u.index, name=u.name, result="failed", error=u.error, pci=u.pci
        )
        for u in after.unreadable
    )
    used = bindings.loaded_bindings()
    return runs.RunRecord(
        time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=str(ctx.config),
        config_sha256=desired.sha256 or _digest(ctx),
        result={ExitCode.OK: "ok", ExitCode.PENDING: "reset-pending"}.get(code, "failed"),
        simulated=ctx.simulated,
        gpus=tuple(sorted((*gpus, *lost), key=lambda g: g.index)),
        boot=args.boot,
        driver=after.driver_version,
        nvml_bindings=str(used or ""),
        verb=args.verb,
        flags=audit.flags(args),
        who=audit.actor(os.environ, os.getuid()),
        migrestore_version=__version__,
        nvml_bindings_version=used.version if used else "",
        nvml_bindings_path=used.path if used else "",
    )


def _problems(
    node: NodePlan, failed: list[execute.GpuOutcome], final: NodePlan, notes: tuple[str, ...]
) -> list[str]:
    """What went wrong, most important first, for the one-line status."""
    lines = [f"{u.label}: cannot be read: {u.error}" for u in final.unreadable]
    lines += [f"{len(failed)} of {len(node.gpus)} GPU(s) not restored"] if failed else []
    lines += [f"{o.label}: {o.error}" for o in failed]
    lines += [f"missing: no GPU matches {s.label} ({s.selector})" for s in final.missing]
    lines += [
        f"{r.spec.label}: GPU replaced in its slot {r.gpu.pci}"
        for r in final.replaced
        if not r.adopted
    ]
    lines += [f"{m.gpu.label}: not the model its entry names" for m in final.mismatched]
    lines += [f"{p.gpu.label}: still differs from the layout" for p in final.gpus if p.steps]
    return lines + list(notes)


def _with_notes(record: runs.RunRecord, changed: tuple[str, ...]) -> runs.RunRecord:
    if not changed:
        return record
    note = f"MIG device UUIDs changed since the previous run on: {', '.join(changed)}"
    log.warning("mig_device_uuids_changed", gpus=",".join(changed))
    return replace(record, notes=(*record.notes, note))


def _report(
    ctx: Context,
    args: argparse.Namespace,
    execution: execute.Execution,
    final: NodePlan,
    after: NodeState,
    changed: tuple[str, ...],
) -> None:
    if args.json:
        print(
            report.dumps(
                {"simulated": ctx.simulated, **report.apply_json(execution, final, changed)}
            )
        )
    elif ctx.verbosity < 0:
        failures = report.apply_failures_text(execution, final, after)
        if failures:
            print(failures)
    elif is_terminal(sys.stdout):
        emit(ctx, report.apply_table(execution, final, after))
    else:
        emit(ctx, failures_at_error_priority(report.apply_text(execution, final, after)))


def _end_progress(notifier: Notifier) -> None:
    """Take a person's progress line away before anything else is printed."""
    if isinstance(notifier, TerminalProgress):
        notifier.clear()


def _summary(
    notifier: Notifier,
    node: NodePlan,
    execution: execute.Execution,
    final: NodePlan,
    code: ExitCode,
    seconds: float,
    notes: tuple[str, ...],
    owner: str = "",
) -> None:
    failed = [o for o in execution.outcomes if not o.ok]
    changes = sum(o.steps_done for o in execution.outcomes)
    if code == ExitCode.OK:
        text = f"{len(node.gpus)} GPU(s) in layout, {changes} change(s) in {seconds:.1f} s"
    else:
        text = "FAILED: " + "; ".join(_problems(node, failed, final, notes)[:4])
    if owner:
        text += f"; other MIG owner: {owner}"
    level = log.info if code == ExitCode.OK else log.error
    level(
        "apply_finished",
        result=code.name.lower(),
        gpus=len(node.gpus),
        changes=changes,
        failed=len(failed),
        unreadable=len(final.unreadable),
        seconds=round(seconds, 3),
    )
    notifier.status(text)
    if code == ExitCode.OK:
        notifier.ready()
