"""`migrestore simulate ...`: create and drive simulated hosts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrestore.context import Context
from migrestore.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from migrestore.profiles import ModelInfo

GLOBALS = False  # the actions name their state file; the global options do not apply
STATE_HELP = "the simulated host's JSON state file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The actions, each with its own options."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = _action(sub, "init", "create a simulated host, MIG off")
    init.add_argument("state", help=STATE_HELP)
    init.add_argument(
        "--gpu",
        action="append",
        dest="gpus",
        type=lambda text: ("model", text),
        metavar="MODEL[:COUNT]",
        help="COUNT (default 1) GPUs of MODEL (see `simulate models`); repeatable",
    )
    init.add_argument(
        "--gpu-table",
        action="append",
        dest="gpus",
        type=lambda text: ("table", text),
        metavar="FILE[:COUNT]",
        help="COUNT (default 1) GPUs the catalogue does not know, defined by FILE (one entry "
        "in the catalogue's JSON format); repeatable, GPUs in command-line order",
    )
    init.add_argument(
        "--driver",
        default="580.159.04",
        metavar="VERSION",
        help="driver version, or a branch: 535.x, 550.x, 570.x, 580.x (default 580.159.04)",
    )
    init.add_argument("--sysroot", dest="sim_sysroot", help="also keep a fake /proc tree here")
    init.add_argument(
        "--nvswitch",
        action="store_true",
        help="an HGX baseboard: the GPUs link through 6 NVSwitches, Fabric Manager active",
    )
    init.add_argument("--force", action="store_true", help="replace an existing state file")
    _action(sub, "models", "list the GPU models the simulator knows")
    reboot = _action(
        sub,
        "reboot",
        "reboot the simulated host: MIG devices (and Hopper's MIG mode) are lost",
    )
    reboot.add_argument("state", help=STATE_HELP)
    for name, text in (
        ("attach", "attach a driver client (blocks a reset) or a process on an instance"),
        ("detach", "detach every client or process of that name from a GPU"),
    ):
        client = _action(sub, name, text)
        client.add_argument("state", help=STATE_HELP)
        client.add_argument("--gpu", type=int, required=True, metavar="N", help="the GPU's index")
        client.add_argument("--client", required=True, metavar="NAME", help="the client's name")
        if name == "attach":
            client.add_argument("--instance", help="GI[/CI]: a process on that instance")
            client.add_argument("--pid", type=int, help="the process id (default: a made-up one)")
    fault = _action(sub, "fault", "make the Nth call of an NVML function fail")
    fault.add_argument("state", help=STATE_HELP)
    fault.add_argument(
        "--function", required=True, help="the NVML function, e.g. nvmlDeviceSetMigMode"
    )
    fault.add_argument("--nth", type=int, default=1, help="which call from now fails (default 1)")
    fault.add_argument(
        "--error", help="the NVML error, by name or number, e.g. NoPermission (not with lose)"
    )
    fault.add_argument(
        "--action",
        dest="fault_action",
        choices=("raise", "kill-before", "kill-after", "lose"),
        default="raise",
        help="raise the error (default), kill the process just before or after the call, or "
        "lose the --gpu GPU just before it",
    )
    fault.add_argument("--gpu", type=int, metavar="N", help="with --action lose: the GPU's index")
    driver = _action(sub, "driver", "unload or load the simulated NVIDIA driver")
    driver.add_argument("state", help=STATE_HELP)
    what = driver.add_mutually_exclusive_group(required=True)
    what.add_argument("--unload", action="store_true", help="NVML answers DriverNotLoaded")
    what.add_argument("--load", action="store_true", help="load the driver now")
    driver.add_argument(
        "--reload-after",
        type=float,
        metavar="SECONDS",
        help="with --unload: the driver comes back by itself after this long",
    )
    fabric = _action(
        sub,
        "fabric-manager",
        "start or stop nvidia-fabricmanager on a simulated NVSwitch host",
    )
    fabric.add_argument("state", help=STATE_HELP)
    running = fabric.add_mutually_exclusive_group(required=True)
    running.add_argument("--active", action="store_true", help="Fabric Manager runs")
    running.add_argument(
        "--inactive",
        action="store_true",
        help="Fabric Manager is stopped: an Ampere GPU is reset only with all its NVLink peers",
    )
    latency = _action(sub, "latency", "switch the latency model on or off")
    latency.add_argument("state", help=STATE_HELP)
    latency.add_argument(
        "--model",
        choices=("h200", "off"),
        default="h200",
        help="NVML calls as slow as on a real H200 (default), or no delays",
    )
    latency.add_argument(
        "--scale", type=float, default=1.0, metavar="X", help="multiply the delays by X"
    )


def _action(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    """An action's parser, its help line also its description."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    return parser


