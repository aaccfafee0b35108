"""`import-mig-parted`: a mig-parted config (YAML, `version: v1`) as a migrestore layout file.

mig-parted's desired state is a count of profiles per GPU; migrestore's is an exact layout. The
conversion reads one label of `mig-configs` as strictly as mig-parted does, resolves every profile
against the GPU model the entry selects (from its `device-filter` PCI ids or model names, else from
the profile names, else `--model`), packs compute-instance profiles such as `1c.2g.10gb` into GPU
instances the way mig-parted creates them (trying the orders mig-parted tries), and lets
migrestore's planner choose the placements, so the file it prints has explicit placements and is
known to fit. Unlike mig-parted, a profile that the model does not have is an error, never an empty
layout.

A filter with a PCI subsystem id becomes a `device-id` entry with it. A filter naming a GPU the
catalogue does not know becomes a `device-id` (or `model`) entry marked `optional` (mig-parted
skips an entry that matches no GPU); without the model's profile table its instances are written
without placements, for the planner to place on the host.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from migrestore import config, layout, offline, profiles, writer
from migrestore.errors import ConfigError
from migrestore.model import (
    CiProfile,
    ComputeSpec,
    GiProfile,
    GpuSpec,
    InstanceSpec,
    Placement,
    Selector,
    SelectorKind,
    TargetLayout,
)
from migrestore.profiles import ModelInfo

MAX_COUNT = config.MAX_COUNT  # checked before expanding: no GPU has more MIG devices
MAX_GROUPINGS = 64  # ways of grouping compute instances into GPU instances tried per entry
MAX_ORDERS = 20000  # partial orders of an entry's profiles looked at to find them

_TOP_KEYS = ("version", "mig-configs")
_ENTRY_KEYS = ("devices", "device-filter", "mig-enabled", "mig-devices")
_PCI_ID = re.compile(r"0x([0-9a-f]{8})(?::0x([0-9a-f]{8}))?", re.IGNORECASE)
_HEX = re.compile(r"(?:0x)?[0-9a-f:]+", re.IGNORECASE)  # meant as a PCI id, not a name
_PROFILE = re.compile(
    r"(?:(?P<c>\d+)c\.)?(?P<gi>(?P<g>\d+)g\.\d+gb(?:[+-][\w.+-]*(?:,[\w.+-]+)*)?)"
)

Pair = tuple[str, GiProfile, CiProfile]  # a profile name as written, its GI and CI profiles
Group = tuple[str, GiProfile, tuple[CiProfile, ...]]  # one GPU instance: where, profile, CIs


@dataclass(frozen=True)
class DeviceFilter:
    """One `device-filter` item: a PCI id `0x20B010DE`, optionally with a subsystem id
    `:0x16C110DE`, or a model name as NVML reports it (`device_id` None)."""

    text: str
    device_id: int | None = None
    subsystem: int | None = None

    @property
    def model(self) -> ModelInfo | None:
        """The catalogue model it names, if any (a subsystem id narrows it to some boards)."""
        if self.device_id is None:
            return profiles.find_model(self.text)
        return profiles.find_model_by_pci_id(self.device_id)

    @property
    def selector(self) -> Selector:
        """The layout file's selector for the GPUs it matches: the model when that is all the
        filter says, else the PCI id (with its subsystem id), else the name as written."""
        model = self.model
        if self.device_id is not None and (self.subsystem is not None or model is None):
            return Selector(SelectorKind.DEVICE_ID, self.text)
        return Selector(SelectorKind.MODEL, model.name if model else self.text)

    @property
    def key(self) -> str:
        """Equal for two filters that may match one GPU."""
        model = self.model
        return model.key if model else self.text.casefold()


@dataclass(frozen=True)
class Entry:
    """One entry of a mig-parted label (`MigConfigSpec`)."""

    where: str
    devices: tuple[int, ...] | None  # None: "all"; (): `devices: []`, no GPU
    filters: tuple[DeviceFilter, ...]
    enabled: bool
    counts: tuple[tuple[str, int], ...]  # profile name as written, count > 0


@dataclass(frozen=True)
class Block:
    """One `[[gpu]]` entry of the output: where it came from, what it selects, its exact layout."""

    origin: str
    comments: tuple[str, ...]
    selector: Selector
    mig: bool
    instances: tuple[writer.Instance, ...]
    limited_to: tuple[str, ...] = ()  # filter keys its device-filter allows (empty: any GPU)
    optional: bool = False

    def may_overlap(self, other: Block) -> bool:
        """Whether both could select one GPU (only their device-filters can tell them apart)."""
        if self.limited_to and other.limited_to:
            return bool(set(self.limited_to) & set(other.limited_to))
        return True


def convert(text: str, source: str, label: str | None = None, model: str | None = None) -> str:
    """The layout file for one label of the mig-parted config `text` (named `source`).

    `model` names the catalogue model for entries without a `device-filter`; without it the model
    is the one whose profiles include every name the entry uses (an error if that is ambiguous).
    """
    configs = parse(text, source)
    chosen = pick_label(configs, label, source)
    fallback = _named_model(model) if model else None
    blocks = [b for e in configs[chosen] for b in entry_blocks(e, source, fallback)]
    _check_order(blocks, source)
    dropped = tuple(
        line
        for e in configs[chosen]
        if e.devices == ()
        for line in (
            f"{e.where} (devices: []) selects no GPU: mig-parted changes nothing",
            "for it, so it has no [[gpu]] entry.",
        )
    )
    if any(i.placement is None for b in blocks for i in b.instances):
        dropped += (
            "Instances without a placement are on GPUs migrestore's catalogue does not know:",
            "the planner places them on the host, from the driver's profile table.",
        )
    output = render(blocks, source, chosen, dropped)
    config.parse(output, f"{source} (converted)")  # the output must be a valid layout file
    return output


# ---- reading the YAML, as strictly as mig-parted does ----


def parse(text: str, source: str) -> dict[str, tuple[Entry, ...]]:
    """Every label of `mig-configs` with its entries; ConfigError naming the key that is wrong."""
    document = _load_yaml(text, source)
    if not isinstance(document, dict):
        raise _fail(source, "top level", "must be a mapping with version and mig-configs")
    _known_keys(document, _TOP_KEYS, source, "top level")
    if document.get("version") != "v1":
        got = document.get("version", "nothing")
        raise _fail(source, "version", f'must be "v1" (mig-parted config format), got {got!r}')
    configs = document.get("mig-configs")
    if not isinstance(configs, dict) or not configs:
        raise _fail(source, "mig-configs", "must be a non-empty mapping of label to entries")
    return {str(label): _entries(raw, str(label), source) for label, raw in configs.items()}


def _load_yaml(text: str, source: str) -> Any:
    # PyYAML (Debian: python3-yaml) is needed by this verb only; it ships no type hints.
    yaml: Any = importlib.import_module("yaml")

    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise _fail(source, "YAML", "nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise _fail(source, where, f"not valid YAML: {problem}") from None


def _fail(source: str, where: str, problem: str, hint: str = "") -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}", hint=hint)


def _known_keys(table: dict[Any, Any], known: tuple[str, ...], source: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise _fail(source, where, f"unexpected field {key!r} (known: {', '.join(known)})")


def _entries(raw: object, label: str, source: str) -> tuple[Entry, ...]:
    where = f"mig-configs.{label}"
    if not isinstance(raw, list) or not raw:
        raise _fail(source, where, "must be a non-empty list of entries")
    return tuple(_entry(item, f"{where}[{i}]", source) for i, item in enumerate(raw))


def _entry(raw: object, where: str, source: str) -> Entry:
    if not isinstance(raw, dict):
        raise _fail(source, where, "must be a mapping with devices and mig-enabled")
    _known_keys(raw, _ENTRY_KEYS, source, where)
    enabled = raw.get("mig-enabled")
    if not isinstance(enabled, bool):
        raise _fail(source, f"{where}.mig-enabled", f"must be true or false, got {enabled!r}")
    return Entry(
        where=where,
        devices=_devices(raw.get("devices"), f"{where}.devices", source),
        filters=_filters(raw.get("device-filter"), f"{where}.device-filter", source),
        enabled=enabled,
        counts=_counts(raw, enabled, where, source),
    )


def _devices(value: object, where: str, source: str) -> tuple[int, ...] | None:
    if value == "all":
        return None
    if not isinstance(value, list):
        hint = "mig-parted rejects a bare index too: write devices: [7], not devices: 7"
        raise _fail(source, where, f'must be "all" or a list of GPU indices, got {value!r}', hint)
    for index in value:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise _fail(source, where, f"GPU indices are integers >= 0, got {index!r}")
    return tuple(sorted(set(value)))


def _filters(value: object, where: str, source: str) -> tuple[DeviceFilter, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(dict.fromkeys(_device_filter(item, where, source) for item in items))


def _device_filter(value: object, where: str, source: str) -> DeviceFilter:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"0x{value:08X}"  # YAML 1.1 reads an unquoted 0x20B010DE as a number
    found = _PCI_ID.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        if isinstance(value, str) and value.strip() and not _HEX.fullmatch(value.strip()):
            return DeviceFilter(" ".join(value.split()))  # a model name: "NVIDIA A100-SXM4-40GB"
        problem = (
            'must be PCI ids such as "0x20B010DE" or "0x233010DE:0x16C110DE", or model names, '
            f"got {value!r}"
        )
        raise _fail(source, where, problem)
    subsystem = int(found[2], 16) if found[2] else None
    text = f"0x{found[1].upper()}" + (f":0x{found[2].upper()}" if found[2] else "")
    return DeviceFilter(text, int(found[1], 16), subsystem)


def _counts(
    raw: dict[str, Any], enabled: bool, where: str, source: str
) -> tuple[tuple[str, int], ...]:
    devices = raw.get("mig-devices")
    key = f"{where}.mig-devices"
    if not enabled:
        if devices:
            raise _fail(source, key, "must be empty when mig-enabled is false")
        return ()
    if not isinstance(devices, dict):
        raise _fail(source, key, "required with mig-enabled: true ({} for no instances)")
    for name, count in devices.items():
        if not isinstance(name, str) or _PROFILE.fullmatch(name) is None:
            raise _fail(source, key, f"{name!r} is not a MIG profile name such as 1g.10gb")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _fail(source, f"{key}.{name}", f"count must be an integer >= 0, got {count!r}")
        if count > MAX_COUNT:
            problem = (
                f"count must be at most {MAX_COUNT} (no GPU has more MIG devices), got {count}"
            )
            raise _fail(source, f"{key}.{name}", problem)
    if devices and not any(devices.values()):
        raise _fail(source, key, "all counts are 0 (write mig-devices: {} for no instances)")
    return tuple((name, count) for name, count in devices.items() if count > 0)


def pick_label(configs: dict[str, tuple[Entry, ...]], label: str | None, source: str) -> str:
    """The label to convert: the one asked for, or the only one."""
    labels = ", ".join(configs)
    if label is None:
        if len(configs) == 1:
            return next(iter(configs))
        raise ConfigError(
            f"{source}: mig-configs has {len(configs)} labels; choose one with --config-name "
            f"LABEL: {labels}"
        )
    if label not in configs:
        raise ConfigError(f'{source}: mig-configs has no label "{label}"; labels: {labels}')
    return label


# ---- models ----


def _named_model(name: str) -> ModelInfo:
    model = profiles.find_model(name)
    if model is None:
        known = ", ".join(m.name for m in profiles.catalogue())
        raise ConfigError(f'unknown model "{name}"; known: {known}')
    return model


def filter_models(entry: Entry) -> tuple[ModelInfo, ...]:
    """The catalogue models an entry's `device-filter` names (in order, each once)."""
    found = {m.key: m for m in (f.model for f in entry.filters) if m is not None}
    return tuple(found.values())


