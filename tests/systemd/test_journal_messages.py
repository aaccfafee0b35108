"""Under a real journald (the private manager's own), migrestore's events arrive as entries with
the MESSAGE_ID of their kind, filed with the unit's other lines, and journalctl filters on them.

The test user manager gives a unit with ProtectKernelTunables= or ProtectControlGroups= a /run of
its own (systemd 252 in a container), which hides journald's socket: migrestore then falls back to
`<N>` lines on stderr, as designed, and no entry would carry a MESSAGE_ID. So these tests relax
those two settings; the booted-root tests (tests/packaging/test_deb_boot.py) run the packaged
unit unchanged under PID 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrestore.messages import ERROR, MESSAGE_IDS

from .bootrig import BootRig
from .test_boot import BOOT_TIMEOUT, H100, layout
from .usermanager import UserManager

pytestmark = pytest.mark.systemd


def restoring_h100(manager: UserManager, tmp_path: Path) -> BootRig:
    """A simulated single-H100 host, the layout to restore, the shipped unit with journald's
    socket visible (see above)."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", H100)
    rig.layout(layout())
    rig.install_migrestore(extra="ProtectKernelTunables=no\nProtectControlGroups=no\n")
    return rig


def booted_entries(manager: UserManager) -> list[dict[str, str]]:
    """Boot the manager with migrestore.service enabled; its journal entries that are events."""
    manager.enable("multi-user.target", "migrestore.service")
    manager.boot()
    manager.wait_settled("migrestore.service", timeout=BOOT_TIMEOUT)
    return [dict(e) for e in manager.journal("migrestore.service") if "MIGRESTORE_EVENT" in e]


def with_message_id(manager: UserManager, event: str) -> list[dict[str, str]]:
    """What `journalctl MESSAGE_ID=<the event's id>` finds in the manager's journal."""
    output = manager.run(
        "journalctl",
        "-D",
        str(manager.journal_dir),
        "-o",
        "json",
        f"MESSAGE_ID={MESSAGE_IDS[event]}",
    ).stdout
    return [json.loads(line) for line in output.splitlines()]


def test_a_boot_restore_journals_entries_with_message_ids(
    manager: UserManager, tmp_path: Path
) -> None:
    """A restore at boot: every event an entry with its kind's MESSAGE_ID, the summary once at
    priority 6, and journalctl's MESSAGE_ID= match finds exactly it."""
    restoring_h100(manager, tmp_path)
    entries = booted_entries(manager)
    assert {e["MIGRESTORE_EVENT"] for e in entries} >= {"planned", "step_done", "apply_finished"}
    assert all(e["MESSAGE_ID"] == MESSAGE_IDS[e["MIGRESTORE_EVENT"]] for e in entries)
    assert all(e["SYSLOG_IDENTIFIER"] == "migrestore" for e in entries)
    (finished,) = with_message_id(manager, "apply_finished")
    assert (finished["PRIORITY"], finished["MIGRESTORE_RESULT"]) == ("6", "ok")
    assert finished["MESSAGE"].startswith("apply_finished ")
    units = {e.get("_SYSTEMD_USER_UNIT") or e.get("_SYSTEMD_UNIT") for e in entries}
    print(f"journald filed {len(entries)} entries under {units}")


def test_a_failed_boot_journals_the_error_with_its_message_id(
    manager: UserManager, tmp_path: Path
) -> None:
    """A layout naming an unknown profile: the one-line error is an entry at priority 3 with the
    error MESSAGE_ID, in the unit's journal."""
    rig = restoring_h100(manager, tmp_path)
    rig.layout(rig.config.read_text().replace("3g.40gb", "9g.99gb"))
    booted_entries(manager)
    (error,) = with_message_id(manager, ERROR)
    assert error["PRIORITY"] == "3"
    assert error["MESSAGE"].startswith("migrestore: error: ")
    assert "9g.99gb" in error["MESSAGE"]
    assert any("9g.99gb" in m for _, m in manager.journal_messages("migrestore.service"))
