"""The audit part of a run record: who ran it and with which options (verbs/apply.py adds the
versions of migrestore, the NVML bindings and the driver).

Who: the user the process runs as, the one who ran sudo (`SUDO_USER`), the kernel's login uid
(`/proc/self/loginuid`: the user who logged in, kept across su and sudo; unset for services
started at boot) and, when systemd started the run (`INVOCATION_ID` is set), the unit, read from
the process's own cgroup. None of these can be trusted against root on the host, which can set
any of them; they answer "which operator or which unit", not "prove it".
"""

from __future__ import annotations

import argparse
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNSET_LOGIN_UID = 4294967295  # (uid_t)-1: no login session (boot services, kernel threads)
# The options of `apply` a record names when given (`--lock-wait` when not the default).
FLAGS = ("force", "boot", "json", "allow_insecure_config", "debug")
DEFAULT_LOCK_WAIT = 30.0


@dataclass(frozen=True)
class Actor:
    """Who started a run (empty fields: not known, or not applicable)."""

    uid: int = -1  # the real user id of the process
    user: str = ""
    sudo_user: str = ""
    login_uid: int | None = None  # None: no login session (a service started at boot)
    login_user: str = ""
    unit: str = ""  # the systemd unit the run ran in
    invocation_id: str = ""  # that unit's INVOCATION_ID


def actor(environ: Mapping[str, str], uid: int, proc: Path = Path("/proc")) -> Actor:
    """The actor of this process, from its environment and its /proc/self."""
    login = login_uid(proc / "self" / "loginuid")
    invocation = environ.get("INVOCATION_ID", "")
    return Actor(
        uid=uid,
        user=user_name(uid),
        sudo_user=environ.get("SUDO_USER", ""),
        login_uid=login,
        login_user=user_name(login) if login is not None else "",
        unit=own_unit(proc / "self" / "cgroup") if invocation else "",
        invocation_id=invocation,
    )


def login_uid(path: Path) -> int | None:
    """The audit login uid in `path`; None when unset or unreadable."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return None if value in (UNSET_LOGIN_UID, -1) else value


def own_unit(path: Path) -> str:
    """The unit whose cgroup holds this process (the leaf of the systemd hierarchy's path in
    /proc/self/cgroup: unified `0::` or legacy `name=systemd`), "" if there is none."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        number, controllers, cgroup = [*line.split(":", 2), "", ""][:3]
        if (number == "0" and not controllers) or controllers == "name=systemd":
            leaf = cgroup.rstrip("/").rsplit("/", 1)[-1]
            if leaf.endswith((".service", ".scope")):
                return leaf
    return ""


def user_name(uid: int) -> str:
    """The name of `uid` in the user database, "" if it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return ""


def flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The behaviour-changing options a run was given, as typed (`--force`, `--lock-wait=5`)."""
    given = tuple(f"--{name.replace('_', '-')}" for name in FLAGS if getattr(args, name, False))
    wait = getattr(args, "lock_wait", DEFAULT_LOCK_WAIT)
    return (*given, f"--lock-wait={wait:g}") if wait != DEFAULT_LOCK_WAIT else given


def describe(who: Actor) -> str:
    """Who, in a few words: `migrestore.service`, `alice via sudo`, `alice as root`, `root`."""
    if who.unit:
        return who.unit
    if who.sudo_user:
        return f"{who.sudo_user} via sudo"
    user = who.user or (f"uid {who.uid}" if who.uid >= 0 else "")
    login = who.login_user or (f"login uid {who.login_uid}" if who.login_uid is not None else "")
    if login and login != user:
        return f"{login} as {user}" if user else login
    return user


def from_json(data: Mapping[str, Any]) -> Actor:
    """An Actor as a run record stores it (TypeError on keys of another version)."""
    return Actor(**data)
