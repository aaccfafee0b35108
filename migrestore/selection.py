"""Which `[[gpu]]` entry of the layout file governs which GPU of this host.

Precedence: an identity selector (`uuid`, `pci`, `index`) beats a PCI `device-id` selector, which
beats a `model` selector, which beats `"all"`. Two entries of the same precedence that both select
one GPU are a configuration error naming both. GPUs that no entry selects are *unmanaged*:
migrestore leaves them untouched; so are those whose governing entry says `managed = false`
(another owner has them; `plan.plan_node` sets them aside).

Entries that select nothing are treated by kind, on purpose:

- An identity selector naming a GPU that is not present is **missing**, not a configuration error:
  the GPU fell off the bus, was replaced or its driver failed. The file is still right, so `apply`
  restores every other GPU, reports the missing ones and exits 1 (a runtime failure).
- A `device-id` or `model` selector that selects no GPU here is **absent**, not an error, when
  it names a GPU migrestore's catalogue knows (a fleet file holds entries for other hosts' GPUs),
  and so is any entry marked `optional = true`: the verbs say so on one info line and in
  `--json`. A name or id the catalogue does not know that selects nothing stays a
  **configuration error** (exit 2): a typo must not silently do nothing. So does `"all"` on a
  host without GPUs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from migrestore import profiles
from migrestore.errors import ConfigError
from migrestore.model import (
    DesiredNode,
    GpuSpec,
    GpuState,
    NodeState,
    Selector,
    SelectorKind,
)

_PCI_BUS_ID = re.compile(
    r"(?:(?P<domain>[0-9a-f]{1,8}):)?(?P<bus>[0-9a-f]{1,2}):(?P<device>[0-9a-f]{1,2})"
    r"\.(?P<function>[0-7])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Selection:
    """The outcome of matching a layout file's entries against the GPUs present."""

    governed: tuple[tuple[str, GpuSpec], ...]
    """(GPU UUID, the entry that governs it), in GPU order."""
    unmanaged: tuple[str, ...] = ()
    """UUIDs of the GPUs no entry selects; left untouched."""
    missing: tuple[GpuSpec, ...] = ()
    """Entries with an identity selector naming a GPU that is not present."""
    absent: tuple[GpuSpec, ...] = ()
    """Fleet entries (a known model or device id, or `optional`) for GPUs this host lacks."""

    def spec_for(self, uuid: str) -> GpuSpec | None:
        """The entry that governs the GPU with this UUID, or None if it is unmanaged."""
        return next((spec for gpu, spec in self.governed if gpu == uuid), None)


def normalise_pci(text: str) -> str | None:
    """NVML's form `00000000:3B:00.0` of a PCI bus id (`0000:3b:00.0`, `3b:00.0`...), or None."""
    found = _PCI_BUS_ID.fullmatch(text.strip())
    if found is None or int(found["device"], 16) > 0x1F:
        return None
    domain = int(found["domain"] or "0", 16)
    bus, device = int(found["bus"], 16), int(found["device"], 16)
    return f"{domain:08X}:{bus:02X}:{device:02X}.{found['function']}"


def model_matches(wanted: str, gpu_name: str) -> bool:
    """True if a `model` selector naming `wanted` selects a GPU that NVML calls `gpu_name`."""
    if wanted.strip().casefold() == gpu_name.strip().casefold():
        return True
    known = profiles.find_model(wanted)
    return known is not None and known.matches(gpu_name)


def selects(selector: Selector, gpu: GpuState) -> bool:
    """True if `selector` picks `gpu` (regardless of precedence)."""
    kind, value = selector.kind, selector.value
    if kind is SelectorKind.ALL:
        return True
    if kind is SelectorKind.INDEX:
        return value == gpu.index
    if kind is SelectorKind.UUID:
        return str(value).casefold() == gpu.uuid.casefold()
    if kind is SelectorKind.PCI:
        wanted = normalise_pci(str(value))
        return wanted is not None and wanted == normalise_pci(gpu.pci)
    if kind is SelectorKind.DEVICE_ID:
        return device_id_matches(str(value), gpu)
    return model_matches(str(value), gpu.name)


