"""A stand-in for journald's native socket: a datagram socket whose entries a test reads back."""

from __future__ import annotations

import socket
import struct
from pathlib import Path


def decode(datagram: bytes) -> dict[str, str]:
    """One native-protocol entry: `KEY=value` lines and length-prefixed `KEY` values."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
            continue
        (size,) = struct.unpack("<Q", after[:8])
        fields[line.decode()] = after[8 : 8 + size].decode()
        assert after[8 + size : 9 + size] == b"\n", datagram
        rest = after[9 + size :]
    return fields


class Journald:
    """A bound socket at `path`; `entries()` returns what was sent to it so far, decoded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.setblocking(False)
        self._received: list[dict[str, str]] = []

    def entries(self) -> list[dict[str, str]]:
        """Every entry received, oldest first."""
        while True:
            try:
                self._received.append(decode(self._socket.recv(1 << 20)))
            except BlockingIOError:
                return list(self._received)

    def close(self) -> None:
        """Stop listening (later sends fail as if journald were gone)."""
        self._socket.close()
        self.path.unlink()
