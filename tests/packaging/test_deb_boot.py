"""A real PID-1 systemd boots the Debian root with the .deb: the restore runs before the consumers.

The root holds a simulated 8-GPU host (the unit finds it through the drop-in simulate.conf), the
operator's layout, and fake nvsm, nvidia-dcgm and kubelet units with no ordering of their own:
only migrestore.service's Before= can make them start after the restore.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from migrestore.messages import MESSAGE_IDS
from tests.packaging.booted_root import CONSUMERS, GPU_COUNT, Boot, boot
from tests.packaging.debian_root import Overlay

pytestmark = [pytest.mark.packages, pytest.mark.nspawn]

SCENARIO = "snapshot boot\n"


@pytest.fixture(scope="module", name="restored")
def fixture_restored(
    debian_root: Path, deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> Boot:
    """One boot of the root with the layout to restore."""
    overlay = Overlay.create(debian_root, tmp_path_factory.mktemp("boot"))
    return boot(overlay, deb, SCENARIO)


@pytest.fixture(scope="module", name="switched_off")
def fixture_switched_off(
    debian_root: Path, deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> Boot:
    """One boot with `migrestore=off` on the (container's) kernel command line."""
    overlay = Overlay.create(debian_root, tmp_path_factory.mktemp("boot-off"))
    return boot(overlay, deb, SCENARIO, init_args=("migrestore=off",))


def test_boot_completes(restored: Boot) -> None:
    """The root boots, the scenario runs after the boot finished, and the container exits 0."""
    assert restored.exit_status == 0, restored.console[-3000:]
    assert restored.show("boot", "migrestore")["ActiveState"] == "active"


def test_restore_succeeds_and_signals_readiness(restored: Boot) -> None:
    """migrestore.service ran `apply --boot` to success and said so in its status text."""
    unit = restored.show("boot", "migrestore")
    assert (unit["Result"], unit["ExecMainStatus"], unit["SubState"]) == ("success", "0", "exited")
    assert unit["StatusText"].startswith(f"{GPU_COUNT} GPU(s) in layout")


def test_consumers_start_after_the_restore(restored: Boot) -> None:
    """Each consumer's process started after migrestore.service became active (unit timestamps)."""
    ready = int(restored.show("boot", "migrestore")["ActiveEnterTimestampMonotonic"])
    assert ready > 0
    for name in CONSUMERS:
        consumer = restored.show("boot", name)
        assert int(consumer["ExecMainStartTimestampMonotonic"]) >= ready, name


def test_consumers_see_the_restored_layout(restored: Boot) -> None:
    """`migrestore verify` exited 0 in every consumer as it started."""
    assert restored.consumers() == dict.fromkeys(CONSUMERS, 0)


def test_kubelet_is_ordered_after_the_restore(restored: Boot) -> None:
    """systemd itself orders kubelet.service after migrestore.service (from its Before=)."""
    assert "migrestore.service" in restored.text("boot/kubelet.after").split()


def test_journal_entries_carry_message_ids(restored: Boot) -> None:
    """Under PID 1, with the packaged unit unchanged, each event is a journal entry filed under
    migrestore.service with its kind's MESSAGE_ID; the summary once, at priority 6."""
    lines = restored.text("boot/migrestore.journal.json").splitlines()
    events = [e for e in map(json.loads, lines) if "MIGRESTORE_EVENT" in e]
    assert all(e["MESSAGE_ID"] == MESSAGE_IDS[e["MIGRESTORE_EVENT"]] for e in events)
    finished = [e for e in events if e["MIGRESTORE_EVENT"] == "apply_finished"]
    assert [(e["PRIORITY"], e["MIGRESTORE_RESULT"]) for e in finished] == [("6", "ok")]
    assert len([e for e in events if e["MIGRESTORE_EVENT"] == "step_done"]) == GPU_COUNT * 8


def test_the_run_record_names_the_unit(restored: Boot) -> None:
    """The boot's run record says the unit ran it (with its invocation id, without a login
    session), as `apply --boot`, with the packaged bindings, and each GPU's PCI bus id and steps."""
    record = json.loads(restored.text("boot/last-run.json"))
    who = record["who"]
    assert (who["unit"], who["login_uid"], who["sudo_user"]) == ("migrestore.service", None, "")
    assert re.fullmatch(r"[0-9a-f]{32}", who["invocation_id"])
    assert (record["verb"], record["flags"], record["boot"]) == ("apply", ["--boot"], True)
    assert record["nvml_bindings_path"] == "/usr/lib/migrestore/vendor/pynvml.py"
    # Each H100 lost MIG mode at the boot: enable it, then the 8 instance steps (step_done).
    assert [(g["steps"][0], len(g["steps"])) for g in record["gpus"]] == [
        ("enable MIG mode", 9)
    ] * GPU_COUNT
    assert all(g["pci"] for g in record["gpus"])


def test_journal_shows_the_restore(restored: Boot) -> None:
    """The boot's journal has the unit starting, the steps, the result, and the unit started."""
    journal = restored.text("boot/migrestore.journal")
    assert "Starting migrestore.service" in journal
    assert journal.count("step_done") == GPU_COUNT * 8
    assert f"apply_finished result=ok gpus={GPU_COUNT}" in journal
    assert "Started migrestore.service" in journal


def test_layout_is_restored_on_every_gpu(restored: Boot) -> None:
    """After the boot every simulated GPU has MIG on and the four instances at their placements."""
    gpus = restored.status("boot")["gpus"]
    assert len(gpus) == GPU_COUNT
    for gpu in gpus:
        assert gpu["mig"]["current"] is True
        placed = sorted((i["profile"], i["placement"]["start"]) for i in gpu["instances"])
        assert placed == [("1g.10gb", 2), ("1g.10gb", 3), ("2g.20gb", 0), ("3g.40gb", 4)]


def test_kill_switch_skips_the_restore(switched_off: Boot) -> None:
    """With migrestore=off the unit is skipped by its condition and the consumers still start."""
    assert switched_off.exit_status == 0, switched_off.console[-3000:]
    unit = switched_off.show("boot", "migrestore")
    assert (unit["ConditionResult"], unit["ActiveState"]) == ("no", "inactive")
    assert "unmet condition check (ConditionKernelCommandLine=!migrestore=off)" in (
        switched_off.text("boot/migrestore.journal")
    )
    assert switched_off.consumers() == dict.fromkeys(CONSUMERS, 3)