# ---- one entry -> [[gpu]] blocks ----


def entry_blocks(entry: Entry, source: str, fallback: ModelInfo | None) -> list[Block]:
    """The `[[gpu]]` blocks one mig-parted entry becomes (none for `devices: []`)."""
    if entry.devices == ():
        return []
    if entry.devices is None and entry.filters:
        return _filter_blocks(entry, source)
    filtered = filter_models(entry)
    limited = tuple(dict.fromkeys(f.key for f in entry.filters))
    unknown = tuple(f for f in entry.filters if f.model is None)
    if unknown:
        for model in filtered:  # it must still fit the known models it may meet
            _target(entry, model, source)
        instances = _unplaced(entry, unknown, source)
        comments = _origin(entry, filtered, unknown)
        selectors = [Selector(SelectorKind.INDEX, i) for i in entry.devices or ()]
        return [
            Block(entry.where, comments, s, entry.enabled, instances, limited) for s in selectors
        ]
    candidates = filtered or ((fallback,) if fallback else None)
    target, models = _shared_target(entry, candidates, source)
    comments = _origin(entry, models)
    instances = _written(target)
    if entry.devices is None:
        return [Block(entry.where, comments, Selector(SelectorKind.ALL), target.mig, instances)]
    return [
        Block(
            entry.where, comments, Selector(SelectorKind.INDEX, i), target.mig, instances, limited
        )
        for i in entry.devices
    ]


