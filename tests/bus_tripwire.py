"""A stand-in for the system bus, run as its own process by tests/guard.py: every connection is
logged (one line: the client's pid and command name) and refused at authentication, so the client
fails at once.

Usage: python bus_tripwire.py SOCKET LOG
"""

from __future__ import annotations

import socket
import struct
import sys


def serve(path: str, log: str) -> None:
    """Accept, count, refuse; until killed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("listening", flush=True)
    while True:
        connection, _ = listener.accept()
        pid, _, _ = struct.unpack(
            "3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        with open(log, "a") as counted:
            counted.write(f"{pid} {_command(pid)}\n")
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(256)
                connection.sendall(b"REJECTED\r\n")
            except OSError:
                pass


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