def _gpu_arg(text: str) -> tuple[str, int]:
    name, sep, count = text.rpartition(":")
    if sep and count.isdigit() and int(count) > 0:
        return name, int(count)
    if sep and not count.isdigit() and name:
        return text, 1
    if sep:
        raise ConfigError(f'--gpu "{text}": COUNT must be a positive integer')
    return text, 1


def _gpu_or_table(kind: str, text: str) -> tuple[str | ModelInfo, int]:
    """`--gpu MODEL[:COUNT]` as given; `--gpu-table FILE[:COUNT]` as the model FILE defines."""
    name, count = _gpu_arg(text)
    if kind == "model":
        return name, count
    from migrestore.simulator import gpu_table

    return gpu_table.load(Path(name)), count


def _label(gpu: str | ModelInfo) -> str:
    if isinstance(gpu, str):
        return gpu
    device = f"0x{gpu.pci_device_ids[0]:08X}"
    return f"{gpu.name} (device id {device}, not in the catalogue)"


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
        return _fault(state, args)
    if action == "fabric-manager":
        simulator.set_fabric_manager(state, args.active)
        return f"Fabric Manager {'active' if args.active else 'not active'}"
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
    if not args.gpus:
        raise ConfigError("simulate init needs at least one --gpu MODEL or --gpu-table FILE")
    gpus = [_gpu_or_table(kind, text) for kind, text in args.gpus]
    sysroot = Path(args.sim_sysroot) if args.sim_sysroot else None
    nvswitches = simulator.HGX_NVSWITCHES if args.nvswitch else 0
    simulator.init_host(state, gpus, driver=args.driver, sysroot=sysroot, nvswitches=nvswitches)
    made = ", ".join(f"{count} x {_label(gpu)}" for gpu, count in gpus)
    board = f", {nvswitches} NVSwitches, Fabric Manager active" if nvswitches else ""
    return f"created: {made}, driver {driver_version(args.driver)}{board}, MIG off"


def _fault(state: Path, args: argparse.Namespace) -> str:
    """Arm one fault; `--error` for raise and kill-*, `--gpu` for lose (and only there)."""
    from migrestore import simulator

    lose = args.fault_action == "lose"
    if lose and (args.gpu is None or args.error is not None):
        raise ConfigError("simulate fault --action lose takes --gpu N and no --error")
    if not lose and (args.error is None or args.gpu is not None):
        raise ConfigError(f"simulate fault --action {args.fault_action} takes --error and no --gpu")
    error = "GpuIsLost" if lose else args.error
    gpu = args.gpu if lose else -1
    simulator.inject_fault(state, args.function, args.nth, error, action=args.fault_action, gpu=gpu)
    call = f"call {args.nth} of {args.function} from now"
    if lose:
        return f"fault armed: GPU {args.gpu} falls off the bus just before {call}"
    if args.fault_action == "raise":
        return f"fault armed: {call} fails with {args.error}"
    when = args.fault_action.removeprefix("kill-")
    return f"fault armed: the process is killed {when} {call}"
