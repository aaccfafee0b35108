"""The audit in every run record: who ran apply, how, on which GPUs, with which versions."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from migrestore import __version__, audit, runs

from .simhost import H100, make_host

A100 = "NVIDIA A100-SXM4-80GB"
LAYOUT = f"""\
version = 1
[[gpu]]
select = {{ model = "{H100}" }}
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
[[gpu]]
select = {{ model = "{A100}" }}
  [[gpu.instance]]
  profile = "7g.80gb"
"""

INVOCATION = "0123456789abcdef0123456789abcdef"


def proc(tmp_path: Path, loginuid: str, cgroup: str) -> Path:
    """A /proc whose `self` has this loginuid and cgroup file."""
    (tmp_path / "self").mkdir(parents=True)
    (tmp_path / "self" / "loginuid").write_text(loginuid)
    (tmp_path / "self" / "cgroup").write_text(cgroup)
    return tmp_path


def test_a_boot_unit_is_named_and_has_no_login(tmp_path: Path) -> None:
    """Started by systemd at boot: the unit from the cgroup, the invocation id, no login uid."""
    root = proc(tmp_path, "4294967295", "0::/system.slice/migrestore.service\n")
    who = audit.actor({"INVOCATION_ID": INVOCATION}, 0, root)
    assert who == audit.Actor(
        uid=0, user="root", unit="migrestore.service", invocation_id=INVOCATION
    )
    assert audit.describe(who) == "migrestore.service"


def test_sudo_names_the_operator_and_the_login(tmp_path: Path) -> None:
    """Through sudo from a login session: SUDO_USER and the login uid; no unit without
    INVOCATION_ID (a session scope is not a unit that ran us)."""
    root = proc(tmp_path, "0", "0::/user.slice/user-0.slice/session-4.scope\n")
    who = audit.actor({"SUDO_USER": "alice"}, 0, root)
    assert (who.sudo_user, who.login_uid, who.login_user, who.unit) == ("alice", 0, "root", "")
    assert audit.describe(who) == "alice via sudo"


def test_the_legacy_cgroup_hierarchy_names_the_unit(tmp_path: Path) -> None:
    """On a cgroup v1 host the unit is read from the name=systemd hierarchy."""
    cgroup = "4:memory:/system.slice/x.service\n1:name=systemd:/system.slice/migrestore.service\n"
    assert audit.own_unit(proc(tmp_path, "0", cgroup) / "self" / "cgroup") == "migrestore.service"


def test_unreadable_proc_files_leave_fields_empty(tmp_path: Path) -> None:
    """No loginuid or cgroup file (another kernel, a sandbox): None and "", never an error."""
    who = audit.actor({"INVOCATION_ID": INVOCATION}, 0, tmp_path)
    assert (who.login_uid, who.unit, who.invocation_id) == (None, "", INVOCATION)


@pytest.mark.parametrize(
    ("who", "words"),
    [
        (audit.Actor(uid=0, user="root", login_uid=1000, login_user="alice"), "alice as root"),
        (audit.Actor(uid=0, user="root", login_uid=0, login_user="root"), "root"),
        (audit.Actor(uid=4242, login_uid=4243), "login uid 4243 as uid 4242"),
        (audit.Actor(), ""),
    ],
)
def test_describe(who: audit.Actor, words: str) -> None:
    """su keeps the login user visible; unknown names fall back to ids; nothing known is ""."""
    assert audit.describe(who) == words


def test_flags_are_the_behaviour_changing_options() -> None:
    """--force and a lock wait other than the default are named; defaults are not."""
    given = argparse.Namespace(verb="apply", force=True, boot=False, json=False, lock_wait=5.0)
    assert audit.flags(given) == ("--force", "--lock-wait=5")
    plain = argparse.Namespace(verb="apply", force=False, boot=True, lock_wait=30.0)
    assert audit.flags(plain) == ("--boot",)


def test_the_run_record_says_who_what_where_and_with_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply --force through sudo under a unit: the record names the operator, the unit, the
    flags, per GPU its PCI bus id and exactly the steps the plan announced, the versions and the
    layout file's digest; status shows who."""
    host = make_host(tmp_path, (H100, 1), (A100, 1), layout=LAYOUT)
    planned = json.loads(host.run("plan", "--json").out)
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("INVOCATION_ID", INVOCATION)
    assert host.run("apply", "--force", "--lock-wait", "7").code == 0
    monkeypatch.delenv("SUDO_USER")
    record = json.loads((Path(f"{host.state}.lib") / "last-run.json").read_text())
    status = json.loads(host.run("status", "--json").out)
    assert record["verb"] == "apply"
    assert record["flags"] == ["--force", "--lock-wait=7"]
    assert record["who"]["sudo_user"] == "alice"
    assert record["who"]["invocation_id"] == INVOCATION
    assert record["who"]["unit"] == audit.own_unit(Path("/proc/self/cgroup"))
    assert [(g["uuid"], g["pci"]) for g in record["gpus"]] == [
        (g["uuid"], g["pci"]) for g in status["gpus"]
    ]
    assert [g["steps"] for g in record["gpus"]] == [g["steps"] for g in planned["gpus"]]
    assert all(g["steps"] for g in record["gpus"])
    assert record["migrestore_version"] == __version__
    assert record["nvml_bindings_path"].endswith("pynvml.py")
    assert record["nvml_bindings_version"] in record["nvml_bindings"]
    assert record["driver"] == status["driver"]
    assert record["config_sha256"] == hashlib.sha256(host.config.read_bytes()).hexdigest()
    assert status["last_run"]["who"] == record["who"]
    assert status["last_run"]["flags"] == record["flags"]


def test_status_says_who_ran_the_last_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` ends with the last run and who ran it, with which flags."""
    host = make_host(tmp_path, (H100, 1), (A100, 1), layout=LAYOUT)
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert host.run("apply", "--force").code == 0
    last = host.run("status").out.splitlines()[-1]
    assert last.startswith("last run: ")
    assert last.endswith(f"ok ({host.config}, by alice via sudo with --force)")


def test_a_record_of_an_earlier_version_still_reads(tmp_path: Path) -> None:
    """A last-run.json written before the audit fields existed reads, with them empty."""
    old = {
        "time": "2026-11-01T00:00:00+00:00",
        "config": "/etc/migrestore/migrestore.toml",
        "config_sha256": "0" * 64,
        "result": "ok",
        "simulated": False,
        "gpus": [{"uuid": "GPU-1", "index": 0, "name": "x", "result": "ok", "error": ""}],
        "boot": True,
        "notes": [],
        "driver": "580.159.04",
        "nvml_bindings": "nvidia-ml-py 13.615.71",
    }
    (tmp_path / runs.RECORD_NAME).write_text(json.dumps(old))
    record = runs.last(tmp_path)
    assert record is not None
    assert (record.who, record.flags, record.gpus[0].steps) == (audit.Actor(), (), ())
