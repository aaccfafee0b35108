"""The benchmark's own reading of a layout file, and of the state a host is in.

Independent of migrestore's config, layout and planner code on purpose: the minimum number of
driver calls is derived from what the scenario says, not from what migrestore decides to do.
Only the subset of the layout format the scenarios use is understood: `select` by `index`,
`model` or `"all"` (index beats model beats all), `mig`, and instances with `profile`,
`placement`, `count` and `compute` (names, or tables with `profile` and `placement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from bench.catalogue import GiKind, ModelData, short_name
from migrestore import toml

Compute = tuple[str, Optional[int]]  # a compute-instance profile short name and its start (or None)


@dataclass(frozen=True)
class Instance:
    """A GPU instance: profile short name, start (None: wherever it fits) and compute instances."""

    profile: str
    placement: int | None
    compute: tuple[Compute, ...]


@dataclass(frozen=True)
class GpuLayout:
    """What one GPU looks like (or must look like)."""

    mig: bool
    instances: tuple[Instance, ...] = ()


@dataclass(frozen=True)
class Gpu:
    """One GPU of a simulated host: its model and current state."""

    model: ModelData
    state: GpuLayout


def _ci_name(kind: GiKind, wanted: str | int) -> str:
    if isinstance(wanted, int):
        return kind.ci_names[kind.ci_ids.index(wanted)]
    name = short_name(wanted)
    if name not in kind.ci_names:
        raise ValueError(f"{kind.name} has no compute profile {wanted!r}")
    return name


def _compute(kind: GiKind, rows: list[Any] | None) -> tuple[Compute, ...]:
    if rows is None:
        return ((kind.default_ci, None),) if kind.default_ci else ()
    found: list[Compute] = []
    for row in rows:
        if isinstance(row, dict):
            found.append((_ci_name(kind, row["profile"]), row.get("placement")))
        else:
            found.append((_ci_name(kind, row), None))
    return tuple(sorted(found, key=str))


def _instances(model: ModelData, rows: list[dict[str, Any]]) -> tuple[Instance, ...]:
    found: list[Instance] = []
    for row in rows:
        kind = model.gi_kind(row["profile"])
        one = Instance(kind.name, row.get("placement"), _compute(kind, row.get("compute")))
        found += [one] * int(row.get("count", 1))
    return tuple(found)


def _rank(select: object, index: int, model: ModelData) -> int:
    """How strongly an entry's selector picks this GPU: 3 index, 2 model, 1 all, 0 not at all."""
    if select == "all":
        return 1
    if not isinstance(select, dict):
        raise ValueError(f"the benchmark does not read select = {select!r}")
    if "index" in select:
        return 3 if select["index"] == index else 0
    if "model" in select:
        return 2 if str(select["model"]).strip().casefold() in model.names else 0
    raise ValueError(f"the benchmark does not read select = {select!r}")


def read(path: Path, models: Sequence[ModelData]) -> tuple[GpuLayout | None, ...]:
    """Per GPU (by index) the layout the file asks for, None for a GPU no entry selects."""
    entries = toml.loads(path.read_text()).get("gpu", [])
    wanted: list[GpuLayout | None] = []
    for index, model in enumerate(models):
        ranked = [(_rank(e["select"], index, model), e) for e in entries]
        best: tuple[int, dict[str, Any]] = max(ranked, key=lambda pair: pair[0], default=(0, {}))
        if best[0] == 0:
            wanted.append(None)
            continue
        entry = best[1]
        instances = _instances(model, entry.get("instance", []))
        wanted.append(GpuLayout(bool(entry.get("mig", True)), instances))
    return tuple(wanted)


# ---- the host's state through a scenario's preparation ----


def fresh(models: Sequence[ModelData]) -> tuple[Gpu, ...]:
    """`simulate init`: MIG disabled, no instances."""
    return tuple(Gpu(m, GpuLayout(mig=False)) for m in models)


def applied(gpus: tuple[Gpu, ...], layouts: tuple[GpuLayout | None, ...]) -> tuple[Gpu, ...]:
    """After a successful `apply`: every selected GPU is exactly as its entry says."""
    if len(layouts) != len(gpus):
        raise ValueError(f"{len(layouts)} layouts for {len(gpus)} GPUs")
    return tuple(
        g if wanted is None else replace(g, state=wanted) for g, wanted in zip(gpus, layouts)
    )


def rebooted(gpus: tuple[Gpu, ...]) -> tuple[Gpu, ...]:
    """After a reboot: no instances; Ampere keeps MIG mode (InfoROM), later GPUs lose it."""
    return tuple(
        replace(g, state=GpuLayout(mig=g.state.mig and g.model.mode_needs_reset)) for g in gpus
    )
