"""Walk a plan: one adapter call per step, progress to the notifier, one GPU's failure isolated.

Order across the host: refuse GPUs whose plan would destroy busy instances (unless forced); stop
the driver-client units that are active, only if some step needs it (a mode change, a reset or a
destroy); set MIG modes; reset, in one go, only the GPUs whose mode is still pending (refused, with
persistence mode off for the GPUs that have it on, then each alone); then per GPU destroy and
create instances. The stopped units are started again in reverse order, whatever happened:
by `apply` after the device nodes and the CDI refresh (`clients_held`, shared by all its passes),
or here before returning when no HeldClients is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from migrestore import holders, persistence, runs
from migrestore.consumers import FABRIC_MANAGER, KNOWN_GPU_CLIENTS
from migrestore.errors import GpuError, MigrestoreError, UnitError
from migrestore.events import log
from migrestore.interfaces import (
    RESET_TIMEOUT,
    UNIT_START_TIMEOUT,
    UNIT_STOP_TIMEOUT,
    Gpus,
    Notifier,
    Units,
)
from migrestore.model import Architecture, Placement
from migrestore.plan import (
    CreateComputeInstance,
    CreateGpuInstance,
    DestroyComputeInstance,
    DestroyGpuInstance,
    GpuPlan,
    ResetGpu,
    SetMigMode,
    Step,
)
from migrestore.systemd import restart_order

# The reason a GPU stays pending when its reset needs Fabric Manager (issue 16).
FABRIC_MANAGER_REFUSAL = "Fabric Manager not active: reset needs all NVLink peers"
PERSISTENCE_STEP = "persistence mode on"  # the "step" a GPU fails at if persistence stays off


@dataclass(frozen=True)
class GpuOutcome:
    """How one GPU fared: which step failed, with which NVML error, and whether a reset is due."""

    uuid: str
    label: str
    steps_done: int = 0
    failed_step: str = ""
    error: str = ""
    nvml_error: str = ""
    reset_pending: bool = False
    seconds: float = 0.0  # spent in this GPU's own steps (a shared reset is not counted)
    done: tuple[str, ...] = ()  # the steps done, described, in the order they were done
    on_failure: str = ""  # what `on-failure = "disable-mig"` did after the failure, in words

    @property
    def ok(self) -> bool:
        """Every step went through."""
        return not self.error

    @property
    def layout_failed(self) -> bool:
        """A step of its layout failed: not refused before any step (instances in use), not only
        persistence mode left off afterwards, not merely waiting for a reset."""
        return bool(self.failed_step) and self.failed_step != PERSISTENCE_STEP

    def did(self, step: Step) -> GpuOutcome:
        """This outcome with one more step done."""
        return replace(self, steps_done=self.steps_done + 1, done=(*self.done, step.describe()))


@dataclass(frozen=True)
class Execution:
    """The outcome per GPU and the units that were stopped and started again."""

    outcomes: tuple[GpuOutcome, ...]
    stopped_units: tuple[str, ...] = ()
    # What went wrong outside any one GPU's steps: units that did not start again, persistence
    # mode a killed run left off on a GPU no longer in the plan.
    unit_error: str = ""


@dataclass(frozen=True)
class Options:
    """What the operator allowed."""

    force: bool = False
    stop_units: tuple[str, ...] = ()
    state_dir: Path | None = None  # where the units being stopped are noted until started again
    sysroot: Path | None = None  # whose /proc names the units of busy instances' processes


def needs_units_stopped(plans: tuple[GpuPlan, ...]) -> bool:
    """Driver clients get in the way of mode changes (Ampere's reset; Hopper refuses the change
    while a client holds the GPU, the safe assumption), resets and destroying instances."""
    blocking = (SetMigMode, ResetGpu, DestroyGpuInstance, DestroyComputeInstance)
    return any(isinstance(step, blocking) for p in plans for step in p.steps)


def busy_message(plan: GpuPlan, sysroot: Path | None = None) -> str:
    """Why a GPU's plan is refused: the instances, their processes and, when `sysroot`'s /proc
    tells, the units those run in. NVML refuses to destroy an instance with processes (InUse),
    so the way out is ending them, never --force."""
    parts = []
    units: list[str] = []
    for step in plan.busy:
        named = []
        for process in step.processes:
            unit = holders.unit_of(process.pid, sysroot) if sysroot is not None else ""
            named.append(f"{process} in {unit}" if unit else str(process))
            units += [unit] if unit and unit not in units else []
        parts.append(f"{step.name} (GI {step.gi_id}, CI {step.ci_id}) runs {', '.join(named)}")
    why = "NVML refuses to destroy an instance with processes, even with --force"
    if units:
        todo = f"stop {', '.join(units)} (or let the processes end) first"
    else:
        todo = "the processes must end first"
    return f"would destroy instances in use: {'; '.join(parts)}; {todo}: {why}"


def execute(
    plans: tuple[GpuPlan, ...],
    gpus: Gpus,
    units: Units,
    notifier: Notifier,
    options: Options,
    held: HeldClients | None = None,
) -> Execution:
    """Carry out every GPU's steps; never raises for one GPU's failure. With `held` the stopped
    units stay stopped for the caller to start again (after the device nodes and the CDI
    refresh); without, they are started again before this returns."""
    outcomes = {p.gpu.uuid: GpuOutcome(p.gpu.uuid, p.gpu.label) for p in plans}
    runnable = []
    for p in plans:
        if p.busy and not options.force:
            outcomes[p.gpu.uuid] = replace(
                outcomes[p.gpu.uuid], error=busy_message(p, options.sysroot), nvml_error="InUse"
            )
        elif p.steps:
            runnable.append(p)
    todo = tuple(runnable)
    problems: list[str] = []
    late = _persistence_left_off(gpus, options.state_dir, outcomes, problems)
    if held is None:
        with clients_held(units, options.stop_units, options.state_dir, notifier) as own:
            own.stop_for(todo)
            _run_all(todo, gpus, units, notifier, outcomes, _Run(options.state_dir, late))
            problems += [p for p in (own.start_again(),) if p]
        stopped = tuple(own.stopped)
    else:
        held.stop_for(todo)
        _run_all(todo, gpus, units, notifier, outcomes, _Run(options.state_dir, late))
        stopped = tuple(held.stopped)
    for uuid, problem in late.items():
        outcomes[uuid] = _failed_late(outcomes[uuid], problem)
    return Execution(tuple(outcomes[p.gpu.uuid] for p in plans), stopped, "; ".join(problems))


@dataclass(frozen=True)
class _Run:
    """What the phases of one execution share: where notes go, and problems found after a GPU's
    steps (persistence mode not on again), which fail it once its steps are done."""

    state_dir: Path | None
    late: dict[str, str]


def _persistence_left_off(
    gpus: Gpus, state_dir: Path | None, outcomes: dict[str, GpuOutcome], problems: list[str]
) -> dict[str, str]:
    """Persistence mode on again where a killed run left it off; the problems by GPU in the plan
    (the others go to `problems`)."""
    left = persistence.restore_left_off(gpus, state_dir)
    problems += [f"{uuid}: {problem}" for uuid, problem in left.items() if uuid not in outcomes]
    return {uuid: problem for uuid, problem in left.items() if uuid in outcomes}


def _failed_late(outcome: GpuOutcome, problem: str) -> GpuOutcome:
    """A GPU whose steps went through but whose persistence mode is not on again has failed."""
    error = f"{outcome.error}; {problem}" if outcome.error else problem
    return replace(outcome, error=error, failed_step=outcome.failed_step or PERSISTENCE_STEP)


def merged(first: Execution, then: Execution) -> Execution:
    """Two executions on one host as one: per GPU the steps of both and the later outcome."""
    return _joined(first, then, lambda earlier, later: _with_steps(later, earlier, later))


def fell_back(first: Execution, then: Execution) -> Execution:
    """`first` with what `on-failure = "disable-mig"` did (`then`) noted on the GPUs it touched:
    their failure stands, the steps of both are kept."""

    def noted(earlier: GpuOutcome, later: GpuOutcome) -> GpuOutcome:
        kept = _with_steps(earlier, earlier, later)
        return replace(kept, on_failure=fallback_in_words(later))

    return _joined(first, then, noted)


def _with_steps(outcome: GpuOutcome, earlier: GpuOutcome, later: GpuOutcome) -> GpuOutcome:
    """`outcome` carrying the steps of both runs on its GPU."""
    return replace(
        outcome,
        steps_done=earlier.steps_done + later.steps_done,
        done=(*earlier.done, *later.done),
    )


def _joined(
    first: Execution,
    then: Execution,
    combine: Callable[[GpuOutcome, GpuOutcome], GpuOutcome],
) -> Execution:
    """`first` and `then` as one execution: a GPU both touched gets `combine(first's, then's)`,
    the units stopped by either (once, in order) and the problems of both."""
    later = {o.uuid: o for o in then.outcomes}
    outcomes = tuple(combine(o, later[o.uuid]) if o.uuid in later else o for o in first.outcomes)
    stopped = tuple(dict.fromkeys((*first.stopped_units, *then.stopped_units)))
    problems = "; ".join(p for p in (first.unit_error, then.unit_error) if p)
    return Execution(outcomes, stopped, problems)


def fallback_in_words(outcome: GpuOutcome) -> str:
    """What disabling MIG on a failed GPU came to."""
    if outcome.reset_pending:
        return f"MIG disable pending a GPU reset ({outcome.error})"
    if not outcome.ok:
        return f"disabling MIG failed at '{outcome.failed_step or 'check'}': {outcome.error}"
    return "MIG disabled: a whole GPU" if outcome.steps_done else "MIG was off: a whole GPU"


class HeldClients:
    """The driver-client units one relayout stops, held stopped until `start_again`.

    They are stopped when a plan first needs it (`stop_for`; every executor pass of the run shares
    one stop), noted in `state_dir` before the first stop, and started again once, in reverse
    order, each start awaited; the note is dropped once they all started. A unit that will not
    stop raises UnitError (after starting again what was already stopped).
    """

    def __init__(
        self, units: Units, wanted: tuple[str, ...], state_dir: Path | None, notifier: Notifier
    ) -> None:
        self.units = units
        self.wanted = wanted
        self.state_dir = state_dir
        self.notifier = notifier
        self.stopped: list[str] = []
        self._asked = False
        self._started = False
        self._noted = False  # the stopped units are noted in state_dir

    def stop_for(self, plans: tuple[GpuPlan, ...]) -> None:
        """Stop the active wanted units if a step of `plans` needs it and they are not yet."""
        if self._asked or not self.wanted or not needs_units_stopped(plans):
            return
        self._asked = True
        self.notifier.extend_timeout(UNIT_STOP_TIMEOUT * 2)
        active = self.units.active(self.wanted)
        if active and self.state_dir is not None:
            runs.remember_stopped(self.state_dir, active)
            self._noted = True
        try:
            for unit in active:
                _stop_one(self.units, unit, self.stopped)
        except UnitError:
            self.start_again()
            raise

    def start_again(self) -> str:
        """Start the stopped units again, in reverse order, awaited; the problem, or ""."""
        if self._started or not self._asked:
            return ""
        self._started = True
        problem = ""
        if self.stopped:
            again = restart_order(tuple(self.stopped))
            log.info("starting_gpu_clients", units=",".join(again))
            self.notifier.status(f"starting GPU clients again: {', '.join(again)}")
            self.notifier.extend_timeout(UNIT_START_TIMEOUT + 30)
            try:
                self.units.start(again)
            except UnitError as exc:
                log.error("gpu_clients_not_restarted", error=str(exc))
                problem = f"could not start GPU clients again: {exc}"
        if self._noted and self.state_dir is not None and not problem:
            runs.forget_stopped(self.state_dir)
        return problem


@contextmanager
def clients_held(
    units: Units, wanted: tuple[str, ...], state_dir: Path | None, notifier: Notifier
) -> Iterator[HeldClients]:
    """A HeldClients whose units are started again on the way out, whatever happened (an
    exception, SIGTERM), unless the caller already did; a SIGKILL leaves the note in `state_dir`
    for the next run."""
    held = HeldClients(units, wanted, state_dir, notifier)
    try:
        yield held
    finally:
        held.start_again()


def _stop_one(units: Units, unit: str, stopped: list[str]) -> None:
    """Stop one unit; interrupted (SIGTERM) while it stops, it counts as stopped."""
    log.info("stopping_gpu_client", unit=unit)
    try:
        units.stop((unit,))
    except UnitError:
        raise
    except BaseException:
        stopped.append(unit)
        raise
    stopped.append(unit)


def _run_all(
    plans: tuple[GpuPlan, ...],
    gpus: Gpus,
    units: Units,
    notifier: Notifier,
    outcomes: dict[str, GpuOutcome],
    run: _Run,
) -> None:
    total = len(plans)
    progress = {p.gpu.uuid: _progress(notifier, n, total, p) for n, p in enumerate(plans, 1)}
    # Disabling MIG: the instances go first (a GPU with instances refuses the mode change).
    _instance_phase(plans, gpus, progress, outcomes, before_mode=True)
    ready = tuple(p for p in plans if outcomes[p.gpu.uuid].ok)
    _set_modes(ready, gpus, progress, outcomes)
    _reset_pending(ready, gpus, units, notifier, outcomes, run)
    _name_holding_units(units, outcomes)
    _instance_phase(plans, gpus, progress, outcomes, before_mode=False)


def _split(plan: GpuPlan) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """Instance steps before the mode steps (teardown for a disable) and after them (creates)."""
    is_mode = [isinstance(s, (SetMigMode, ResetGpu)) for s in plan.steps]
    if not any(is_mode):
        return (), plan.steps
    first = is_mode.index(True)
    after = tuple(s for s, mode in zip(plan.steps[first:], is_mode[first:]) if not mode)
    return plan.steps[:first], after


def _instance_phase(
    plans: tuple[GpuPlan, ...],
    gpus: Gpus,
    progress: dict[str, Callable[[str], None]],
    outcomes: dict[str, GpuOutcome],
    *,
    before_mode: bool,
) -> None:
    for p in plans:
        steps = _split(p)[0 if before_mode else 1]
        if steps and outcomes[p.gpu.uuid].ok:
            outcome = outcomes[p.gpu.uuid]
            outcomes[p.gpu.uuid] = _instances(p, steps, gpus, progress[p.gpu.uuid], outcome)


def _progress(notifier: Notifier, n: int, total: int, plan: GpuPlan) -> Callable[[str], None]:
    """The status line of this GPU's next step: `GPU 3/8 NAME: create 3g.40gb at 4 (step 5/12)`."""
    taken = 0

    def report(what: str) -> None:
        nonlocal taken
        taken += 1
        steps = f" (step {taken}/{len(plan.steps)})" if plan.steps else ""
        notifier.status(f"GPU {n}/{total} {plan.gpu.name}: {what}{steps}")

    return report


