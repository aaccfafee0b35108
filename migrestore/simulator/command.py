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
    """Dispatch one simulate action; each reports what it did in one line."""
    from migrestore import simulator

    if args.action == "models":
        for line in simulator.models_text():
            print(line)
        return ExitCode.OK
    print(f"SIMULATED host {args.state}: {_act(Path(args.state), args)}")
    return ExitCode.OK


def _act(state: Path, args: argparse.Namespace) -> str:
    """Carry out one action on the host in `state`; what was done, in words."""
    from migrestore import simulator

    action = args.action
    if action == "init":
        return _init(state, args)
    if action == "reboot":
        simulator.reboot(state)
        return "rebooted"
    if action == "attach":
        gi, ci = _instance_arg(args.instance)
        pid = simulator.attach(state, args.gpu, args.client, gi_id=gi, ci_id=ci, pid=args.pid)
        where = (
            f"instance {args.instance} of GPU {args.gpu}" if args.instance else f"GPU {args.gpu}"
        )
        return f"{args.client} (pid {pid}) attached to {where}"
    if action == "detach":
        simulator.detach(state, args.gpu, args.client)
        return f"{args.client} detached from GPU {args.gpu}"
    if action == "fault":
        simulator.inject_fault(state, args.function, args.nth, args.error, action=args.fault_action)
        return _fault_text(args)
    if action == "driver" and args.unload:
        simulator.unload_driver(state, reload_after=args.reload_after)
        later = "" if args.reload_after is None else f", loads again in {args.reload_after:g} s"
        return f"driver unloaded{later}"
    if action == "driver":
        simulator.load_driver(state)
        return "driver loaded"
    model = None if args.model == "off" else simulator.DEFAULT_LATENCY
    simulator.set_latency(state, model, scale=args.scale)
    return "latency off" if model is None else f"latency of a real H200, scaled by {args.scale:g}"


def _init(state: Path, args: argparse.Namespace) -> str:
    from migrestore import simulator
    from migrestore.simulator.host import driver_version

    if state.exists() and not args.force:
        raise ConfigError(f"{state} already exists; give --force to replace that simulated host")
    gpus = [_gpu_arg(g) for g in args.gpu]
    sysroot = Path(args.sim_sysroot) if args.sim_sysroot else None
    simulator.init_host(state, gpus, driver=args.driver, sysroot=sysroot)
    made = ", ".join(f"{count} x {name}" for name, count in gpus)
    return f"created: {made}, driver {driver_version(args.driver)}, MIG off"


def _fault_text(args: argparse.Namespace) -> str:
    call = f"call {args.nth} of {args.function} from now"
    if args.fault_action == "raise":
        return f"fault armed: {call} fails with {args.error}"
    when = args.fault_action.removeprefix("kill-")
    return f"fault armed: the process is killed {when} {call}"
