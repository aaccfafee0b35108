"""The read-only verbs: status, plan, verify, export, check. Each is a few lines of data flow."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from migrestore import config, host, report, runs
from migrestore.errors import ConfigError, ExitCode
from migrestore.events import log
from migrestore.interfaces import Detail
from migrestore.model import DesiredNode, NodeState
from migrestore.plan import NodePlan, plan_node

if TYPE_CHECKING:
    from migrestore.cli import Context


def emit(ctx: Context, text: str) -> None:
    """A verb's text result on stdout, marked when the host is simulated."""
    if ctx.simulate is not None:
        print(report.simulated_banner(str(ctx.simulate)))
    print(text)


def load_layout(ctx: Context) -> DesiredNode:
    """The layout file, refused if anyone but root could have written it (unless allowed)."""
    desired = config.load(ctx.config)
    if not (ctx.allow_insecure_config or ctx.simulated):
        config.check_ownership(ctx.config)
    return desired


def read(ctx: Context, *, details: Detail = "full") -> NodeState:
    """The host's GPUs, read once, in as much detail as the verb needs."""
    with host.gpus(ctx) as gpus:
        return gpus.read_state(details=details)


def status(ctx: Context, args: argparse.Namespace) -> int:
    """Every GPU with its MIG mode and instances, and the last run."""
    state = read(ctx)
    last = runs.last(ctx.state_dir)
    if args.json:
        print(report.dumps(report.state_json(state, last)))
    else:
        emit(ctx, report.state_text(state, last, _unmanaged(ctx, state)))
    return ExitCode.OK


def _unmanaged(ctx: Context, state: NodeState) -> tuple[str, ...]:
    """GPUs no entry selects, if the layout file can be read (status works without one)."""
    try:
        return tuple(g.uuid for g in plan_node(config.load(ctx.config), state).unmanaged)
    except ConfigError:
        return ()


def _plan(ctx: Context, *, details: Detail = "processes") -> NodePlan:
    desired = load_layout(ctx)
    return warn_renamed(plan_node(desired, read(ctx, details=details)))


def warn_renamed(node: NodePlan) -> NodePlan:
    """Log each profile the driver names otherwise than the file (resolved by geometry)."""
    for text in node.renamed:
        log.warning("profile_renamed", detail=text)
    return node


def plan(ctx: Context, args: argparse.Namespace) -> int:
    """The steps `apply` would take, per GPU, in order."""
    node = _plan(ctx)
    if args.json:
        print(report.dumps({"simulated": ctx.simulated, **report.plan_json(node)}))
    else:
        emit(ctx, report.plan_text(node))
    return ExitCode.OK


def verify(ctx: Context, args: argparse.Namespace) -> int:
    """0 in sync, 3 drift, 4 a reset or reboot pending."""
    node = _plan(ctx, details="layout")
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


def export(ctx: Context, args: argparse.Namespace) -> int:
    """The current state as a layout file that `apply` reproduces and `verify` accepts."""
    select_by = "model" if args.by_model else "index" if args.by_index else "uuid"
    print(config.dump(read(ctx, details="layout"), select_by=select_by), end="")
    return ExitCode.OK


def check(ctx: Context, args: argparse.Namespace) -> int:
    """Validate the layout file offline against modelled GPUs."""
    from migrestore import offline

    desired = config.load(ctx.config)
    lines = offline.check(desired, args.model)
    print("\n".join(lines))
    return ExitCode.OK
