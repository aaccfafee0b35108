"""`check`: resolve a layout file against modelled GPUs from the catalogue, with no driver."""

from __future__ import annotations

from dataclasses import dataclass

from migrestore import layout, profiles
from migrestore.errors import ConfigError
from migrestore.model import (
    Architecture,
    DesiredNode,
    GpuSpec,
    GpuState,
    MigMode,
    ProfileTable,
    SelectorKind,
    TargetLayout,
)
from migrestore.profiles import ModelInfo
from migrestore.selection import uncounted_index_entries

UNCOUNTED = (
    "selects by index, but the file does not say how many GPUs the host has: add "
    "gpus = N to [restore] (or to the entry), or an absent GPU shifts the indices onto others"
)


def modelled_gpu(model: ModelInfo, index: int = 0, table: ProfileTable | None = None) -> GpuState:
    """A GPU of this model with MIG off and nothing on it (with `table`: that profile table)."""
    return GpuState(
        index=index,
        uuid=f"GPU-modelled-{index}",
        pci="modelled",
        name=model.name,
        minor=index,
        architecture=model.architecture,
        memory_mb=model.memory_mb,
        mig=MigMode(False, False),
        profiles=model.table if table is None else table,
    )


def _device_id(spec: GpuSpec) -> int | None:
    """The packed PCI device id a `device-id` entry selects (its subsystem id aside)."""
    if spec.selector.kind is not SelectorKind.DEVICE_ID:
        return None
    return int(str(spec.selector.value).partition(":")[0], 16)


def unknown_device(spec: GpuSpec) -> int | None:
    """The device id of a `device-id` entry for a GPU the catalogue does not know: on a host its
    profile table comes from the driver, offline there is none to check it against."""
    device = _device_id(spec)
    if device is None or profiles.find_model_by_pci_id(device) is not None:
        return None
    return device


def table_gpu(name: str, device: int, table: ProfileTable) -> GpuState:
    """A GPU the catalogue does not know, with a captured profile table (`--profile-table`)."""
    return GpuState(
        index=0,
        uuid="GPU-modelled-0",
        pci="modelled",
        name=name,
        minor=0,
        architecture=Architecture.OTHER,
        memory_mb=max((p.memory_mb for p in table.gi), default=0),
        mig=MigMode(False, False),
        profiles=table,
        pci_device_id=device,
    )


def _stands_in(spec: GpuSpec) -> bool:
    """An entry that `--model` stands in for: it names no model (uuid, pci, index, "all")."""
    return spec.selector.kind not in (SelectorKind.MODEL, SelectorKind.DEVICE_ID)


def _unknown_model_entry(spec: GpuSpec) -> bool:
    """A model entry naming a GPU the catalogue does not know (as `export --by-model` writes
    for one): without the driver's table that is an error, a typo as likely as a new GPU."""
    kind, value = spec.selector.kind, str(spec.selector.value)
    return kind is SelectorKind.MODEL and profiles.find_model(value) is None


def _model_for(spec: GpuSpec, wanted: str | None, source: str) -> ModelInfo:
    # --model stands in for the GPUs that uuid, pci, index and "all" entries select; a model
    # entry is checked against its own model, a device-id entry against the catalogue's model
    # of that id.
    device = _device_id(spec)
    known = profiles.find_model_by_pci_id(device) if device is not None else None
    if known is not None:
        return known
    name = str(spec.selector.value) if spec.selector.kind is SelectorKind.MODEL else wanted
    source = spec.source or source  # an entry from a drop-in names its file
    if name is None:
        how = spec.selector.kind.value
        raise ConfigError(
            f"{source}: {spec.where}: selects by {how}; give --model NAME"
            " (or --profile-table FILE) to check it"
        )
    model = profiles.find_model(name)
    if model is None:
        raise _unknown_model(name, source, f"{spec.where}.select.model")
    return model


