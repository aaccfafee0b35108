"""`check`: validate the layout file offline against modelled GPUs, with no driver."""

from __future__ import annotations

import argparse
from pathlib import Path

from migrestore import config, offline
from migrestore.context import Context
from migrestore.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`: the GPU that entries selecting by identity are checked against;
    `--profile-table`: a driver's captured profile table to check against instead."""
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


def run(ctx: Context, args: argparse.Namespace) -> int:
    """One line per entry; exit 2 at the first entry that does not resolve (an entry for a
    device id the catalogue does not know is a `not checkable offline` line, exit 0)."""
    desired = config.load(ctx.config)
    table = None
    if args.profile_table is not None:
        from migrestore import profile_table

        table = profile_table.load(args.profile_table)
    print("\n".join(offline.check(desired, args.model, table)))
    return ExitCode.OK