def device_id_matches(wanted: str, gpu: GpuState) -> bool:
    """`0x20F110DE` matches the GPU's packed PCI device id; `0x20F110DE:0x145F10DE` also its
    subsystem id."""
    device, _, subsystem = wanted.partition(":")
    if int(device, 16) != gpu.pci_device_id:
        return False
    return not subsystem or int(subsystem, 16) == gpu.pci_subsystem_id


def known_to_the_catalogue(selector: Selector) -> bool:
    """A model name or device id of a GPU migrestore's catalogue knows."""
    if selector.kind is SelectorKind.MODEL:
        return profiles.find_model(str(selector.value)) is not None
    if selector.kind is SelectorKind.DEVICE_ID:
        device = int(str(selector.value).partition(":")[0], 16)
        return profiles.find_model_by_pci_id(device) is not None
    return False


def match(desired: DesiredNode, state: NodeState) -> Selection:
    """Decide for every GPU which entry governs it; raise ConfigError for ties and dead entries."""
    governed: list[tuple[str, GpuSpec]] = []
    unmanaged: list[str] = []
    for gpu in state.gpus:
        spec = _governing(desired, gpu)
        if spec is None:
            unmanaged.append(gpu.uuid)
        else:
            governed.append((gpu.uuid, spec))
    unmatched = [s for s in desired.gpus if not any(selects(s.selector, g) for g in state.gpus)]
    absent = tuple(s for s in unmatched if s.optional or known_to_the_catalogue(s.selector))
    for spec in unmatched:
        # With a GPU that cannot be read, the entry may be for that GPU: missing, not a mistake.
        if not spec.selector.kind.is_identity and not state.unreadable and spec not in absent:
            _fail_selects_nothing(spec.source or desired.source, spec, state)
    missing = tuple(s for s in unmatched if s not in absent)
    return Selection(tuple(governed), tuple(unmanaged), missing, absent)


def _governing(desired: DesiredNode, gpu: GpuState) -> GpuSpec | None:
    """The entry of highest precedence selecting `gpu`; a tie at that precedence is an error."""
    candidates = [spec for spec in desired.gpus if selects(spec.selector, gpu)]
    if not candidates:
        return None
    best = max(spec.selector.kind.rank for spec in candidates)
    first, *others = [spec for spec in candidates if spec.selector.kind.rank == best]
    if others:
        second = others[0]
        where = f"{first.where}.select, {second.where}.select"
        if first.source != second.source:  # an entry from a drop-in (conf.d) names its file
            where = (
                f"{first.where}.select, {second.source or desired.source}: {second.where}.select"
            )
        raise ConfigError(
            f"{first.source or desired.source}: {where}: both select "
            f"{gpu.label} with the same precedence ({first.selector}; {second.selector})",
            hint='an identity selector (uuid, pci, index) beats model, which beats "all"',
        )
    return first


def _fail_selects_nothing(source: str, spec: GpuSpec, state: NodeState) -> NoReturn:
    """Raise the error for a `model` or `"all"` entry that selects no GPU of this host."""
    names = sorted({gpu.name for gpu in state.gpus})
    present = f"GPUs here: {', '.join(names)}" if names else "no GPUs found"
    raise ConfigError(
        f"{source}: {spec.where}.select: {_quoted(spec.selector)} selects no GPU on this host "
        f"({present}) and names no GPU migrestore knows",
        hint="check the spelling, or mark the entry optional = true if it is for other hosts",
    )


def _quoted(selector: Selector) -> str:
    """`"all"` or `model "NVIDIA A30"`, as error messages name a selector."""
    if selector.kind is SelectorKind.ALL:
        return '"all"'
    return f'{selector.kind.value} "{selector.value}"'