def _filter_blocks(entry: Entry, source: str) -> list[Block]:
    """`devices: all` behind a filter: one block per model or PCI id the filter names."""
    blocks: dict[Selector, Block] = {}
    for item in entry.filters:
        selector, model = item.selector, item.model
        if selector in blocks:
            continue
        if model is None:
            instances = _unplaced(entry, (item,), source)
            comments = _origin(entry, (), (item,))
            blocks[selector] = Block(
                entry.where, comments, selector, entry.enabled, instances, (item.key,), True
            )
            continue
        target = _target(entry, model, source)
        comments = _origin(entry, (model,))
        blocks[selector] = Block(
            entry.where, comments, selector, target.mig, _written(target), (item.key,)
        )
    return list(blocks.values())


def _written(target: TargetLayout) -> tuple[writer.Instance, ...]:
    return tuple(writer.target_instance(i) for i in target.instances)


def _unplaced(
    entry: Entry, unknown: tuple[DeviceFilter, ...], source: str
) -> tuple[writer.Instance, ...]:
    """The entry's instances without placements, for a GPU whose profile table only the driver
    knows: the planner places them on the host. Compute-instance profiles need the table."""
    instances = []
    for name, count in entry.counts:
        parts = _PROFILE.fullmatch(name)
        assert parts is not None  # _counts checked every name
        if parts["c"] and parts["c"] != parts["g"]:
            ids = ", ".join(f.text for f in unknown)
            raise _fail(
                source,
                f'{entry.where}.mig-devices."{name}"',
                f"compute-instance profiles need the GPU's profile table to be grouped into GPU "
                f"instances, and migrestore's catalogue does not know {ids}",
                hint="write this GPU's entry by hand, with [[gpu.instance]] and compute = [...]",
            )
        instances.append(writer.Instance(parts["gi"], None, None, count=count))
    return tuple(instances)