def _failed(outcome: GpuOutcome, step: Step, exc: MigrestoreError) -> GpuOutcome:
    nvml_error = exc.nvml_error if isinstance(exc, GpuError) else ""
    log.error("step_failed", gpu=outcome.uuid, step=step.describe(), error=str(exc))
    return replace(outcome, failed_step=step.describe(), error=str(exc), nvml_error=nvml_error)


def _set_modes(
    plans: tuple[GpuPlan, ...],
    gpus: Gpus,
    progress: dict[str, Callable[[str], None]],
    outcomes: dict[str, GpuOutcome],
) -> None:
    for p in plans:
        for step in p.steps:
            if not isinstance(step, SetMigMode):
                continue
            progress[p.gpu.uuid](step.describe())
            started = time.monotonic()
            try:
                change = gpus.set_mig_mode(p.gpu.uuid, step.enabled)
            except MigrestoreError as exc:
                outcomes[p.gpu.uuid] = _failed(outcomes[p.gpu.uuid], step, _held(exc))
                continue
            log.info(
                "mig_mode_set",
                gpu=p.gpu.uuid,
                result=mode_change_in_words(step.enabled, change.mode.current),
                activation=change.activation or "Success",
            )
            outcome = outcomes[p.gpu.uuid].did(step)
            spent = outcome.seconds + time.monotonic() - started
            outcomes[p.gpu.uuid] = replace(outcome, seconds=spent)


