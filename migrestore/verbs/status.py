"""`status`: every GPU with its MIG mode and instances, and the last run."""

from __future__ import annotations

import argparse

from migrestore import config, contract, report, runs
from migrestore.context import Context
from migrestore.errors import ConfigError, ExitCode
from migrestore.model import NodeState
from migrestore.plan import plan_node
from migrestore.verbs.common import add_json_flag, emit, read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`."""
    add_json_flag(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the host's state (always 0 when the GPUs can be read)."""
    state = read(ctx)
    last = runs.last(ctx.state_dir)
    if args.json:
        print(report.dumps(contract.versioned("status", report.state_json(state, last))))
    else:
        emit(ctx, report.state_text(state, last, *_unmanaged(ctx, state)))
    return ExitCode.OK


def _unmanaged(ctx: Context, state: NodeState) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """GPUs no entry manages, and those of them whose entry says `managed = false`, if the layout
    file can be read (status works without one)."""
    try:
        plan = plan_node(config.load(ctx.config), state)
    except ConfigError:
        return (), ()
    return tuple(g.uuid for g in plan.unmanaged), tuple(g.uuid for g in plan.handed_off)