def _shared_target(
    entry: Entry, candidates: tuple[ModelInfo, ...] | None, source: str
) -> tuple[TargetLayout, tuple[ModelInfo, ...]]:
    """One layout that is the same on every model the entry may meet, and those models.

    `candidates` are the models its device-filter or `--model` names (each must take the layout);
    None means any model: then every catalogue model on which the layout fits.
    """
    if not entry.enabled or not entry.counts:
        return TargetLayout(mig=entry.enabled), candidates or ()
    targets = (
        {m: _target(entry, m, source) for m in candidates}
        if candidates
        else _feasible_targets(entry, source)
    )
    if len({_shape(t) for t in targets.values()}) > 1:
        names = "; ".join(m.name for m in targets)
        raise _fail(
            source,
            entry.where,
            f"the profiles fit several models with different layouts ({names})",
            hint='add a device-filter to the entry, or give --model "NAME"',
        )
    return next(iter(targets.values())), tuple(targets)


def _feasible_targets(entry: Entry, source: str) -> dict[ModelInfo, TargetLayout]:
    """The entry's layout on every catalogue model that has its profiles and room for them."""
    targets: dict[ModelInfo, TargetLayout] = {}
    problems: list[ConfigError] = []
    for model in profiles.catalogue():
        if not _has_profiles(entry, model):
            continue
        try:
            targets[model] = _target(entry, model, source)
        except ConfigError as problem:
            problems.append(problem)
    if targets:
        return targets
    if problems:
        raise problems[0]
    names = ", ".join(name for name, _ in entry.counts)
    raise _fail(source, f"{entry.where}.mig-devices", f"no known GPU model has {names}")


def _shape(target: TargetLayout) -> tuple[object, ...]:
    """What a layout file says about a layout: names and placements."""
    return tuple(
        (
            t.profile.short_name,
            t.placement,
            tuple((c.profile.short_name, c.placement) for c in t.compute),
        )
        for t in target.instances
    )


def _origin(
    entry: Entry, models: tuple[ModelInfo, ...], unknown: tuple[DeviceFilter, ...] = ()
) -> tuple[str, ...]:
    lines = [f"From {entry.where}: {_describe(entry)}."]
    if entry.filters:
        lines.append(f"mig-parted device-filter: {', '.join(f.text for f in entry.filters)}.")
    if any(f.device_id is None for f in entry.filters):
        lines.append("mig-parted matches a device-filter by PCI id only, so a model name selects")
        lines.append("no GPU there; migrestore selects the GPUs that NVML calls by that name.")
    if unknown:
        lines.append(f"migrestore's catalogue does not know {', '.join(f.text for f in unknown)}:")
        lines.append("the planner places the instances on the host, from the driver's table.")
        if entry.devices is None:
            lines.append("Optional: mig-parted skips an entry that matches no GPU.")
    if entry.devices is not None and entry.filters:
        names = " or ".join(dict.fromkeys(_named(f) for f in entry.filters))
        lines.append(f"migrestore selects by index only: the GPU must be an {names}.")
    elif entry.counts and models and not entry.filters:
        lines.append(f"Placements checked on: {'; '.join(m.name for m in models)}.")
    return tuple(lines)


