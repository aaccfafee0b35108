"""The one writer of layout files: `export` (a host's state) and `import-mig-parted` (a converted
mig-parted config) both describe their entries as `Entry` values and `render` writes the text;
`check --show` writes a layout as read (`layout_text`: the file merged with its drop-ins).

Whatever it writes, `config.parse` reads back to the same layout (tests/test_export.py and
tests/test_migparted.py hold it to that).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import tomli_w

from migrestore import profiles
from migrestore.config import RESTORE_FIELDS, RESTORE_KEYS_SINCE_VERSION_2, needed_version
from migrestore.errors import ConfigError
from migrestore.model import (
    ComputeSpec,
    DesiredNode,
    GpuInstance,
    GpuSpec,
    GpuState,
    InstanceSpec,
    NodeState,
    ProfileShape,
    Selector,
    SelectorKind,
    TargetInstance,
)
from migrestore.selection import model_matches

SELECT_BY = ("uuid", "pci", "index", "model")


@dataclass(frozen=True)
class Compute:
    """One compute instance as written: a profile name (or id) at a placement."""

    profile: str | int
    placement: int


@dataclass(frozen=True)
class Instance:
    """One `[[gpu.instance]]`; `compute` None means only the default compute instance (left out);
    `geometry` the profile's geometry, written beside its name so a renamed profile resolves;
    `placement` None leaves it to the planner (then `count` such instances)."""

    profile: str | int
    placement: int | None
    compute: tuple[Compute, ...] | None
    geometry: ProfileShape | None = None
    count: int = 1


@dataclass(frozen=True)
class Entry:
    """One `[[gpu]]` with the comment lines above it and notes below its selector."""

    select: Selector
    mig: bool
    instances: tuple[Instance, ...] = ()
    comments: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    optional: bool = False


def render(header: Sequence[str], entries: Sequence[Entry], gpu_count: int | None = None) -> str:
    """The layout file: header comments, the version, `[restore] gpus` if `gpu_count` is given
    (index entries need it), then each entry."""
    lines = [f"# {line}" if line else "#" for line in header]
    # The oldest version that says it: an older migrestore reads what needs nothing newer.
    newer = gpu_count is not None or any(
        e.select.kind is SelectorKind.DEVICE_ID
        or e.optional
        or any(i.geometry for i in e.instances)
        for e in entries
    )
    lines.append(f"version = {2 if newer else 1}")
    if gpu_count is not None:
        lines += ["", "# Index entries apply only while NVML counts this many GPUs.", "[restore]"]
        lines.append(f"gpus = {gpu_count}")
    for entry in entries:
        lines += ["", *(f"# {c}" for c in entry.comments), "[[gpu]]"]
        lines.append(f"select = {_selector(entry.select)}")
        if entry.optional:
            lines.append("optional = true")
        lines += [f"# {note}" for note in entry.notes]
        lines.append(f"mig = {toml_value(entry.mig)}")
        for instance in entry.instances:
            lines += ["", "  [[gpu.instance]]", *_instance_lines(instance)]
    return "\n".join(lines) + "\n"


def _selector(selector: Selector) -> str:
    if selector.kind is SelectorKind.ALL:
        return '"all"'
    return _inline_table({selector.kind.value: selector.value})


def _instance_lines(instance: Instance) -> list[str]:
    lines = [f"  profile = {toml_value(instance.profile)}"]
    if instance.placement is not None:
        lines.append(f"  placement = {instance.placement}")
    if instance.count > 1:
        lines.append(f"  count = {instance.count}")
    if instance.geometry is not None:
        shape = instance.geometry
        items = {"slices": shape.slices, "size": shape.size, "memory-mib": shape.memory_mib}
        lines.append(f"  geometry = {_inline_table(items)}")
    if instance.compute is None:
        return lines
    if not instance.compute:
        return [*lines, "  compute = []"]
    entries = [
        f"    {_inline_table({'profile': c.profile, 'placement': c.placement})},"
        for c in instance.compute
    ]
    return [*lines, "  compute = [", *entries, "  ]"]


def _inline_table(items: Mapping[str, str | int]) -> str:
    return "{ " + ", ".join(f"{key} = {toml_value(value)}" for key, value in items.items()) + " }"


def toml_value(value: str | int | bool) -> str:
    """A TOML scalar, escaped by tomli_w."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


# ---- a layout as read (check --show) ----