def mode_change_in_words(enabled: bool, current: bool) -> str:
    """`MIG mode enabled`, or `enable pending a GPU reset` (Ampere), and the same for disable."""
    if current == enabled:
        return f"MIG mode {'enabled' if enabled else 'disabled'}"
    return f"{'enable' if enabled else 'disable'} pending a GPU reset"


def _held(exc: MigrestoreError) -> MigrestoreError:
    """A mode change refused as IN_USE (Hopper and later, while something holds the GPU) says
    what to do about it."""
    if not isinstance(exc, GpuError) or exc.nvml_error != "InUse":
        return exc
    hint = "; a process or driver client holds the GPU: stop it, or list its unit in stop-units"
    return GpuError(f"{exc}{hint}", nvml_error=exc.nvml_error)


def _name_holding_units(units: Units, outcomes: dict[str, GpuOutcome]) -> None:
    """A refused reset or mode change also names the GPU-client units still running (those not
    in stop-units)."""
    refused = [
        uuid
        for uuid, o in outcomes.items()
        if (o.reset_pending and not o.error.startswith(FABRIC_MANAGER_REFUSAL))
        or (o.nvml_error == "InUse" and o.failed_step.startswith("set MIG"))
    ]
    if not refused:
        return
    try:
        running = units.active(KNOWN_GPU_CLIENTS)
    except UnitError:
        return
    if running:
        hint = f"; GPU-client units still running: {', '.join(running)} (add them to stop-units)"
        for uuid in refused:
            outcomes[uuid] = replace(outcomes[uuid], error=outcomes[uuid].error + hint)


