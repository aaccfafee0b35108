"""Journal entries sent over journald's native protocol, so that they can carry fields.

Why not only the stream: under systemd, stderr is a stream into journald, and a line on it can
set its priority (the `<N>` prefix) and nothing else: MESSAGE_ID= and every other field need the
native protocol. systemd.exec(5) names exactly this use of `JOURNAL_STREAM`: a service that finds
its stderr connected to the journal may upgrade to the native protocol. So when stderr is the
journal, logs.py sends each event here, and writes the same `<N>` line on stderr only when the
send fails (no journald, a sandbox without its socket, an entry too big for one datagram): no
event is lost, and outside the journal nothing changes.

Why this module rather than a library: the protocol (systemd's "Native Journal Protocol",
declared stable) is one datagram of `KEY=value` lines, with a length-prefixed form for values
that hold a newline; the part we need is the few lines below, standard library only.
pystemd, which we already depend on, has `pystemd.journal.sendv`, but it drops
sd_journal_sendv's result, so a failed send could not fall back to stderr and the event would
vanish. systemd's python3-systemd would add a package dependency on every distribution for one
function. Entries larger than a datagram (libsystemd passes those as a memfd) do not occur here:
an event is one line of a few hundred bytes, and a traceback that does not fit falls back.

journald files an entry under the unit by the sender's cgroup, as it does a stream line, and
SYSLOG_IDENTIFIER=migrestore is set as the unit's SyslogIdentifier= sets it for the stream. A
stream line and an entry written one after the other may be stored in either order.
"""

from __future__ import annotations

import errno
import re
import socket
import struct
from collections.abc import Mapping

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "migrestore"
# A field name: upper-case letters, digits and underscores, not starting with an underscore
# (those are journald's trusted fields) or a digit, at most 64 characters.
FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def field_name(key: str, prefix: str = "MIGRESTORE_") -> str:
    """A log key as a journal field name: `gpu` -> `MIGRESTORE_GPU`."""
    name = prefix + re.sub(r"[^A-Z0-9_]", "_", key.upper())
    return name[:64]


def encode(fields: Mapping[str, str]) -> bytes:
    """One entry in the native protocol: `KEY=value` lines; a value holding a newline as `KEY`,
    a newline, its length as a little-endian 64-bit integer, the value and a newline."""
    parts = []
    for key, value in fields.items():
        if not FIELD_NAME.fullmatch(key):
            raise ValueError(f"not a journal field name: {key!r}")
        data = value.encode("utf-8", "backslashreplace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class Writer:
    """Sends entries to journald's socket; after the socket is found missing or refusing, it
    stops trying (each send would fail the same way) and every send returns False."""

    def __init__(self, path: str = SOCKET) -> None:
        self.path = path
        self._socket: socket.socket | None = None
        self._broken = False

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one entry; False if journald did not take it (the caller writes it elsewhere)."""
        if self._broken:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(encode(fields), self.path)
        except OSError as exc:
            # EMSGSIZE and ENOBUFS concern this entry only; anything else is the socket itself.
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                self.close()
                self._broken = True
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later send opens it again unless it failed for good)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def socket_path(environ: Mapping[str, str]) -> str:
    """journald's socket: MIGRESTORE_JOURNAL_SOCKET (tests) or the standard path."""
    return environ.get("MIGRESTORE_JOURNAL_SOCKET") or SOCKET