def layout_text(
    node: DesiredNode,
    header: Sequence[str],
    restore_notes: Mapping[str, str],
    entry_notes: Sequence[Sequence[str]],
) -> str:
    """`node` as a layout file that reads back to the same layout: the `[restore]` keys in
    `restore_notes` (each with its comment line), then each entry with its comment lines."""
    lines = [f"# {line}" if line else "#" for line in header]
    newer_restore = any(key in RESTORE_KEYS_SINCE_VERSION_2 for key in restore_notes)
    lines.append(f"version = {max(needed_version(node.gpus), 2 if newer_restore else 1)}")
    if restore_notes:
        lines += ["", "[restore]"]
    for key, note in restore_notes.items():
        value = getattr(node.restore, RESTORE_FIELDS[key])
        written = tomli_w.dumps({key: list(value) if isinstance(value, tuple) else value})
        lines += [f"# {note}", written.rstrip("\n")]
    for spec, notes in zip(node.gpus, entry_notes):
        lines += ["", *(f"# {note}" for note in notes), "[[gpu]]", *_spec_lines(spec)]
    return "\n".join(lines) + "\n"


def _spec_lines(spec: GpuSpec) -> list[str]:
    lines = [f"select = {_selector(spec.selector)}"]
    if spec.optional:
        lines.append("optional = true")
    if spec.gpus is not None:
        lines.append(f"gpus = {spec.gpus}")
    if not spec.managed:  # another owner's GPUs: no mig, instances or on-failure of ours
        return [*lines, "managed = false"]
    if spec.on_failure is not None:
        lines.append(f"on-failure = {toml_value(spec.on_failure.value)}")
    lines.append(f"mig = {toml_value(spec.mig)}")
    for instance in spec.instances:
        lines += ["", "  [[gpu.instance]]", *_instance_spec_lines(instance)]
    return lines


def _instance_spec_lines(instance: InstanceSpec) -> list[str]:
    lines = [f"  profile = {toml_value(instance.profile)}"]
    if instance.placement is not None:
        lines.append(f"  placement = {instance.placement}")
    if instance.count != 1:
        lines.append(f"  count = {instance.count}")
    if instance.shape is not None:
        shape = instance.shape
        items = {"slices": shape.slices, "size": shape.size, "memory-mib": shape.memory_mib}
        lines.append(f"  geometry = {_inline_table(items)}")
    if instance.compute is not None:
        computes = [f"    {_compute_spec(c)}," for c in instance.compute]
        lines += ["  compute = [", *computes, "  ]"] if computes else ["  compute = []"]
    return lines


def _compute_spec(compute: ComputeSpec) -> str:
    if compute.placement is None:
        return toml_value(compute.profile)
    return _inline_table({"profile": compute.profile, "placement": compute.placement})


# ---- a converted target (import-mig-parted) ----


def target_instance(instance: TargetInstance) -> Instance:
    """A planned GPU instance as written; its default compute instance alone is left out."""
    only = instance.compute[0] if len(instance.compute) == 1 else None
    if only is not None and only.profile.default and only.placement.start == 0:
        compute = None
    else:
        compute = tuple(Compute(c.profile.short_name, c.placement.start) for c in instance.compute)
    return Instance(instance.profile.short_name, instance.placement.start, compute)


# ---- a host's state (export) ----


def dump(
    state: NodeState,
    *,
    select_by: str = "uuid",
    host: str | None = None,
    when: datetime | None = None,
) -> str:
    """The state of every GPU as a layout file that `apply` reproduces exactly.

    `select_by` is "uuid" (default), "pci", "index" or "model"; `host` and `when` default to this
    host's name and the current time, for the header comment. By index, the file also says how
    many GPUs NVML counts (`[restore] gpus`): index entries need it.
    """
    if select_by not in SELECT_BY:
        raise ConfigError(
            f"export: cannot select GPUs by {select_by!r}; use {', '.join(SELECT_BY)}"
        )
    header = _header(state, host or socket.gethostname(), when or datetime.now(timezone.utc))
    entries = _model_entries(state) if select_by == "model" else _gpu_entries(state.gpus, select_by)
    counted = len(state.gpus) + len(state.unreadable)
    return render(header, entries, counted if select_by == "index" and entries else None)


