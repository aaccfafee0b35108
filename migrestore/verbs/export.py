"""`export`: the current state as a layout file that `apply` reproduces and `verify` accepts."""

from __future__ import annotations

import argparse

from migrestore import writer
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.verbs.common import read

# The flags `--by` replaces; they keep working (a script written for 0.1.0 must not break).
_DEPRECATED = {"--by-model": "model", "--by-index": "index"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--by`: how the written entries select their GPU; the old flags as its aliases."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--by",
        choices=writer.SELECT_BY,
        default="uuid",
        help="select each GPU by UUID (default), PCI bus id (survives a GPU replacement), "
        "index (with the GPU count) or model where possible",
    )
    for flag, value in _DEPRECATED.items():
        how.add_argument(
            flag,
            dest="by",
            action="store_const",
            const=value,
            help=f"deprecated: the same as --by {value}",
        )


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the layout file on stdout."""
    print(writer.dump(read(ctx, details="layout"), select_by=args.by), end="")
    return ExitCode.OK