def _reset_pending(
    plans: tuple[GpuPlan, ...],
    gpus: Gpus,
    units: Units,
    notifier: Notifier,
    outcomes: dict[str, GpuOutcome],
    run: _Run,
) -> None:
    """Reset, in one go, the GPUs whose wanted mode is still only pending."""
    due = [
        p
        for p in plans
        if outcomes[p.gpu.uuid].ok
        and any(isinstance(s, ResetGpu) for s in p.steps)
        and _still_pending(gpus, p, outcomes)
    ]
    if not due:
        return
    notifier.extend_timeout(RESET_TIMEOUT * (len(due) + 1))
    notifier.status(f"resetting {len(due)} GPU(s) to apply MIG mode")
    log.info("resetting_gpus", gpus=",".join(p.gpu.pci for p in due))
    errors = _fabric_manager_refusals(gpus, units, due, _reset_isolated(gpus, due, run, notifier))
    for p in due:
        error = errors.get(p.gpu.uuid) or _pending_after_reset(gpus, p)
        if error is not None:
            failed = _failed(outcomes[p.gpu.uuid], ResetGpu(), error)
            outcomes[p.gpu.uuid] = replace(failed, reset_pending=True)
        else:
            outcomes[p.gpu.uuid] = outcomes[p.gpu.uuid].did(ResetGpu())


