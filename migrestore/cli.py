"""The command line: the global options, the verbs of `verbs.VERBS`, and the only place where
exceptions become exit codes."""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from migrestore import __version__, context
from migrestore.context import DEFAULT_CONFIG, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR
from migrestore.errors import ConfigError, ExitCode, MigrestoreError, one_line
from migrestore.verbs import VERBS, named


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are ConfigErrors (one line, exit 2) like every other mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


class _Version(argparse.Action):
    """`--version`: also the NVML bindings in use and the driver (read only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from migrestore import bindings

        print(bindings.version_text(__version__))
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
    add(
        "-v",
        "--verbose",
        action="store_true",
        default=default(None, False),
        help="also show the events (each step) on a terminal; they always go to the journal",
    )
    add(
        "-q",
        "--quiet",
        action="store_true",
        default=default(None, False),
        help="print only errors",
    )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, that verb alone, so that a command imports and builds
    the one verb it runs (`_verb_named_in` asks for all of them when help is wanted)."""
    parser = _Parser(prog="migrestore", description="Restore NVIDIA MIG partitioning.")
    _globals(parser)
    choices = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        if only in (None, verb.name):
            sub = choices.add_parser(verb.name, help=verb.help, description=verb.help)
            module = verb.load()
            if getattr(module, "GLOBALS", True):
                _globals(sub, after_verb=True)
            module.add_arguments(sub)
    return parser


class _NotYet(Exception):
    """The first look at the command line found no verb it could name."""


class _VerbFinder(argparse.ArgumentParser):
    """The global options and a verb, nothing else: which verb's options to load."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _NotYet(message)


def _verb_named_in(argv: Sequence[str] | None) -> str | None:
    """The verb the command line names (argparse reads the global options' values), if any; none
    when help is asked for, which lists every verb."""
    finder = _VerbFinder(add_help=False)
    _globals(finder, after_verb=True)
    finder.add_argument("-h", "--help", action="store_true")
    finder.add_argument("verb", nargs="?")
    try:
        seen, _ = finder.parse_known_args(argv)
    except _NotYet:
        return None
    if seen.help:
        return None
    return seen.verb if named(seen.verb or "") else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run one verb, map errors to exit codes (tracebacks only with --debug)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    _line_buffered()
    try:
        with _collector_paused():
            args = build_parser(only=_verb_named_in(argv)).parse_args(argv)
            from migrestore import events

            if getattr(args, "quiet", False) and getattr(args, "verbose", False):
                raise ConfigError("-q/--quiet and -v/--verbose exclude each other")
            events.setup(args.log_format, args.debug, context.verbosity(args))
            verb = named(args.verb)
            assert verb is not None  # argparse allows only the table's verbs
            run, ctx = verb.runner(), context.from_args(args)
        return run(ctx, args)
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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while the command line is read and the verb's modules load: start-up
    builds modules, classes and parsers that all live until exit, so a collection would walk a
    growing heap and free nothing. The collector is back on (if it was) before the verb runs."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def entry() -> int:
    """The `migrestore` program (the console script, /usr/bin/migrestore, `python -m`): `main` on
    the process's arguments; the caller exits with the result.

    The process ends right after, so everything it built is frozen out of the garbage collector:
    the interpreter's final collection would walk every module, class and parser only to find
    cycles the operating system frees with the process anyway. atexit handlers still run, and
    standard output and error are still flushed.
    """
    code = main()
    gc.freeze()
    return code


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
    from migrestore.logs import report_error

    hint = one_line(str(getattr(exc, "hint", "")))
    kind = f"internal error ({type(exc).__name__}): " if bug else ""
    message = one_line(f"{kind}{exc}")
    report_error(message, hint if hint != "retry" else "")
    _tell_systemd(f"FAILED: {message}")
    return int(code)


def _tell_systemd(status: str) -> None:
    """Under the boot unit, leave the failure in StatusText (no-op without NOTIFY_SOCKET)."""
    if os.environ.get("NOTIFY_SOCKET"):
        from migrestore.systemd import SdNotifier

        SdNotifier().status(status)