def _unknown_model(name: str, source: str, where: str) -> ConfigError:
    known = ", ".join(m.name for m in profiles.catalogue())
    return ConfigError(f'{source}: {where}: unknown model "{name}"; known: {known}')


def _check_stand_in(desired: DesiredNode, name: str | None) -> None:
    """`--model NAME` must be a known model, named with the first entry it stands in for."""
    if name is None or profiles.find_model(name) is not None:
        return
    users = [s for s in desired.gpus if s.selector.kind is not SelectorKind.MODEL]
    where = f"{users[0].where}.select (--model)" if users else "--model"
    raise _unknown_model(name, (users[0].source if users else "") or desired.source, where)


def describe(target: TargetLayout) -> str:
    """`3g.40gb@0 [2 CI] + 4g.40gb@4`."""
    if not target.mig:
        return "MIG off"
    parts = [
        f"{t.profile.short_name}@{t.placement.start} [{len(t.compute)} CI]"
        for t in target.instances
    ]
    return " + ".join(parts) or "MIG on, no instances"


def check(
    desired: DesiredNode, model_name: str | None, table: ProfileTable | None = None
) -> list[str]:
    """One line per entry: the exact layout it gives on its model; ConfigError on a problem.
    With `table` (a driver's captured table) every entry is checked against it instead of the
    catalogue's, and profile renames are reported as `apply` would warn about them; without
    `model_name`, the table alone stands for the GPUs of uuid, pci, index and "all" entries,
    and it always stands for device ids and model names the catalogue does not know. Without a
    table, a device-id entry for a GPU the catalogue does not know is a `not checkable offline`
    line, not an error (on a host its table comes from the driver); a model name it does not
    know stays an error (a typo as likely as a new GPU)."""
    lines = []
    for entry in resolve(desired, model_name, table):
        spec, target = entry.spec, entry.target
        if target is None:
            why = entry.gpu_name if not spec.managed else f"not checkable offline: {entry.gpu_name}"
            lines.append(f"{spec.label} ({spec.selector}): {why}")
            continue
        lines.append(f"{spec.label} ({spec.selector}) on {entry.gpu_name}: {describe(target)}")
        lines += [f"warning: {renamed}" for renamed in target.renamed]
        if spec in uncounted_index_entries(desired):
            lines.append(f"warning: {spec.label}: {UNCOUNTED}")
    if not lines:
        lines.append(f"{desired.source}: valid, no [[gpu]] entries (restores nothing)")
    return lines


@dataclass(frozen=True)
class Resolved:
    """One entry, the GPU it is checked against and the exact layout it gives there; no layout
    (and the reason as `gpu_name`) when it cannot be checked offline or is another owner's."""

    spec: GpuSpec
    gpu_name: str
    target: TargetLayout | None


def resolve(
    desired: DesiredNode, model_name: str | None, table: ProfileTable | None = None
) -> list[Resolved]:
    """Each entry with the GPU it is checked against and the exact layout it gives there."""
    _check_stand_in(desired, model_name)
    strict = desired.restore.strict_profile_names
    resolved = []
    for spec in desired.gpus:
        device = unknown_device(spec)
        if not spec.managed:  # another owner's GPUs: nothing of ours to check
            resolved.append(Resolved(spec, "managed = false, left to another owner", None))
            continue
        if device is not None and table is None:
            resolved.append(Resolved(spec, f"unknown device id 0x{device:08X}", None))
            continue
        if device is not None and table is not None:
            gpu = table_gpu(f"device id 0x{device:08X}", device, table)
        elif table is not None and model_name is None and _stands_in(spec):
            gpu = table_gpu("the --profile-table GPU", 0, table)
        elif table is not None and _unknown_model_entry(spec):
            gpu = table_gpu(str(spec.selector.value), 0, table)
        else:
            gpu = modelled_gpu(_model_for(spec, model_name, desired.source), table=table)
        target = layout.resolve(spec, gpu, desired.source, strict=strict)
        resolved.append(Resolved(spec, gpu.name, target))
    return resolved