def _named(item: DeviceFilter) -> str:
    """What a filter item asks a GPU to be, in words."""
    model = item.model
    if model is None:
        return item.text if item.device_id is None else f"GPU with PCI id {item.text}"
    if item.subsystem is not None:
        return f"{model.name} with PCI subsystem id 0x{item.subsystem:08X}"
    return model.name


def _describe(entry: Entry) -> str:
    devices = "all" if entry.devices is None else str(list(entry.devices))
    if not entry.enabled:
        return f"devices {devices}, MIG disabled"
    counts = ", ".join(f"{count} x {name}" for name, count in entry.counts) or "no instances"
    return f"devices {devices}, {counts}"


def _has_profiles(entry: Entry, model: ModelInfo) -> bool:
    """Whether every profile the entry names exists on `model`."""
    try:
        for name, _ in entry.counts:
            _profile_pair(name, model)
    except LookupError:
        return False
    return True


def _profile_pair(name: str, model: ModelInfo) -> tuple[GiProfile, CiProfile]:
    """The GPU-instance profile and the compute-instance profile a mig-parted name stands for."""
    parts = _PROFILE.fullmatch(name)
    table = model.table
    gi = profiles.resolve_gi(table, parts["gi"]) if parts else None
    if parts is None or gi is None:
        raise LookupError(f"valid profiles: {profiles.gi_names(table)}")
    slices = int(parts["c"]) if parts["c"] else gi.slices
    ci = next((c for c in table.ci_for(gi.id) if c.slices == slices), None)
    if ci is None:
        raise LookupError(
            f"valid compute profiles of {gi.short_name}: {profiles.ci_names(table, gi)}"
        )
    return gi, ci


def _pairs(entry: Entry, model: ModelInfo, source: str) -> list[tuple[str, GiProfile, CiProfile]]:
    pairs = []
    for name, count in entry.counts:
        try:
            gi, ci = _profile_pair(name, model)
        except LookupError as problem:
            where = f"{entry.where}.mig-devices"
            raise _fail(
                source, where, f'profile "{name}" does not exist on {model.name}; {problem}'
            ) from None
        pairs += [(name, gi, ci)] * count
    return sorted(pairs, key=lambda p: (-p[1].slices, -p[2].slices, p[1].short_name, p[0]))


def _target(entry: Entry, model: ModelInfo, source: str) -> TargetLayout:
    """The entry's exact layout on `model`: instances grouped as mig-parted does, then placed.

    mig-parted tries the orders of an entry's profiles until one applies, and the order decides
    which compute instances share a GPU instance; the first grouping that fits is the layout.
    """
    if not entry.enabled:
        return TargetLayout(mig=False)
    gpu = offline.modelled_gpu(model)
    pairs = _pairs(entry, model, source)
    first: ConfigError | None = None
    tried = 0
    left = [MAX_ORDERS]
    for grouping in _groupings(pairs, entry.where, model.placement_units, left):
        instances = tuple(
            InstanceSpec(
                profile=gi.short_name,
                compute=tuple(ComputeSpec(ci.short_name, where=where) for ci in cis),
                where=where,
            )
            for where, gi, cis in grouping
        )
        spec = GpuSpec(Selector(SelectorKind.MODEL, model.name), True, instances, entry.where)
        tried += 1
        try:
            return layout.resolve(spec, gpu, source)
        except ConfigError as problem:
            first = first or problem
        if tried == MAX_GROUPINGS:
            break
    assert first is not None  # _groupings yields at least one grouping
    if len(set(pairs)) == 1:
        raise first  # one order only
    if left[0] > 0 and tried < MAX_GROUPINGS:
        scope = "in any order of its profiles mig-parted may try"
    else:
        scope = f"in the {tried} groupings into GPU instances looked at"
    raise ConfigError(f"{first.message} (nor {scope})", hint=first.hint)


