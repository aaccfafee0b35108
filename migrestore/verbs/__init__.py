"""The verbs, one module each, and the table the command line is built from.

Every verb module gives `HELP` (its one-line description), `add_arguments(parser)` and
`run(ctx, args) -> int`; `GLOBALS = False` where it takes no global options (`simulate`). The table
names modules, not objects, so that a command imports only the verb it runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from migrestore.context import Context


@dataclass(frozen=True)
class Verb:
    """One verb: its name on the command line and the module that implements it."""

    name: str
    help: str
    module: str

    def load(self) -> ModuleType:
        """The verb's module (imported on first use)."""
        return importlib.import_module(f"migrestore.verbs.{self.module}")

    def runner(self) -> Callable[[Context, argparse.Namespace], int]:
        """The verb's `run`."""
        run: Callable[[Context, argparse.Namespace], int] = self.load().run
        return run


VERBS = (
    Verb("status", "show GPUs, MIG mode, instances and the last run", "status"),
    Verb("plan", "show the steps apply would take", "plan"),
    Verb(
        "verify",
        "exit 0 if the host matches the layout, 3 on drift, 4 if a reset is pending",
        "verify",
    ),
    Verb("apply", "restore the layout", "apply"),
    Verb("export", "print the GPUs' current state as a layout file", "export"),
    Verb("check", "validate the layout file offline, without a driver", "check"),
    Verb("doctor", "check whether this host can do MIG, and what is in the way", "doctor"),
    Verb(
        "import-mig-parted",
        "convert a mig-parted config to a layout file on stdout",
        "import_mig_parted",
    ),
    Verb("simulate", "create and drive a simulated host (no GPU needed)", "simulate"),
)


def named(name: str) -> Verb | None:
    """The verb of this name, if there is one."""
    return next((verb for verb in VERBS if verb.name == name), None)
