"""The command line: argparse verbs, and the only place where exceptions become exit codes."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrestore import __version__
from migrestore.errors import ConfigError, ExitCode, MigrestoreError, one_line

DEFAULT_CONFIG = "/etc/migrestore/migrestore.toml"
DEFAULT_STATE_DIR = "/var/lib/migrestore"
DEFAULT_RUN_DIR = "/run/migrestore"
DEFAULT_SYSROOT = "/"


@dataclass(frozen=True)
class Context:
    """Global options, resolved once (flags beat MIGRESTORE_* environment variables)."""

    config: Path
    simulate: Path | None
    state_dir: Path
    run_dir: Path
    sysroot: Path
    sysroot_given: bool
    allow_insecure_config: bool
    debug: bool

    @property
    def simulated(self) -> bool:
        """Every verb runs against a simulated host."""
        return self.simulate is not None


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are ConfigErrors (one line, exit 2) like every other mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


class _Version(argparse.Action):
    """`--version`: also the NVML bindings in use and the driver (read only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from migrestore import nvml

        print(nvml.version_text(__version__))
        parser.exit()


def _globals(parser: argparse.ArgumentParser, *, after_verb: bool = False) -> None:
    """Options every verb takes, before or after the verb. After it they default to nothing, so
    that a value given before the verb stands."""

    def default(variable: str | None, fallback: object = None) -> Any:
        if after_verb:
            return argparse.SUPPRESS
        return os.environ.get(variable, fallback) if variable else fallback

    if not after_verb:
        parser.add_argument(
            "--version", action=_Version, nargs=0, help="versions of migrestore, pynvml, driver"
        )
    add = parser.add_argument
    add(
        "--config",
        default=default("MIGRESTORE_CONFIG", DEFAULT_CONFIG),
        help=f"layout file (default {DEFAULT_CONFIG})",
    )
    add(
        "--simulate",
        metavar="STATE",
        default=default("MIGRESTORE_SIMULATE"),
        help="use the simulated host in STATE instead of the driver",
    )
    add(
        "--state-dir",
        default=default("MIGRESTORE_STATE_DIR"),
        help=f"run records (default {DEFAULT_STATE_DIR})",
    )
    add(
        "--run-dir",
        default=default("MIGRESTORE_RUN_DIR"),
        help=f"lock file directory (default {DEFAULT_RUN_DIR})",
    )
    add(
        "--sysroot",
        default=default("MIGRESTORE_SYSROOT"),
        help="read /proc and write /dev below this directory (tests)",
    )
    add(
        "--allow-insecure-config",
        action="store_true",
        default=default(None, False),
        help="accept a layout file not owned by root or writable by others",
    )
    add(
        "--log-format",
        choices=("text", "json"),
        default=default("MIGRESTORE_LOG_FORMAT", "text"),
        help="logs on standard error as text lines or one JSON object a line (default text)",
    )
    add(
        "--debug",
        action="store_true",
        default=default(None, False),
        help="debug logs and tracebacks",
    )


def _verb(verbs: Any, name: str, text: str, *, globals_too: bool = True) -> argparse.ArgumentParser:
    """A verb's parser, its help line also its description; it takes the global options."""
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=text, description=text)
    if globals_too:
        _globals(parser, after_verb=True)
    return parser


