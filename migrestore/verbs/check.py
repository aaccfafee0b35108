"""`check`: validate the layout file offline against modelled GPUs, with no driver."""

from __future__ import annotations

import argparse
from pathlib import Path

from migrestore import config, consumer_rules, offline
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.model import Consumer, DesiredNode, ProfileTable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`: the GPU that entries selecting by identity are checked against;
    `--profile-table`: a driver's captured profile table to check against instead;
    `--consumer`: also warn about layouts this consumer of MIG devices refuses."""
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="GPU model to check entries against (default: each entry's model)",
    )
    parser.add_argument(
        "--profile-table",
        metavar="FILE",
        type=Path,
        help="check against this captured `nvidia-smi mig -lgip` and `-lgipp` output",
    )
    parser.add_argument(
        "--consumer",
        choices=[c.value for c in Consumer],
        help="warn about layouts this consumer refuses; exit 6 if there are any "
        "(default: [restore] consumer)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    """One line per entry; exit 2 at the first entry that does not resolve; with a consumer,
    one warning line per problem it has with the layout and exit 6 if there is any."""
    desired = config.load(ctx.config)
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


def consumer_problems(
    desired: DesiredNode, consumer: Consumer, model: str | None, table: ProfileTable | None
) -> list[consumer_rules.Problem]:
    """What `consumer` has against the layout, entry by entry."""
    entries = [
        consumer_rules.Entry(
            spec.where, str(spec.selector), info.name, target, desired.on_failure(spec)
        )
        for spec, info, target in offline.resolve(desired, model, table)
    ]
    return consumer_rules.check(consumer, entries)
