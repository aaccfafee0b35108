"""Rendering of state, plans and results as text (for people) and JSON (for machines)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from migrestore import profiles
from migrestore.model import GpuInstance, GpuState, NodeState, Placement
from migrestore.plan import (
    UNREAD_TABLE,
    CreateComputeInstance,
    CreateGpuInstance,
    DestroyComputeInstance,
    DestroyGpuInstance,
    NodePlan,
    SetMigMode,
    Step,
)

if TYPE_CHECKING:
    from migrestore.execute import Execution, GpuOutcome
    from migrestore.runs import RunRecord


def simulated_banner(state_path: str) -> str:
    """The first line of every text output of a simulated run."""
    return f"SIMULATED HOST ({state_path}): no real GPU is read or changed"


def dumps(document: dict[str, Any]) -> str:
    """JSON as every verb prints it."""
    return json.dumps(document, indent=2)


# ---- state ----


def _instance_json(gpu: GpuState, gi: GpuInstance) -> dict[str, Any]:
    return {
        "id": gi.id,
        "profile": profiles.gi_label(gpu.profiles, gi.profile_id),
        "placement": {"start": gi.placement.start, "size": gi.placement.size},
        "compute": [
            {
                "id": ci.id,
                "profile": profiles.ci_label(gpu.profiles, gi.profile_id, ci.profile_id),
                "placement": {"start": ci.placement.start, "size": ci.placement.size},
                "uuid": ci.uuid,
                "processes": [{"pid": p.pid, "name": p.name} for p in ci.processes],
            }
            for ci in gi.compute
        ],
    }


def gpu_json(gpu: GpuState) -> dict[str, Any]:
    """One GPU as in `status --json`."""
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "pci": gpu.pci,
        "name": gpu.name,
        "architecture": gpu.architecture.value,
        "mig": {"current": gpu.mig.current, "pending": gpu.mig.pending},
        "instances": [_instance_json(gpu, gi) for gi in gpu.instances],
    }


def record_json(record: RunRecord | None) -> dict[str, Any] | None:
    """The last run, as `status --json` shows it."""
    if record is None:
        return None
    return {
        "time": record.time,
        "result": record.result,
        "config": record.config,
        "config_sha256": record.config_sha256,
        "boot": record.boot,
        "verb": record.verb,
        "flags": list(record.flags),
        "who": asdict(record.who),
        "notes": list(record.notes),
        "gpus": [{"uuid": g.uuid, "result": g.result, "error": g.error} for g in record.gpus],
    }


def state_json(state: NodeState, last_run: RunRecord | None) -> dict[str, Any]:
    """`status --json`."""
    return {
        "simulated": state.simulated,
        "driver": state.driver_version,
        "gpus": [gpu_json(g) for g in state.gpus],
        "unreadable": [
            {
                "index": u.index,
                "uuid": u.uuid,
                "name": u.name,
                "pci": u.pci,
                "error": u.error,
                "nvml_error": u.nvml_error,
            }
            for u in state.unreadable
        ],
        "last_run": record_json(last_run),
    }


def _mode(gpu: GpuState) -> str:
    current = "on" if gpu.mig.current else "off"
    if gpu.mig.is_pending:
        return f"{current} (pending {'on' if gpu.mig.pending else 'off'} after reset)"
    return current


def gpu_text(gpu: GpuState, note: str = "") -> list[str]:
    """A GPU and its instances, indented."""
    head = f"GPU {gpu.index}  {gpu.name}  {gpu.pci}  {gpu.uuid}  MIG {_mode(gpu)}"
    lines = [head + (f"  [{note}]" if note else "")]
    for gi in gpu.instances:
        where = f"{gi.placement.start}:{gi.placement.size}"
        lines.append(
            f"  GI {gi.id:<2} {profiles.gi_label(gpu.profiles, gi.profile_id):<14} at {where}"
        )
        for ci in gi.compute:
            name = profiles.ci_label(gpu.profiles, gi.profile_id, ci.profile_id)
            procs = (
                f"  processes: {', '.join(str(p) for p in ci.processes)}" if ci.processes else ""
            )
            cwhere = f"{ci.placement.start}:{ci.placement.size}"
            lines.append(f"    CI {ci.id} {name:<14} at {cwhere:<5} {ci.uuid}{procs}")
    if gpu.mig.current and not gpu.instances:
        lines.append("  (no GPU instances)")
    return lines


def state_text(
    state: NodeState,
    last_run: RunRecord | None,
    unmanaged: tuple[str, ...] = (),
    handed_off: tuple[str, ...] = (),
) -> str:
    """`status`; `handed_off`: the unmanaged GPUs whose entry says `managed = false`."""
    lines = [f"driver {state.driver_version}, {len(state.gpus)} GPU(s)"]
    for gpu in state.gpus:
        tag = "unmanaged" if gpu.uuid in unmanaged else ""
        tag = "unmanaged (managed = false)" if gpu.uuid in handed_off else tag
        lines.extend(gpu_text(gpu, tag))
    lines.extend(f"{u.label}: cannot be read: {u.error}" for u in state.unreadable)
    lines.append(_last_run_text(last_run))
    return "\n".join(lines)


def _last_run_text(record: RunRecord | None) -> str:
    if record is None:
        return "last run: none recorded"
    failed = [g for g in record.gpus if g.result != "ok"]
    detail = f", {len(failed)} GPU(s) failed" if failed else ""
    notes = "".join(f"\n  {n}" for n in record.notes)
    boot = " at boot" if record.boot else ""
    from migrestore.audit import describe  # only status shows a record: verify never loads it

    who = describe(record.who)
    by = f", by {who}" if who else ""
    flags = f" with {' '.join(record.flags)}" if record.flags else ""
    text = f"last run{boot}: {record.time} {record.result}{detail} ({record.config}{by}{flags})"
    return text + notes


# ---- plans ----


def _placement_json(placement: Placement) -> dict[str, int]:
    return {"start": placement.start, "size": placement.size}


def step_json(step: Step) -> dict[str, Any]:
    """One step for machines: what, on which instance, which profile, where."""
    action = re.sub(r"(?<!^)(?=[A-Z])", "-", type(step).__name__).lower()
    fields: dict[str, Any] = {"action": action, "description": step.describe()}
    if isinstance(step, SetMigMode):
        fields["enabled"] = step.enabled
    elif isinstance(step, DestroyComputeInstance):
        fields.update(gpu_instance=step.gi_id, compute_instance=step.ci_id, profile=step.name)
        fields["placement"] = _placement_json(step.placement)
    elif isinstance(step, DestroyGpuInstance):
        fields.update(gpu_instance=step.gi_id, profile=step.name)
        fields["placement"] = _placement_json(step.placement)
    elif isinstance(step, CreateGpuInstance):
        fields.update(profile=step.profile.short_name, profile_id=step.profile.id)
        fields["placement"] = _placement_json(step.placement)
    elif isinstance(step, CreateComputeInstance):
        fields.update(profile=step.profile.short_name, profile_id=step.profile.id)
        fields.update(gpu_instance_placement=_placement_json(step.gi_placement))
        fields["placement"] = _placement_json(step.placement)
    return fields


def plan_json(plan: NodePlan) -> dict[str, Any]:
    """`plan --json` and the differences of `verify --json`."""
    return {
        "in_sync": plan.is_empty,
        "reset_pending": plan.reset_pending,
        "gpus": [
            {
                "index": p.gpu.index,
                "uuid": p.gpu.uuid,
                "name": p.gpu.name,
                "steps": [s.describe() for s in p.steps],
                "actions": [step_json(s) for s in p.steps],
                "busy": [
                    {"gi": s.gi_id, "ci": s.ci_id, "processes": [str(x) for x in s.processes]}
                    for s in p.busy
                ],
            }
            for p in plan.gpus
        ],
        "unmanaged": [g.uuid for g in plan.unmanaged],
        "missing": [str(s.selector) for s in plan.missing],
        "absent": [{"entry": s.where, "select": str(s.selector)} for s in plan.absent],
        "replaced": [
            {
                "entry": r.spec.where,
                "select": str(r.spec.selector),
                "pci": r.gpu.pci,
                "uuid": r.gpu.uuid,
                "serial": r.gpu.serial,
                "previous_serial": r.previous_serial,
                "adopted": r.adopted,
            }
            for r in plan.replaced
        ],
        "mismatched": [{"uuid": m.gpu.uuid, "problem": m.problem} for m in plan.mismatched],
        "unplanned": [{"uuid": g.uuid, "problem": UNREAD_TABLE} for g in plan.unplanned],
        "unreadable": [
            {"index": u.index, "uuid": u.uuid, "error": u.error, "nvml_error": u.nvml_error}
            for u in plan.unreadable
        ],
    }


def plan_text(plan: NodePlan) -> str:
    """`plan`: the steps apply would take, per GPU, in order."""
    lines: list[str] = []
    for p in plan.gpus:
        if p.is_empty:
            lines.append(f"{p.gpu.label}: in layout, nothing to do")
            continue
        lines.append(f"{p.gpu.label}: {len(p.steps)} step(s)")
        lines.extend(f"  {n}. {s.describe()}" for n, s in enumerate(p.steps, 1))
        if p.busy:
            lines.append("  ! instances in use; apply refuses: their processes must end first")
    lines.extend(_problems(plan))
    lines.extend(f"{g.label}: unmanaged ({_why_unmanaged(plan, g)})" for g in plan.unmanaged)
    lines.extend(absent_lines(plan))
    return "\n".join(lines)


def _why_unmanaged(plan: NodePlan, gpu: GpuState) -> str:
    handed_off = {g.uuid for g in plan.handed_off}
    return "managed = false" if gpu.uuid in handed_off else "no [[gpu]] entry selects it"


def absent_lines(plan: NodePlan) -> list[str]:
    """One line per fleet entry for GPUs this host does not have, and per GPU adopted in the slot
    of the GPU it replaced."""
    lines = [
        f"{s.label} (select {s.selector}): no such GPU on this host; entry skipped"
        for s in plan.absent
    ]
    return lines + [f"{r.describe()}; adopted" for r in plan.replaced if r.adopted]


def _problems(plan: NodePlan) -> list[str]:
    lines = [f"missing: no GPU matches {s.label} (select {s.selector})" for s in plan.missing]
    lines.extend(
        f"{r.describe()}; not adopted (set [restore] adopt-replaced = true, or select by pci)"
        for r in plan.replaced
        if not r.adopted
    )
    lines.extend(f"{m.gpu.label}: {m.problem}" for m in plan.mismatched)
    lines.extend(f"{g.label}: instances not planned yet: {UNREAD_TABLE}" for g in plan.unplanned)
    lines.extend(f"{u.label}: FAILED: cannot be read: {u.error}" for u in plan.unreadable)
    return lines


def drift_text(plan: NodePlan) -> str:
    """`verify`: each difference named, or that the host is in sync."""
    if plan.is_empty:
        return "\n".join(
            [f"in sync: {len(plan.gpus)} GPU(s) match the layout", *absent_lines(plan)]
        )
    lines = []
    for p in plan.gpus:
        if p.reset_pending:
            lines.append(f"{p.gpu.label}: MIG mode change pending: reset the GPU or reboot")
        lines.extend(f"{p.gpu.label}: drift: needs to {s.describe()}" for s in p.steps)
    lines.extend(_problems(plan))
    return "\n".join(lines)


# ---- apply ----


def apply_json(execution: Execution, final: NodePlan, changed: tuple[str, ...]) -> dict[str, Any]:
    """`apply --json`."""
    return {
        "in_sync": final.is_empty,
        "stopped_units": list(execution.stopped_units),
        "unit_error": execution.unit_error,
        "gpus": [
            {
                "uuid": o.uuid,
                "ok": o.ok,
                "failed_step": o.failed_step,
                "error": o.error,
                "nvml_error": o.nvml_error,
                "reset_pending": o.reset_pending,
                "on_failure": o.on_failure,
            }
            for o in execution.outcomes
        ],
        "remaining": plan_json(final),
        "mig_devices_changed": list(changed),
    }


def apply_text(execution: Execution, final: NodePlan, after: NodeState) -> str:
    """`apply`: per GPU ok or what failed, and the state each failed GPU was left in."""
    lines = [_outcome_lines(o, after) for o in execution.outcomes]
    return "\n".join([line for group in lines for line in group] + _after_lines(execution, final))


def apply_table(execution: Execution, final: NodePlan, after: NodeState) -> str:
    """`apply` on a terminal: one row per GPU (result, changes, time), then what went wrong."""
    rows = [("GPU", "RESULT", "CHANGES", "TIME")]
    rows += [
        (o.label, "ok" if o.ok else "FAILED", str(o.steps_done), f"{o.seconds:.1f} s")
        for o in execution.outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = [
        f"{label:<{widths[0]}}  {result:<{widths[1]}}  {changes:>{widths[2]}}  {time}"
        for label, result, changes, time in rows
    ]
    failures = apply_failures_text(execution, final, after)
    return "\n".join(table + ([failures] if failures else []))


def apply_failures_text(execution: Execution, final: NodePlan, after: NodeState) -> str:
    """Only what went wrong (`apply -q`): each failed GPU and its state, the units, problems."""
    lines = [line for o in execution.outcomes if not o.ok for line in _outcome_lines(o, after)]
    after_lines = _after_lines(execution, final)
    if execution.stopped_units and not execution.unit_error:
        after_lines = after_lines[1:]  # "stopped and restarted" is not a problem
    return "\n".join(lines + after_lines)


def _done(outcome: GpuOutcome) -> str:
    return f"{outcome.steps_done} change(s)" if outcome.steps_done else "already in layout"


def _outcome_lines(o: GpuOutcome, after: NodeState) -> list[str]:
    if o.ok:
        return [f"{o.label}: ok ({_done(o)})"]
    lines = [f"{o.label}: FAILED at '{o.failed_step or 'check'}': {o.error}"]
    lines += [f"  on-failure: {o.on_failure}"] if o.on_failure else []
    gpu = after.by_uuid(o.uuid)
    if gpu is not None:
        lines.append(f"  left as: MIG {_mode(gpu)}, {len(gpu.instances)} GPU instance(s)")
        lines.extend("  " + line for line in gpu_text(gpu)[1:])
    return lines


def _after_lines(execution: Execution, final: NodePlan) -> list[str]:
    lines: list[str] = []
    if execution.stopped_units and execution.unit_error:
        stopped = ", ".join(execution.stopped_units)
        lines.append(f"stopped: {stopped}; FAILED: {execution.unit_error}")
    elif execution.stopped_units:
        lines.append(f"stopped and restarted: {', '.join(execution.stopped_units)}")
    elif execution.unit_error:
        lines.append(f"FAILED: {execution.unit_error}")
    lines.extend(_problems(final))
    return lines