def _verbs(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, text in (
        ("status", "show GPUs, MIG mode, instances and the last run"),
        ("plan", "show the steps apply would take"),
        ("verify", "exit 0 if the host matches the layout, 3 on drift, 4 if a reset is pending"),
    ):
        verb = _verb(verbs, name, text)
        verb.add_argument("--json", action="store_true", help="machine-readable output")
    apply = _verb(verbs, "apply", "restore the layout")
    apply.add_argument(
        "--force", action="store_true", help="destroy instances even if processes run on them"
    )
    apply.add_argument("--dry-run", action="store_true", help="only show the plan (same as `plan`)")
    apply.add_argument(
        "--boot",
        action="store_true",
        help="run as the boot service (wait for the driver, notify systemd)",
    )
    apply.add_argument("--json", action="store_true", help="machine-readable output")
    apply.add_argument(
        "--lock-wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for another run to finish (default 30)",
    )
    export = _verb(verbs, "export", "print the GPUs' current state as a layout file")
    how = export.add_mutually_exclusive_group()
    how.add_argument("--by-model", action="store_true", help="select GPUs by model where possible")
    how.add_argument("--by-index", action="store_true", help="select GPUs by index")
    check = _verb(verbs, "check", "validate the layout file offline, without a driver")
    check.add_argument(
        "--model",
        metavar="NAME",
        help="GPU model to check entries against (default: each entry's model)",
    )
    doctor = _verb(verbs, "doctor", "check whether this host can do MIG, and what is in the way")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    migparted = _verb(
        verbs, "import-mig-parted", "convert a mig-parted config to a layout file on stdout"
    )
    migparted.add_argument("file", help="mig-parted YAML config (version: v1)")
    migparted.add_argument(
        "--config-name", metavar="LABEL", help="which entry of mig-configs to convert"
    )
    migparted.add_argument(
        "--model", metavar="NAME", help="GPU model for entries without a device-filter"
    )
    simulate = _verb(
        verbs, "simulate", "create and drive a simulated host (no GPU needed)", globals_too=False
    )
    _simulate_verbs(simulate)


STATE_HELP = "the simulated host's JSON state file"


def _simulate_verbs(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = _verb(sub, "init", "create a simulated host, MIG off", globals_too=False)
    init.add_argument("state", help=STATE_HELP)
    init.add_argument(
        "--gpu",
        action="append",
        required=True,
        metavar="MODEL[:COUNT]",
        help="COUNT (default 1) GPUs of MODEL (see `simulate models`); repeatable",
    )
    init.add_argument(
        "--driver",
        default="580.159.04",
        metavar="VERSION",
        help="driver version, or a branch: 535.x, 550.x, 570.x, 580.x (default 580.159.04)",
    )
    init.add_argument("--sysroot", dest="sim_sysroot", help="also keep a fake /proc tree here")
    init.add_argument("--force", action="store_true", help="replace an existing state file")
    _verb(sub, "models", "list the GPU models the simulator knows", globals_too=False)
    reboot = _verb(
        sub,
        "reboot",
        "reboot the simulated host: MIG devices (and Hopper's MIG mode) are lost",
        globals_too=False,
    )
    reboot.add_argument("state", help=STATE_HELP)
    for name, text in (
        ("attach", "attach a driver client (blocks a reset) or a process on an instance"),
        ("detach", "detach every client or process of that name from a GPU"),
    ):
        client = _verb(sub, name, text, globals_too=False)
        client.add_argument("state", help=STATE_HELP)
        client.add_argument("--gpu", type=int, required=True, metavar="N", help="the GPU's index")
        client.add_argument("--client", required=True, metavar="NAME", help="the client's name")
        if name == "attach":
            client.add_argument("--instance", help="GI[/CI]: a process on that instance")
            client.add_argument("--pid", type=int, help="the process id (default: a made-up one)")
    fault = _verb(sub, "fault", "make the Nth call of an NVML function fail", globals_too=False)
    fault.add_argument("state", help=STATE_HELP)
    fault.add_argument(
        "--function", required=True, help="the NVML function, e.g. nvmlDeviceSetMigMode"
    )
    fault.add_argument("--nth", type=int, default=1, help="which call from now fails (default 1)")
    fault.add_argument(
        "--error", required=True, help="the NVML error, by name or number, e.g. NoPermission"
    )
    fault.add_argument(
        "--action",
        dest="fault_action",
        choices=("raise", "kill-before", "kill-after"),
        default="raise",
        help="raise the error (default), or kill the process just before or after the call",
    )
    driver = _verb(sub, "driver", "unload or load the simulated NVIDIA driver", globals_too=False)
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
    latency = _verb(sub, "latency", "switch the latency model on or off", globals_too=False)
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


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(prog="migrestore", description="Restore NVIDIA MIG partitioning.")
    _globals(parser)
    _verbs(parser)
    return parser


def _context(args: argparse.Namespace) -> Context:
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
    )


def _handler(args: argparse.Namespace) -> Callable[[Context, argparse.Namespace], int]:
    if args.verb == "simulate":
        from migrestore.simulator import command

        return command.run
    if args.verb == "apply":
        from migrestore import restore

        return restore.apply
    if args.verb == "doctor":
        from migrestore import doctor

        return doctor.run
    if args.verb == "import-mig-parted":
        from migrestore import migparted

        return migparted.run
    from migrestore import verbs

    handler: Callable[[Context, argparse.Namespace], int] = getattr(
        verbs, args.verb.replace("-", "_")
    )
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run one verb, map errors to exit codes (tracebacks only with --debug)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    _line_buffered()
    try:
        args = build_parser().parse_args(argv)
        from migrestore import events

        events.setup(args.log_format, args.debug)
        return _handler(args)(_context(args), args)
    except MigrestoreError as exc:
        return _fail(exc, exc.exit_code, debug)
    except KeyboardInterrupt:
        print("migrestore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`migrestore status | head`): not an error worth a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE
    except Exception as exc:  # the one boundary: anything else is a bug, reported in one line
        return _fail(exc, ExitCode.FAILURE, debug, bug=True)


def _line_buffered() -> None:
    """Each line goes out when it is complete, also into a pipe or the journal (where Python would
    buffer blocks): the per-GPU summary lands before systemd's "Started", in order with the logs."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not stream.line_buffering:
            stream.reconfigure(line_buffering=True)


def _fail(exc: BaseException, code: int, debug: bool, *, bug: bool = False) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    from migrestore.logs import journal_prefix

    hint = one_line(str(getattr(exc, "hint", "")))
    kind = f"internal error ({type(exc).__name__}): " if bug else ""
    message = one_line(f"{kind}{exc}")
    print(f"{journal_prefix(3)}migrestore: error: {message}", file=sys.stderr)
    if hint and hint != "retry":
        print(f"{journal_prefix(5)}migrestore: hint: {hint}", file=sys.stderr)
    _tell_systemd(f"FAILED: {message}")
    return int(code)


def _tell_systemd(status: str) -> None:
    """Under the boot unit, leave the failure in StatusText (no-op without NOTIFY_SOCKET)."""
    if os.environ.get("NOTIFY_SOCKET"):
        from migrestore.systemd import SdNotifier

        SdNotifier().status(status)
