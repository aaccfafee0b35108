"""`check`: validate the layout file (with its drop-ins) against this host's GPUs, read-only, or,
with no driver loaded or given `--model`/`--profile-table`, offline against modelled GPUs.
`--show` prints the file as merged with its drop-ins instead."""

from __future__ import annotations

import argparse
from pathlib import Path

from migrestore import config, consumer_rules, offline
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.model import Consumer, DesiredNode, ProfileTable

# Present while the NVIDIA kernel module is loaded: then `check` reads the host's own GPUs.
DRIVER_LOADED = "proc/driver/nvidia/version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`: the GPU that entries selecting by identity are checked against;
    `--profile-table`: a driver's captured profile table to check against instead;
    `--show`: print the merged layout;
    `--consumer`: also warn about layouts this consumer of MIG devices refuses (offline)."""
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="GPU model to check entries against offline (default: each entry's model)",
    )
    parser.add_argument(
        "--profile-table",
        metavar="FILE",
        type=Path,
        help="check against this captured `nvidia-smi mig -lgip` and `-lgipp` output",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="print the layout file merged with its conf.d drop-ins, each part's file named",
    )
    parser.add_argument(
        "--consumer",
        choices=[c.value for c in Consumer],
        help="warn about layouts this consumer refuses; exit 6 if there are any "
        "(default: [restore] consumer)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    """One line per entry (offline) or per GPU (on a GPU host); exit 2 at the first entry that
    does not resolve (an entry for a device id the catalogue does not know is a `not checkable
    offline` line, exit 0); with a consumer, one warning line per problem it has with the layout and
    exit 6 if there is any."""
    if args.show:
        print(_shown(config.merged(ctx.config)), end="")
        return ExitCode.OK
    desired = config.load(ctx.config)
    offline_wanted = any(
        option is not None for option in (args.model, args.profile_table, args.consumer)
    )
    if not offline_wanted and (ctx.simulated or _host_driver(ctx.sysroot)):
        return _check_host(ctx, desired)
    table = None
    if args.profile_table is not None:
        from migrestore import profile_table

        table = profile_table.load(args.profile_table)
    print("\n".join(offline.check(desired, args.model, table)))
    consumer = Consumer(args.consumer) if args.consumer else desired.restore.consumer
    if consumer is None:
        return ExitCode.OK
    problems = consumer_problems(desired, consumer, args.model, table)
    for problem in problems:
        print(problem)
    print(f"{consumer}: {len(problems) or 'no'} problem(s) with this layout")
    return ExitCode.CONSUMER_WARNINGS if problems else ExitCode.OK


def _host_driver(sysroot: Path) -> bool:
    """The NVIDIA kernel module is loaded and NVML is the host's: not when the GPU operator runs
    the driver in a container (the module is in the host's kernel, NVML only in the container)."""
    from migrestore import owners

    return (sysroot / DRIVER_LOADED).exists() and not owners.driver_container_signs(sysroot)


def _shown(merged: config.Merged) -> str:
    """The merged layout as TOML, each `[restore]` key and `[[gpu]]` entry with its file."""
    from migrestore import writer

    header = [
        f"{merged.node.source} as migrestore reads it, merged with its drop-ins in this order:",
        *(f"  {name}" for name in merged.files[1:]),
    ]
    if len(merged.files) == 1:
        header = [f"{merged.node.source} as migrestore reads it (no drop-ins)"]
    replaced = {id(new): old for new, old in merged.replaced}
    notes = []
    for spec in merged.node.gpus:
        note = f"from {spec.source or merged.node.source} {spec.where}"
        old = replaced.get(id(spec))
        if old is not None:
            note += f", replacing {old.source or merged.node.source} {old.where} (same selector)"
        notes.append((note,))
    restore = {key: f"from {source}" for key, source in merged.restore_from}
    return writer.layout_text(merged.node, header, restore, notes)


def _check_host(ctx: Context, desired: DesiredNode) -> int:
    """Resolve every entry against the GPUs it selects on this host (or the simulated one), read
    as `verify` reads them: nothing is changed. Exit 2 for a file that cannot apply here (as
    `apply` would), 1 when a GPU it names is missing, replaced in its slot (not adopted), of
    another model or cannot be read, or NVML counts another number than index entries expect."""
    from migrestore import layout, report, runs
    from migrestore.plan import UNREAD_TABLE, plan_node
    from migrestore.selection import match, uncounted_index_entries
    from migrestore.verbs.common import emit, read

    state = read(ctx, details="layout")
    slots = runs.last_slots(ctx.state_dir)
    node = plan_node(desired, state, slots)  # what apply would refuse, refused the same way
    strict = desired.restore.strict_profile_names
    selection = match(desired, state, slots)
    unplanned = {g.uuid for g in node.unplanned}
    lines = []
    for planned in node.gpus:
        gpu, spec = planned.gpu, selection.spec_for(planned.gpu.uuid)
        assert spec is not None
        if gpu.uuid in unplanned:
            lines.append(f"{spec.label} ({spec.selector}) on {gpu.label}: {UNREAD_TABLE}")
            continue
        target = layout.resolve(spec, gpu, desired.source, strict=strict)
        lines.append(f"{spec.label} ({spec.selector}) on {gpu.label}: {offline.describe(target)}")
        lines += [f"warning: {renamed}" for renamed in target.renamed]
    lines += [f"missing: no GPU matches {s.label} (select {s.selector})" for s in node.missing]
    swapped = [r for r in node.replaced if not r.adopted]
    lines += [f"{r.describe()}; not adopted" for r in swapped]
    lines += [f"warning: {s.label}: {offline.UNCOUNTED}" for s in uncounted_index_entries(desired)]
    lines += [f"{m.gpu.label}: {m.problem}" for m in node.mismatched]
    lines += [f"{u.label}: cannot be read: {u.error}" for u in node.unreadable]
    lines += [f"{g.label}: unmanaged (no [[gpu]] entry selects it)" for g in node.unmanaged]
    lines += report.absent_lines(node)
    if not lines:
        lines.append(f"{desired.source}: valid, no [[gpu]] entries (restores nothing)")
    emit(ctx, "\n".join(lines))
    failed = node.missing or swapped or node.mismatched or node.unreadable
    return ExitCode.FAILURE if failed else ExitCode.OK


def consumer_problems(
    desired: DesiredNode, consumer: Consumer, model: str | None, table: ProfileTable | None
) -> list[consumer_rules.Problem]:
    """What `consumer` has against the layout, entry by entry (those that cannot be checked
    offline left out: their lines say so)."""
    entries = [
        consumer_rules.Entry(
            r.spec.label, str(r.spec.selector), r.gpu_name, r.target, desired.on_failure(r.spec)
        )
        for r in offline.resolve(desired, model, table)
        if r.target is not None
    ]
    return consumer_rules.check(consumer, entries)
