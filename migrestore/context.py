"""The global options every verb runs with, resolved once (flags beat MIGRESTORE_* variables).

Only the standard library: every module may import this one, and it imports none of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = "/etc/migrestore/migrestore.toml"
DEFAULT_STATE_DIR = "/var/lib/migrestore"
DEFAULT_RUN_DIR = "/run/migrestore"
DEFAULT_SYSROOT = "/"


@dataclass(frozen=True)
class Context:
    """Where the layout, the run records, the lock and /proc are, and how to treat them."""

    config: Path
    simulate: Path | None
    state_dir: Path
    run_dir: Path
    sysroot: Path
    sysroot_given: bool
    allow_insecure_config: bool
    debug: bool
    verbosity: int = 0  # -1 with -q (errors only), 1 with -v (the events on a terminal too)

    @property
    def simulated(self) -> bool:
        """Every verb runs against a simulated host."""
        return self.simulate is not None


def from_args(args: argparse.Namespace) -> Context:
    """The context of the parsed global options; a simulated host keeps its records beside it."""
    simulate = Path(args.simulate) if args.simulate else None
    base = f"{simulate}." if simulate else ""
    return Context(
        config=Path(args.config),
        simulate=simulate,
        state_dir=Path(args.state_dir or (f"{base}lib" if simulate else DEFAULT_STATE_DIR)),
        run_dir=Path(args.run_dir or (f"{base}run" if simulate else DEFAULT_RUN_DIR)),
        sysroot=Path(args.sysroot or DEFAULT_SYSROOT),
        sysroot_given=bool(args.sysroot),
        allow_insecure_config=args.allow_insecure_config,
        debug=args.debug,
        verbosity=verbosity(args),
    )


def verbosity(args: argparse.Namespace) -> int:
    """-1 for `-q`, 1 for `-v`, else 0 (the parser refuses both at once)."""
    return -1 if getattr(args, "quiet", False) else 1 if getattr(args, "verbose", False) else 0
