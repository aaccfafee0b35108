"""`plan`: the steps `apply` would take, per GPU, in order."""

from __future__ import annotations

import argparse

from migrestore import contract, report
from migrestore.context import Context
from migrestore.errors import ExitCode, MigrestoreError
from migrestore.verbs.common import add_json_flag, emit, planned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`."""
    add_json_flag(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the plan; nothing is changed. Exit 1, naming them in one line, when a GPU cannot be
    planned: of another model than its entry names, unreadable, named but not present, or
    replaced in its slot (and not adopted)."""
    node = planned(ctx)
    if args.json:
        document = {"simulated": ctx.simulated, **report.plan_json(node)}
        print(report.dumps(contract.versioned("plan", document)))
    else:
        emit(ctx, report.plan_text(node))
    not_planned = [
        *(f"{m.gpu.label} (not the model its entry names)" for m in node.mismatched),
        *(f"{u.label} (cannot be read)" for u in node.unreadable),
        *(f"{s.label} (select {s.selector}: no such GPU)" for s in node.missing),
        *(
            f"{r.spec.label} (select {r.spec.selector}: GPU replaced in its slot {r.gpu.pci})"
            for r in node.replaced
            if not r.adopted
        ),
    ]
    if not_planned:
        raise MigrestoreError(f"cannot plan {'; '.join(not_planned)}")
    return ExitCode.OK
