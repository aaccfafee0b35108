"""Open a file that only root could have written, checking what was opened, not a path.

`open_root_only` walks the path from `/` one name at a time, each opened relative to the
directory opened before it (`openat` with `O_PATH | O_NOFOLLOW`), and resolves symbolic links
itself. Every directory, link and the file on the way must be owned by root, and no directory
or the file may be writable by group or others (sshd's StrictModes, sudo's check of sudoers). A
root-owned sticky directory (`/tmp`) is the one writable directory accepted: there no one but
root can rename or remove root's entries, and every entry on the way must be root's anyway.

Owner and mode are read with `fstat` from the descriptors that were opened, and the file is read
from the descriptor that was checked: replacing a name on the way between the check and the read
changes nothing. The final file is opened for reading (`O_NONBLOCK`: a FIFO never blocks) only
after its `O_PATH` descriptor showed a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from migrestore.errors import ConfigError

MAX_LINKS = 40  # symbolic links followed in one walk, as the kernel allows (then ELOOP)
_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_root_only(path: Path) -> tuple[int, os.stat_result]:
    """A descriptor of the file at `path` and its fstat, if only root could have written it.

    For a regular file the descriptor is open for reading; for anything else it is an `O_PATH`
    descriptor the caller refuses by its type. Raises ConfigError naming the place that is not
    safe (owner or mode, with the fix as a hint), or why the file cannot be read.
    """
    walk = _Walk(path)
    try:
        return walk.run()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    finally:
        walk.close()


def _names(text: str) -> list[str]:
    """The names of a path, last first (for `pop`); "" and "." dropped."""
    return [name for name in reversed(text.split("/")) if name not in ("", ".")]


class _Walk:
    """One walk: the directory reached so far (`fd`, `where`) and the names still to open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.todo = _names(os.path.join(os.getcwd(), os.fspath(path)))
        self.links = 0
        self.fd = -1
        self.where = "/"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def run(self) -> tuple[int, os.stat_result]:
        self._restart_at_root()
        while self.todo:
            name = self.todo.pop()
            where = os.path.normpath(os.path.join(self.where, name))
            child = os.open(name, _WALK, dir_fd=self.fd)
            info = os.fstat(child)
            if stat.S_ISLNK(info.st_mode):
                os.close(child)
                _check_owner(where, info)
                self._follow(name)
                continue
            try:
                _check_owner(where, info)
                _check_mode(where, info)
            except ConfigError:
                os.close(child)
                raise
            if stat.S_ISDIR(info.st_mode):
                self.close()
                self.fd, self.where = child, where
                continue
            if self.todo:
                os.close(child)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            return self._final(name, child, info)
        # The path ends at a directory (or is "/"): the caller refuses it by its type.
        fd, self.fd = self.fd, -1
        return fd, os.fstat(fd)

    def _restart_at_root(self) -> None:
        self.close()
        self.fd = os.open("/", _WALK | os.O_DIRECTORY)
        self.where = "/"
        info = os.fstat(self.fd)
        _check_owner("/", info)
        _check_mode("/", info)

    def _follow(self, name: str) -> None:
        """Go on from where the link at `name` (in the checked directory `fd`) points."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        target = os.readlink(name, dir_fd=self.fd)
        self.todo.extend(_names(target))
        if target.startswith("/"):
            self._restart_at_root()

    def _final(self, name: str, child: int, info: os.stat_result) -> tuple[int, os.stat_result]:
        """The last name: a regular file is opened for reading (the same file, or an error)."""
        if not stat.S_ISREG(info.st_mode):
            return child, info
        try:
            readable = os.open(name, _READ, dir_fd=self.fd)
        finally:
            os.close(child)
        opened = os.fstat(readable)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(readable)
            raise ConfigError(f"{self.path}: replaced while it was being checked; try again")
        return readable, opened


def _check_owner(where: str, info: os.stat_result) -> None:
    if info.st_uid != 0:
        raise ConfigError(
            f"{where}: owned by uid {info.st_uid}, not root; the layout decides what runs at boot",
            hint=f"chown root: {where}",
        )


def _check_mode(where: str, info: os.stat_result) -> None:
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
        return  # sticky and root's (checked before): others cannot touch root's entries
    who = {stat.S_IWGRP: "its group", stat.S_IWOTH: "others"}.get(writable, "group and others")
    raise ConfigError(
        f"{where}: writable by {who} (mode {stat.S_IMODE(info.st_mode):04o}); only root may "
        "change the layout",
        hint=f"chmod go-w {where}",
    )