def _fabric_manager_refusals(
    gpus: Gpus, units: Units, due: list[GpuPlan], errors: dict[str, MigrestoreError]
) -> dict[str, MigrestoreError]:
    """Refused resets of Ampere GPUs on an NVSwitch baseboard while Fabric Manager is not active
    get that reason. nvidia-smi(1): on Ampere NVSwitch systems Fabric Manager facilitates the
    reset of one GPU; without it all NVLink peers must be reset in one command, and migrestore
    never resets GPUs that are not due (busy ones would lose their work). What nvidia-smi prints
    or NVML returns for this refusal is not documented, so the cause is read from the host (the
    unit's state, the GPU's NVLinks), never from the refusal's words; when either cannot be
    read, the refusal stays as it was."""
    refused = [p for p in due if p.gpu.uuid in errors and p.gpu.architecture is Architecture.AMPERE]
    if not refused:
        return errors
    try:
        if units.active((FABRIC_MANAGER,)):
            return errors
    except UnitError:
        return errors
    behind = [p for p in refused if gpus.nvswitch_attached(p.gpu.uuid)]
    if not behind:
        return errors
    log.warning("reset_needs_fabric_manager", gpus=",".join(p.gpu.pci for p in behind))
    hint = f"; start {FABRIC_MANAGER} and apply again, or reboot (the mode is kept)"
    found = dict(errors)
    for p in behind:
        was = errors[p.gpu.uuid]
        nvml_error = was.nvml_error if isinstance(was, GpuError) else ""
        found[p.gpu.uuid] = GpuError(f"{FABRIC_MANAGER_REFUSAL}{hint}", nvml_error=nvml_error)
    return found


def _still_pending(gpus: Gpus, plan: GpuPlan, outcomes: dict[str, GpuOutcome]) -> bool:
    """Whether the GPU's mode waits for a reset; a GPU that cannot say so has failed."""
    try:
        return gpus.mig_mode(plan.gpu.uuid).is_pending
    except MigrestoreError as exc:
        outcomes[plan.gpu.uuid] = _failed(outcomes[plan.gpu.uuid], ResetGpu(), exc)
        return False


def _pending_after_reset(gpus: Gpus, plan: GpuPlan) -> MigrestoreError | None:
    """Why the reset did not take this GPU to its mode (not back, or still pending), if so."""
    try:
        pending = gpus.mig_mode(plan.gpu.uuid).is_pending
    except MigrestoreError as exc:
        return exc
    if pending:
        return MigrestoreError("MIG mode still pending after the reset; reboot the host")
    return None


