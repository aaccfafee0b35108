"""`check`: validate the layout file offline against modelled GPUs, with no driver."""

from __future__ import annotations

import argparse

from migrestore import config, offline
from migrestore.context import Context
from migrestore.errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`: the GPU that entries selecting by identity are checked against."""
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="GPU model to check entries against (default: each entry's model)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    """One line per entry; exit 2 at the first entry that does not resolve."""
    desired = config.load(ctx.config)
    print("\n".join(offline.check(desired, args.model)))
    return ExitCode.OK
