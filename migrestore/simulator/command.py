"""`migrestore simulate ...`: create and drive simulated hosts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from migrestore.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from migrestore.cli import Context


def _gpu_arg(text: str) -> tuple[str, int]:
    name, sep, count = text.rpartition(":")
    if sep and count.isdigit() and int(count) > 0:
        return name, int(count)
    if sep and not count.isdigit() and name:
        return text, 1
    if sep:
        raise ConfigError(f'--gpu "{text}": COUNT must be a positive integer')
    return text, 1


def _instance_arg(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    gi, _, ci = text.partition("/")
    if not gi.isdigit() or (ci and not ci.isdigit()):
        raise ConfigError(f'--instance "{text}": expected GI or GI/CI, e.g. 1/0')
    return int(gi), int(ci) if ci else None


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Dispatch one simulate action."""
    from migrestore import simulator

    action = args.action
    if action == "models":
        for line in simulator.models_text():
            print(line)
        return ExitCode.OK
    state = Path(args.state)
    if action == "init":
        sysroot = Path(args.sim_sysroot) if args.sim_sysroot else None
        simulator.init_host(
            state, [_gpu_arg(g) for g in args.gpu], driver=args.driver, sysroot=sysroot
        )
        print(f"SIMULATED host created in {state}")
    elif action == "reboot":
        simulator.reboot(state)
        print(f"SIMULATED host {state} rebooted")
    elif action == "attach":
        gi, ci = _instance_arg(args.instance)
        simulator.attach(state, args.gpu, args.client, gi_id=gi, ci_id=ci, pid=args.pid)
    elif action == "detach":
        simulator.detach(state, args.gpu, args.client)
    elif action == "fault":
        simulator.inject_fault(state, args.function, args.nth, args.error, action=args.fault_action)
    elif action == "driver" and args.unload:
        simulator.unload_driver(state, reload_after=args.reload_after)
    elif action == "driver":
        simulator.load_driver(state)
    elif action == "latency":
        model = None if args.model == "off" else simulator.DEFAULT_LATENCY
        simulator.set_latency(state, model, scale=args.scale)
    return ExitCode.OK
