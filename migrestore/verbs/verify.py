"""`verify`: does the host match the layout file? 0 in sync, 3 drift, 4 a reset pending."""

from __future__ import annotations

import argparse

from migrestore import report
from migrestore.context import Context
from migrestore.errors import ExitCode
from migrestore.plan import NodePlan
from migrestore.verbs.common import add_json_flag, emit, planned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`."""
    add_json_flag(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the differences and exit with the verdict."""
    node = planned(ctx, details="layout")
    if args.json:
        print(report.dumps({"simulated": ctx.simulated, **report.plan_json(node)}))
    else:
        emit(ctx, report.drift_text(node))
    return verdict(node)


def verdict(node: NodePlan) -> ExitCode:
    """The exit status of `verify` for a plan (1: a GPU cannot be read)."""
    if node.unreadable:
        return ExitCode.FAILURE
    if node.is_empty:
        return ExitCode.OK
    return ExitCode.PENDING if node.reset_pending else ExitCode.DRIFT
