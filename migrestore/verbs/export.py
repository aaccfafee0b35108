"""`export`: the current state as a layout file that `apply` reproduces and `verify` accepts."""

from __future__ import annotations

import argparse

from migrestore import writer
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.verbs.common import read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """How the written entries select their GPU."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--by-model", action="store_true", help="select GPUs by model where possible")
    how.add_argument("--by-index", action="store_true", help="select GPUs by index")


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the layout file on stdout."""
    select_by = "model" if args.by_model else "index" if args.by_index else "uuid"
    print(writer.dump(read(ctx, details="layout"), select_by=select_by), end="")
    return ExitCode.OK