def _groupings(
    pairs: list[Pair], where: str, units: int, budget: list[int]
) -> Iterator[list[Group]]:
    """Each distinct way mig-parted may group `pairs` into GPU instances, `pairs`' order first.

    mig-parted applies the profiles in one order after another until one succeeds; in each, a
    compute instance joins the GPU instance created last while that has the same profile and a
    free placement for it, else it gets a new GPU instance. Orders that need more GPU instances
    of a profile than the GPU has, or more memory slices than its `units`, are not followed; at
    most `budget[0]` partial orders are looked at (the first one always completes), and what
    is left of it stays in `budget[0]`.
    """
    kinds = list(dict.fromkeys(pairs))
    remaining = [pairs.count(k) for k in kinds]
    visited: set[object] = set()
    found: set[object] = set()

    def room(groups: tuple[tuple[int, tuple[int, ...]], ...]) -> bool:
        profiles_used = [kinds[g][1] for g, _ in groups]
        size = sum(min(p.size for p in gi.placements) for gi in profiles_used if gi.placements)
        return size <= units and all(
            profiles_used.count(gi) <= gi.instances for gi in profiles_used
        )

    def shape(groups: tuple[tuple[int, tuple[int, ...]], ...]) -> object:
        return tuple(sorted((kinds[g][1].id, tuple(sorted(cis))) for g, cis in groups))

    def walk(groups: tuple[tuple[int, tuple[int, ...]], ...]) -> Iterator[list[Group]]:
        if not any(remaining):
            if shape(groups) not in found:
                found.add(shape(groups))
                yield [
                    (
                        f'{where}.mig-devices."{kinds[g][0]}"',
                        kinds[g][1],
                        tuple(kinds[c][2] for c in cis),
                    )
                    for g, cis in groups
                ]
            return
        state = (shape(groups[:-1]), groups[-1:], tuple(remaining))
        if state in visited or (found and (budget[0] <= 0 or not room(groups))):
            return
        visited.add(state)
        budget[0] -= 1
        for k, (_, gi, ci) in enumerate(kinds):
            if not remaining[k]:
                continue
            remaining[k] -= 1
            last = groups[-1] if groups else None
            if last and kinds[last[0]][1] == gi and _fits(ci, [kinds[c][2] for c in last[1]]):
                yield from walk((*groups[:-1], (last[0], (*last[1], k))))
            else:
                yield from walk((*groups, (k, (k,))))
            remaining[k] += 1

    yield from walk(())


def _fits(ci: CiProfile, existing: list[CiProfile]) -> bool:
    """Whether `ci` still has a free placement beside `existing` (each at its lowest free start)."""
    if sum(1 for c in existing if c == ci) >= ci.instances:
        return False
    taken: list[Placement] = []
    for profile in [*existing, ci]:
        free = next((p for p in profile.placements if profiles.fits(p, taken)), None)
        if free is None:
            return False
        taken.append(free)
    return True


def _check_order(blocks: list[Block], source: str) -> None:
    """Refuse what migrestore would read differently: mig-parted applies entries in order (the
    last one selecting a GPU wins); migrestore lets the more specific selector win."""
    for i, later in enumerate(blocks):
        for earlier in blocks[:i]:
            if earlier.selector == later.selector:
                raise ConfigError(
                    f"{source}: {later.origin} selects {later.selector} again (as "
                    f"{earlier.origin} does); migrestore needs one entry per selection"
                )
            if earlier.selector.kind.rank > later.selector.kind.rank and later.may_overlap(earlier):
                raise ConfigError(
                    f"{source}: {later.origin} ({later.selector}) comes after {earlier.origin} "
                    f"({earlier.selector}) and overrides it in mig-parted; migrestore lets the "
                    f"more specific selection win",
                    hint=f"move {later.origin} before {earlier.origin} if that is what you mean",
                )


# ---- writing the layout file ----


def render(blocks: list[Block], source: str, label: str, notes: tuple[str, ...] = ()) -> str:
    """The layout file text; `notes` go into the header."""
    header = (
        f'mig-config "{label}" of the mig-parted config {source},',
        "converted by `migrestore import-mig-parted`. Placements were chosen by migrestore's",
        "planner: every boot restores exactly this layout. Review it with `migrestore check`",
        "and `migrestore plan` before using it.",
        *notes,
    )
    entries = [
        writer.Entry(
            select=block.selector,
            mig=block.mig,
            instances=block.instances,
            comments=block.comments,
            optional=block.optional,
        )
        for block in blocks
    ]
    return writer.render(header, entries)