def _header(state: NodeState, host: str, when: datetime) -> list[str]:
    origin = f"{host} (SIMULATED)" if state.simulated else host
    driver = f" (NVIDIA driver {state.driver_version})" if state.driver_version else ""
    lines = [
        f"MIG layout of host {origin}, exported by `migrestore export`",
        f"at {when.isoformat(timespec='seconds')}{driver}. `migrestore apply` restores it;",
        "`migrestore verify` against this file exits 0 while the GPUs keep this layout.",
    ]
    if state.simulated:
        lines.append("SIMULATED: these GPUs come from the migrestore simulator, not from a driver.")
    if not state.gpus:
        lines.append("No GPUs were found, so no [[gpu]] entry follows.")
    return lines


def _gpu_entries(gpus: Sequence[GpuState], select_by: str) -> list[Entry]:
    return [
        _state_entry(
            gpu,
            Selector(SelectorKind(select_by), _identity(gpu, select_by)),
            (f"GPU {gpu.index}: {gpu.name}, {gpu.pci}, {gpu.uuid}",),
        )
        for gpu in gpus
    ]


def _identity(gpu: GpuState, select_by: str) -> str | int:
    """The GPU's index, PCI bus id (NVML's form) or UUID, as the selector names it."""
    if select_by == "index":
        return gpu.index
    return gpu.pci if select_by == "pci" else gpu.uuid


def _model_entries(state: NodeState) -> list[Entry]:
    """One entry per model whose GPUs all share one layout; per-UUID entries for the others."""
    entries: list[Entry] = []
    for name in dict.fromkeys(gpu.name for gpu in state.gpus):
        group = [gpu for gpu in state.gpus if gpu.name == name]
        selected = [gpu for gpu in state.gpus if model_matches(name, gpu.name)]
        if selected == group and len({_layout_key(gpu) for gpu in group}) == 1:
            indices = ", ".join(str(gpu.index) for gpu in group)
            select = Selector(SelectorKind.MODEL, name)
            entries.append(_state_entry(group[0], select, (f"{name}: GPUs {indices}",)))
            continue
        reason = "layouts differ" if selected == group else "the model name also selects others"
        per_gpu = _gpu_entries(group, "uuid")
        first = per_gpu[0]
        comments = (f"{name}: {reason}, so each GPU is selected by UUID.", *first.comments)
        entries += [_with_comments(first, comments), *per_gpu[1:]]
    return entries


def _with_comments(entry: Entry, comments: tuple[str, ...]) -> Entry:
    return Entry(entry.select, entry.mig, entry.instances, comments, entry.notes, entry.optional)


def _layout_key(gpu: GpuState) -> tuple[object, ...]:
    """Equal for two GPUs exactly when `dump` writes the same layout for both."""
    instances = (
        (
            gi.profile_id,
            gi.placement,
            tuple(sorted((c.profile_id, c.placement) for c in gi.compute)),
        )
        for gi in gpu.instances
    )
    return (gpu.mig, tuple(sorted(instances)))


def _state_entry(gpu: GpuState, select: Selector, comments: tuple[str, ...]) -> Entry:
    notes: tuple[str, ...] = ()
    if gpu.mig.is_pending:
        notes = (f"MIG mode {'on' if gpu.mig.pending else 'off'} is pending a GPU reset.",)
    # The pending mode is what the operator asked for last: exporting it keeps that request.
    instances: tuple[Instance, ...] = ()
    if gpu.mig.pending:
        ordered = sorted(gpu.instances, key=lambda gi: gi.placement)
        instances = tuple(_state_instance(gpu, gi) for gi in ordered)
    return Entry(select, gpu.mig.pending, instances, comments, notes)


def _state_instance(gpu: GpuState, gi: GpuInstance) -> Instance:
    table = gpu.profiles
    profile = profiles.written_gi_name(table, gi.profile_id)
    found = table.gi_by_id(gi.profile_id)
    shape = profiles.shape_of(found) if found is not None else None
    default = table.default_ci(gi.profile_id)
    computes = sorted(gi.compute, key=lambda ci: ci.placement)
    if len(computes) == 1 and default is not None:
        only = computes[0]
        if only.profile_id == default.id and only.placement.start == 0:
            return Instance(profile, gi.placement.start, None, shape)
    written = tuple(
        Compute(profiles.written_ci_name(table, gi.profile_id, ci.profile_id), ci.placement.start)
        for ci in computes
    )
    return Instance(profile, gi.placement.start, written, shape)
