"""Every kind of event has one stable MESSAGE_ID, and migrestore(8) lists them all (issue 13)."""

from __future__ import annotations

import ast
import re

from migrestore.messages import ERROR, KINDS, MESSAGE_IDS

from .simhost import ROOT

LEVELS = {"debug", "info", "warning", "error", "critical", "exception"}


def _is_log_method(node: ast.AST) -> bool:
    """`log.info` and the other level methods of the events logger."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in LEVELS
        and isinstance(node.value, ast.Name)
        and node.value.id == "log"
    )


def logged_events() -> dict[str, list[str]]:
    """Every event name passed to the logger in migrestore/, with where; a name that is not a
    string literal is recorded as `<not a literal>`. Calls through a variable bound to a log
    method (`level = log.info if ok else log.error`) count too."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "migrestore").rglob("*.py")):
        tree = ast.parse(path.read_text())
        aliases = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and any(map(_is_log_method, ast.walk(node.value)))
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if not (_is_log_method(func) or (isinstance(func, ast.Name) and func.id in aliases)):
                continue
            first = node.args[0] if node.args else None
            name = "<not a literal>"
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
            found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_message_ids_are_128_bit_and_unique() -> None:
    """Each id is 32 lower-case hex digits (as journalctl prints them), none used twice, and each
    event has exactly one."""
    ids = [kind.message_id for kind in KINDS]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert len(MESSAGE_IDS) == len(KINDS)


def test_every_event_in_the_code_has_a_message_id() -> None:
    """No event is logged without a kind in messages.py, and event names are literals (a new
    event: add a Kind with a new id, `systemd-id128 new`, and list it in migrestore(8))."""
    events = logged_events()
    assert "<not a literal>" not in events, events.get("<not a literal>")
    assert sorted(set(events) - set(MESSAGE_IDS)) == []
    assert len(events) > 20


def test_every_message_id_names_an_event_the_code_logs() -> None:
    """No id is left for an event that no longer exists (the error line is cli's)."""
    assert sorted(set(MESSAGE_IDS) - set(logged_events()) - {ERROR}) == []


def test_the_man_page_lists_every_message_id() -> None:
    """migrestore(8) names each event with its MESSAGE_ID, in the order of messages.py."""
    man = (ROOT / "docs" / "migrestore.8").read_text()
    section = man.split(".SH JOURNAL MESSAGES", 1)[1].split("\n.SH ", 1)[0]
    listed = re.findall(r"\.B (\S+)\n\.RB \( MESSAGE_ID=([0-9a-f]{32}) \)", section)
    assert listed == [(kind.event, kind.message_id) for kind in KINDS]
