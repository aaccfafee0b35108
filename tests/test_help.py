"""Every verb and option explains itself in --help, and `simulate` actions say what they did.

In the fast tier, so a verb or option added without help text fails `./dev/test`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from migrestore import cli
from migrestore.cli import build_parser
from migrestore.verbs import VERBS

H100 = "NVIDIA H100 80GB HBM3"


def _undocumented(parser: argparse.ArgumentParser, name: str = "migrestore") -> list[str]:
    """Where the command line lacks a description or a help text, as `verb: option`."""
    missing = [] if parser.description else [f"{name}: description"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for verb, sub in action.choices.items():
                if not helps.get(verb):
                    missing.append(f"{name} {verb}: help")
                missing += _undocumented(sub, f"{name} {verb}")
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def _run(*argv: str) -> tuple[int, str, str]:
    """`migrestore ARGV...` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_every_verb_and_option_has_help() -> None:
    """Each parser has a description and each verb, option and argument a help text."""
    assert _undocumented(build_parser()) == []


def test_walker_finds_a_missing_help() -> None:
    """The walk reports an option without help and a verb without a description."""
    parser = argparse.ArgumentParser(description="top")
    parser.add_argument("--bare")
    sub = parser.add_subparsers(dest="verb")
    sub.add_parser("quiet")
    assert _undocumented(parser) == [
        "migrestore: --bare",
        "migrestore quiet: help",
        "migrestore quiet: description",
    ]


def test_simulate_init_refuses_to_overwrite(tmp_path: Path) -> None:
    """A second `simulate init` on one file is exit 2 in one line; with --force it replaces it."""
    state = str(tmp_path / "host.json")
    assert _run("simulate", "init", state, "--gpu", H100)[0] == 0
    before = Path(state).read_text()
    code, out, err = _run("simulate", "init", state, "--gpu", f"{H100}:2")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert "already exists" in err
    assert "--force" in err
    assert Path(state).read_text() == before
    code, out, _ = _run("simulate", "init", state, "--gpu", f"{H100}:2", "--force")
    assert code == 0
    assert out == f"SIMULATED host {state}: created: 2 x {H100}, driver 580.159.04, MIG off\n"


def test_every_simulate_action_reports_in_one_line(tmp_path: Path) -> None:
    """attach, detach, fault, driver, latency and reboot each print one SIMULATED line."""
    state = str(tmp_path / "host.json")
    assert _run("simulate", "init", state, "--gpu", H100)[0] == 0
    actions = [
        ("attach", "--gpu", "0", "--client", "nvsm", "--pid", "4242"),
        ("detach", "--gpu", "0", "--client", "nvsm"),
        ("fault", "--function", "nvmlDeviceSetMigMode", "--error", "NoPermission"),
        ("fault", "--function", "nvmlDeviceSetMigMode", "--error", "19", "--action", "kill-after"),
        ("driver", "--unload", "--reload-after", "5"),
        ("driver", "--load"),
        ("latency", "--scale", "0.5"),
        ("latency", "--model", "off"),
        ("reboot",),
    ]
    lines = []
    for action, *rest in actions:
        code, out, _ = _run("simulate", action, state, *rest)
        assert code == 0
        assert len(out.splitlines()) == 1
        assert out.startswith(f"SIMULATED host {state}: ")
        lines.append(out.split(": ", 1)[1].rstrip("\n"))
    assert lines == [
        "nvsm (pid 4242) attached to GPU 0",
        "nvsm detached from GPU 0",
        "fault armed: call 1 of nvmlDeviceSetMigMode from now fails with NoPermission",
        "fault armed: the process is killed after call 1 of nvmlDeviceSetMigMode from now",
        "driver unloaded, loads again in 5 s",
        "driver loaded",
        "latency of a real H200, scaled by 0.5",
        "latency off",
        "rebooted",
    ]


def _help(*argv: str) -> str:
    """What `migrestore ARGV...` prints for help (it exits 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main(list(argv))
    return out.getvalue()


def test_help_before_a_verb_still_lists_every_verb() -> None:
    """`migrestore --help verify` (and `-h`, `--he`) is the top-level help with all nine verbs,
    although a command naming its verb builds that verb's parser alone."""
    for flag in ("--help", "-h", "--he"):
        text = _help(flag, "verify")
        assert text.startswith("usage: migrestore [-h]"), flag
        assert all(f"    {verb.name}" in text for verb in VERBS), flag
    assert _help("verify", "--help").startswith("usage: migrestore verify [-h]")


def test_a_command_builds_the_parser_of_its_verb_only() -> None:
    """With a verb named and no help asked, the parser knows that one verb."""
    verb = cli._verb_named_in(["--config", "status", "verify", "--json"])
    assert verb == "verify"
    parser = build_parser(only=verb)
    [choices] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(choices.choices) == ["verify"]
    assert cli._verb_named_in(["verify", "-h"]) is None
    assert cli._verb_named_in(["--config", "x.toml"]) is None
