"""What the verbs that read the host share: the layout file, one read of the GPUs, the plan,
and a result on stdout."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from migrestore import config, host, report
from migrestore.context import Context
from migrestore.events import log
from migrestore.model import DesiredNode, NodeState
from migrestore.plan import NodePlan, plan_node

if TYPE_CHECKING:  # annotations only
    from migrestore.interfaces import Detail


def emit(ctx: Context, text: str) -> None:
    """A verb's text result on stdout, marked when the host is simulated."""
    if ctx.simulate is not None:
        print(report.simulated_banner(str(ctx.simulate)))
    print(text)


def load_layout(ctx: Context) -> DesiredNode:
    """The layout file, refused if anyone but root could have written it (unless allowed)."""
    return config.load(ctx.config, root_only=not (ctx.allow_insecure_config or ctx.simulated))


def read(ctx: Context, *, details: Detail = "full") -> NodeState:
    """The host's GPUs, read once, in as much detail as the verb needs."""
    with host.gpus(ctx) as gpus:
        return gpus.read_state(details=details)


def container_driver(ctx: Context) -> str:
    """The GPU operator's trace of a containerized driver below the sysroot (its path), or "";
    a simulated host without --sysroot has no files of its own to show one."""
    if ctx.simulated and not ctx.sysroot_given:
        return ""
    from migrestore import owners  # only once NVML failed: the hot verbs stay light

    signs = owners.driver_container_signs(ctx.sysroot)
    return signs[0] if signs else ""


def planned(ctx: Context, *, details: Detail = "processes") -> NodePlan:
    """The layout file planned against a fresh read of the GPUs."""
    desired = load_layout(ctx)
    return warn_renamed(plan_node(desired, read(ctx, details=details)))


def warn_renamed(node: NodePlan) -> NodePlan:
    """Log each profile the driver names otherwise than the file (resolved by geometry), and each
    fleet entry for GPUs this host does not have."""
    for text in node.renamed:
        log.warning("profile_renamed", detail=text)
    for spec in node.absent:
        log.info("entry_selects_no_gpu_here", entry=spec.label, select=str(spec.selector))
    return node


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """`--json`: the result as one JSON document on stdout."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def seconds(text: str) -> float:
    """A finite, non-negative number of seconds (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value
