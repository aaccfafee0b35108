"""Resolve one `[[gpu]]` entry against one GPU's profile table: exact profiles and placements.

Pure. Names resolve against *this* GPU's table (never GPU 0's). Placements the file leaves out are
chosen deterministically: an instance keeps the placement it already has when that still fits,
otherwise it gets the lowest free start, largest instances first. The same file on the same GPU
therefore gives the same layout at every boot, and a running layout is disturbed as little as
possible. Every problem is a ConfigError naming the file, the key path and the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from migrestore import profiles
from migrestore.errors import ConfigError
from migrestore.model import (
    CiProfile,
    ComputeSpec,
    GiProfile,
    GpuSpec,
    GpuState,
    InstanceSpec,
    Placement,
    TargetCompute,
    TargetInstance,
    TargetLayout,
)


class ProfileOfAnotherModel(ConfigError):
    """A profile this GPU lacks but another model has: for a GPU named by uuid, pci or index that
    means the GPU was replaced by another model (reported per GPU), not a typo (a config error)."""


@dataclass(frozen=True)
class _Wanted:
    """One GPU instance to place: its spec, resolved profile and fixed start (if any)."""

    spec: InstanceSpec
    profile: GiProfile
    start: int | None
    where: str
    renamed_from: str = ""  # the name as written, when this driver calls the profile otherwise


def resolve(spec: GpuSpec, gpu: GpuState, source: str, *, strict: bool = False) -> TargetLayout:
    """The exact layout `spec` asks of `gpu`, or a ConfigError saying why it cannot be.

    A profile name this driver does not know resolves by its geometry (slices, memory class,
    attributes) when exactly one profile of the table has it, unless `strict`.
    """
    source = spec.source or source  # an entry from a drop-in: its errors name that file
    if not spec.mig:
        return TargetLayout(mig=False)
    if not gpu.mig_capable or not gpu.profiles.gi:
        raise _fail(source, spec.where, gpu, f"{gpu.name} does not support MIG")
    wanted = _expand(spec, gpu, source, strict)
    _check_capacity(wanted, gpu, source)
    placements = _place(wanted, gpu, source)
    instances = [
        TargetInstance(w.profile, p, _resolve_compute(w, p, gpu, source))
        for w, p in zip(wanted, placements)
    ]
    ordered = tuple(sorted(instances, key=lambda t: t.placement))
    return TargetLayout(mig=True, instances=ordered, renamed=_renames(wanted, gpu, source))


def _renames(wanted: list[_Wanted], gpu: GpuState, source: str) -> tuple[str, ...]:
    found = {(w.spec.where, w.renamed_from, w.profile.short_name) for w in wanted if w.renamed_from}
    return tuple(
        f'{source}: {where}.profile: "{old}" is called "{new}" by this driver on {gpu.label}; '
        f"using it (same geometry); [restore] strict-profile-names = true refuses this"
        for where, old, new in sorted(found)
    )


def _fail(source: str, where: str, gpu: GpuState, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem} on {gpu.label}")


def _expand(spec: GpuSpec, gpu: GpuState, source: str, strict: bool) -> list[_Wanted]:
    wanted: list[_Wanted] = []
    for inst in spec.instances:
        profile = profiles.resolve_gi(gpu.profiles, inst.profile)
        renamed_from = ""
        if profile is None and not strict:
            profile = profiles.resolve_renamed(gpu.profiles, inst.profile, inst.shape)
            renamed_from = str(inst.profile)
        if profile is None:
            _unknown_profile(inst, gpu, source)
        if inst.count > profile.instances:  # checked before expanding: count is the file's
            problem = f"{inst.count} x {profile.short_name} asked, at most {profile.instances} fit"
            raise _fail(source, f"{inst.where}.count", gpu, problem)
        for n in range(inst.count):
            where = inst.where if inst.count == 1 else f"{inst.where} (#{n + 1})"
            wanted.append(_Wanted(inst, profile, inst.placement, where, renamed_from))
    return wanted


def _unknown_profile(inst: InstanceSpec, gpu: GpuState, source: str) -> NoReturn:
    known = profiles.gi_names(gpu.profiles)
    problem = f'unknown profile "{inst.profile}" for {gpu.name}; known: {known}'
    message = f"{source}: {inst.where}.profile: {problem} on {gpu.label}"
    if any(profiles.resolve_gi(m.table, inst.profile) for m in profiles.catalogue()):
        raise ProfileOfAnotherModel(message)
    raise ConfigError(message)


def _check_capacity(wanted: list[_Wanted], gpu: GpuState, source: str) -> None:
    for profile in dict.fromkeys(w.profile for w in wanted):  # in order: one message each run
        same = [w for w in wanted if w.profile == profile]
        if len(same) > profile.instances:
            problem = f"{len(same)} x {profile.short_name} asked, at most {profile.instances} fit"
            raise _fail(source, same[-1].where, gpu, problem)
    owner = next((w for w in wanted if w.profile.takes_all_media), None)
    clash = next(
        (w for w in wanted if owner and w is not owner and not w.profile.has_no_media), None
    )
    if owner is not None and clash is not None:
        problem = f"{owner.profile.short_name} ({owner.where}) allows only -me profiles beside it"
        raise _fail(source, clash.where, gpu, problem)
    media = [w for w in wanted if w.profile.is_media_extension]
    if len(media) > 1:
        problem = f"more than one +me instance ({media[0].where} and {media[1].where})"
        raise _fail(source, media[1].where, gpu, problem)


def _fixed_placement(w: _Wanted, gpu: GpuState, source: str) -> Placement:
    match = next((p for p in w.profile.placements if p.start == w.start), None)
    if match is None:
        allowed = ", ".join(str(p.start) for p in w.profile.placements)
        problem = f"placement {w.start} not allowed for {w.profile.short_name}; allowed: {allowed}"
        raise _fail(source, f"{w.where}.placement", gpu, problem)
    return match


def _place(wanted: list[_Wanted], gpu: GpuState, source: str) -> list[Placement]:
    """A placement for every wanted instance: fixed ones as written, the rest by search."""
    chosen: dict[int, Placement] = {}
    for i, w in enumerate(wanted):
        if w.start is None:
            continue
        placement = _fixed_placement(w, gpu, source)
        clash = next((j for j, p in chosen.items() if p.overlaps(placement)), None)
        if clash is not None:
            problem = f"placement {placement} overlaps {wanted[clash].where} at {chosen[clash]}"
            raise _fail(source, f"{w.where}.placement", gpu, problem)
        chosen[i] = placement
    free = [i for i, w in enumerate(wanted) if w.start is None]
    free.sort(key=lambda i: (-wanted[i].profile.placements[0].size, i))
    if not _search(free, lambda i: _candidates(wanted[i], gpu), chosen):
        names = " + ".join(w.profile.short_name for w in wanted)
        raise _fail(source, wanted[free[0]].where if free else "gpu", gpu, f"{names} do not fit")
    return [chosen[i] for i in range(len(wanted))]


def _candidates(w: _Wanted, gpu: GpuState) -> list[Placement]:
    """Placements to try: where this profile already has instances first, then lowest start."""
    existing = {g.placement for g in gpu.instances if g.profile_id == w.profile.id}
    return sorted(w.profile.placements, key=lambda p: (p not in existing, p.start))


def _search(
    order: list[int],
    candidates: Callable[[int], list[Placement]],
    chosen: dict[int, Placement],
) -> bool:
    """Depth-first placement search (at most 7 instances x 8 starts); fills `chosen` in place."""
    if not order:
        return True
    first, rest = order[0], order[1:]
    for placement in candidates(first):
        if profiles.fits(placement, tuple(chosen.values())):
            chosen[first] = placement
            if _search(rest, candidates, chosen):
                return True
            del chosen[first]
    return False


def _resolve_compute(
    w: _Wanted, gi_placement: Placement, gpu: GpuState, source: str
) -> tuple[TargetCompute, ...]:
    """The compute instances of one GPU instance, placed like GPU instances: fixed ones as
    written, the others by search, largest first (so `["1c...", "2c..."]` fits as it can)."""
    if w.spec.compute is None:
        default = gpu.profiles.default_ci(w.profile.id)
        if default is None:
            return ()
        return (TargetCompute(default, default.placements[0]),)
    wanted = [(c, _compute_profile(c, w, gpu, source)) for c in w.spec.compute]
    chosen: dict[int, Placement] = {}
    for i, (c, profile) in enumerate(wanted):
        if sum(1 for _, p in wanted[: i + 1] if p == profile) > profile.instances:
            raise _fail(
                source, c.where, gpu, f"more than {profile.instances} x {profile.short_name}"
            )
        if c.placement is not None:
            chosen[i] = _fixed_compute(c, profile, tuple(chosen.values()), gpu, source)
    free = [i for i, (c, _) in enumerate(wanted) if c.placement is None]
    free.sort(key=lambda i: (-wanted[i][1].slices, i))
    if not _search(free, lambda i: list(wanted[i][1].placements), chosen):
        names = " + ".join(p.short_name for _, p in wanted)
        raise _fail(
            source, wanted[free[0]][0].where, gpu, f"{names} do not fit in {w.profile.short_name}"
        )
    targets = (TargetCompute(p, chosen[i]) for i, (_, p) in enumerate(wanted))
    return tuple(sorted(targets, key=lambda t: t.placement))


def _compute_profile(c: ComputeSpec, w: _Wanted, gpu: GpuState, source: str) -> CiProfile:
    profile = profiles.resolve_ci(gpu.profiles, w.profile, c.profile)
    if profile is None and w.renamed_from and isinstance(c.profile, str):
        old = profiles.geometry_name(w.renamed_from)
        translated = c.profile.replace(old, w.profile.short_name)
        profile = profiles.resolve_ci(gpu.profiles, w.profile, translated)
    if profile is None:
        known = profiles.ci_names(gpu.profiles, w.profile)
        problem = (
            f'unknown compute profile "{c.profile}" for {w.profile.short_name}; known: {known}'
        )
        raise _fail(
            source, f"{c.where}.profile" if c.placement is not None else c.where, gpu, problem
        )
    return profile


def _fixed_compute(
    c: ComputeSpec, profile: CiProfile, used: tuple[Placement, ...], gpu: GpuState, source: str
) -> Placement:
    placement = next((p for p in profile.placements if p.start == c.placement), None)
    if placement is None:
        allowed = ", ".join(str(p.start) for p in profile.placements)
        problem = (
            f"placement {c.placement} not allowed for {profile.short_name}; allowed: {allowed}"
        )
        raise _fail(source, f"{c.where}.placement", gpu, problem)
    if not profiles.fits(placement, used):
        problem = f"{profile.short_name} at {placement} overlaps another compute instance"
        raise _fail(source, f"{c.where}.placement", gpu, problem)
    return placement
