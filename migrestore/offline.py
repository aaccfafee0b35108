"""`check`: resolve a layout file against modelled GPUs from the catalogue, with no driver."""

from __future__ import annotations

from migrestore import layout, profiles
from migrestore.errors import ConfigError
from migrestore.model import (
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


def _model_for(spec: GpuSpec, wanted: str | None, source: str) -> ModelInfo:
    # --model stands in for the GPUs that uuid, pci, index and "all" entries select; a model
    # entry is checked against its own model.
    name = str(spec.selector.value) if spec.selector.kind is SelectorKind.MODEL else wanted
    source = spec.source or source  # an entry from a drop-in names its file
    if name is None:
        how = spec.selector.kind.value
        raise ConfigError(
            f"{source}: {spec.where}: selects by {how}; give --model NAME to check it"
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
    catalogue's, and profile renames are reported as `apply` would warn about them."""
    lines = []
    for spec, model, target in resolve(desired, model_name, table):
        lines.append(f"{spec.label} ({spec.selector}) on {model.name}: {describe(target)}")
        lines += [f"warning: {renamed}" for renamed in target.renamed]
        if spec in uncounted_index_entries(desired):
            lines.append(f"warning: {spec.label}: {UNCOUNTED}")
    if not lines:
        lines.append(f"{desired.source}: valid, no [[gpu]] entries (restores nothing)")
    return lines


def resolve(
    desired: DesiredNode, model_name: str | None, table: ProfileTable | None = None
) -> list[tuple[GpuSpec, ModelInfo, TargetLayout]]:
    """Each entry with the model it is checked against and the exact layout it gives there."""
    _check_stand_in(desired, model_name)
    strict = desired.restore.strict_profile_names
    resolved = []
    for spec in desired.gpus:
        model = _model_for(spec, model_name, desired.source)
        gpu = modelled_gpu(model, table=table)
        resolved.append((spec, model, layout.resolve(spec, gpu, desired.source, strict=strict)))
    return resolved