def _reset_isolated(
    gpus: Gpus, due: list[GpuPlan], run: _Run, notifier: Notifier
) -> dict[str, MigrestoreError]:
    """Reset all in one command; if refused, again with persistence mode off on the GPUs that
    have it on (turned on again afterwards); if still refused, each GPU alone: one busy GPU blocks
    only itself."""
    error = _try_reset(gpus, due)
    if error is None:
        return {}
    log.info("reset_refused", gpus=",".join(p.gpu.pci for p in due), error=str(error))
    uuids = [p.gpu.uuid for p in due]
    with persistence.lifted(gpus, uuids, run.state_dir, run.late) as lift:
        if lift.off:
            notifier.status(f"resetting {len(due)} GPU(s) with persistence mode off")
            error = _try_reset(gpus, due)
            if error is None:
                return {}
        alone: dict[str, MigrestoreError | None] = {due[0].gpu.uuid: error}
        if len(due) > 1:
            alone = {p.gpu.uuid: _try_reset(gpus, [p]) for p in due}
    return {uuid: _with_persistence(e, uuid, lift) for uuid, e in alone.items() if e is not None}


def _with_persistence(error: MigrestoreError, uuid: str, lift: persistence.Lift) -> MigrestoreError:
    """A refused reset says whether persistence mode was off for it, or why it could not be."""
    if uuid in lift.off:
        extra = " (persistence mode was off for the reset)"
    elif uuid in lift.refused:
        extra = f"; {lift.refused[uuid]}"
    else:
        return error
    if isinstance(error, GpuError):
        return GpuError(f"{error}{extra}", nvml_error=error.nvml_error)
    return MigrestoreError(f"{error}{extra}")


def _try_reset(gpus: Gpus, group: list[GpuPlan]) -> MigrestoreError | None:
    try:
        gpus.reset(tuple(p.gpu.pci for p in group))
    except MigrestoreError as exc:
        return exc
    return None


def _instances(
    plan: GpuPlan,
    steps: tuple[Step, ...],
    gpus: Gpus,
    progress: Callable[[str], None],
    outcome: GpuOutcome,
) -> GpuOutcome:
    """Destroy and create this GPU's instances, stopping at the first failure."""
    gi_ids: dict[Placement, int] = {gi.placement: gi.id for gi in plan.gpu.instances}
    started = time.monotonic()
    for step in steps:
        progress(step.describe())
        try:
            _one(step, plan.gpu.uuid, gpus, gi_ids)
        except MigrestoreError as exc:
            exc = _still_busy(step, exc)
            spent = outcome.seconds + time.monotonic() - started
            return replace(_failed(outcome, step, exc), seconds=spent)
        outcome = outcome.did(step)
        log.info("step_done", gpu=plan.gpu.uuid, step=step.describe())
    return replace(outcome, seconds=outcome.seconds + time.monotonic() - started)


def _still_busy(step: Step, exc: MigrestoreError) -> MigrestoreError:
    """A destroy refused as InUse (with --force, processes still run on the instance) says what
    is needed."""
    if not isinstance(step, DestroyComputeInstance) or not isinstance(exc, GpuError):
        return exc
    if exc.nvml_error != "InUse":
        return exc
    hint = "; processes still run on it: they must end first (--force cannot destroy it)"
    return GpuError(f"{exc}{hint}", nvml_error=exc.nvml_error)


def _one(step: Step, uuid: str, gpus: Gpus, gi_ids: dict[Placement, int]) -> None:
    if isinstance(step, DestroyComputeInstance):
        gpus.destroy_compute_instance(uuid, step.gi_id, step.ci_id)
    elif isinstance(step, DestroyGpuInstance):
        gpus.destroy_gpu_instance(uuid, step.gi_id)
        gi_ids.pop(step.placement, None)
    elif isinstance(step, CreateGpuInstance):
        gi_ids[step.placement] = gpus.create_gpu_instance(uuid, step.profile.id, step.placement)
    elif isinstance(step, CreateComputeInstance):
        gi_id = gi_ids[step.gi_placement]
        gpus.create_compute_instance(uuid, gi_id, step.profile.id, step.placement)
    else:
        raise AssertionError("mode steps are not instance steps")
