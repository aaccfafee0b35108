"""`plan`: the steps `apply` would take, per GPU, in order."""

from __future__ import annotations

import argparse

from migrestore import contract, report
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.verbs.common import add_json_flag, emit, planned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`."""
    add_json_flag(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the plan; nothing is changed."""
    node = planned(ctx)
    if args.json:
        document = {"simulated": ctx.simulated, **report.plan_json(node)}
        print(report.dumps(contract.versioned("plan", document)))
    else:
        emit(ctx, report.plan_text(node))
    return ExitCode.OK
