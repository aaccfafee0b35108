"""Cached minimal Debian roots, an overlay of one per test, and systemd-nspawn runs inside.

A root (mmdebstrap of a suite, by default --variant=minbase with systemd, dbus and python3, plus
whatever a test adds, all from the Debian archive the host's apt sources name) is built once per
suite, variant and package list into CACHE and extracted next to its tarball; tests never write to
it. Debian 11, 12 and 13 stand in for RHEL 9 and Ubuntu 22.04, Debian 12, and Ubuntu 24.04 and
RHEL 10 (README: Supported platforms). Each test gets an overlayfs upper layer in its own
directory, mounted only inside a private mount namespace together with a tmpfs on /run/systemd
(nspawn needs that on a host whose PID 1 is not systemd), so nothing stays mounted after a
command, even a failed one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
# The distribution matrix: each suite's Python and systemd (README: Supported platforms).
SUITES = ("bullseye", "bookworm", "trixie")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
APT_SOURCES = Path("/etc/apt/sources.list.d")
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3")
CACHE = Path(os.environ.get("MIGRESTORE_TEST_CACHE", "/var/cache/migrestore-tests"))
BUILD_TIMEOUT = 600.0
PRUNE_AFTER = 86400.0

# Runs in a private mount namespace: mount the overlay at $ROOT, hide the host's /run/systemd.
NAMESPACE = """
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$ROOT"
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
exec "$@"
"""


def host_mirrors() -> tuple[str, str]:
    """The Debian archive and security archive the host's apt sources use (else deb.debian.org)."""
    uris: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(APT_SOURCES.glob("*"))]:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            with contextlib.suppress(OSError):
                uris += re.findall(
                    r"(?:^URIs:|^deb)\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.M
                )
    archive = next((u for u in uris if u.rstrip("/").endswith("/debian")), DEFAULT_MIRROR)
    security = next(
        (u for u in uris if u.rstrip("/").endswith("/debian-security")), DEFAULT_SECURITY_MIRROR
    )
    return archive.rstrip("/"), security.rstrip("/")


def mirrors(suite: str) -> tuple[str, ...]:
    """The apt source lines of `suite` (main, updates, security) on the host's mirrors."""
    archive, security = host_mirrors()
    return (
        f"deb {archive} {suite} main",
        f"deb {archive} {suite}-updates main",
        f"deb {security} {suite}-security main",
    )


def cache_key(packages: Sequence[str], suite: str = SUITE, variant: str = "minbase") -> str:
    """Names the cached root after everything that goes into it."""
    recipe = "\n".join((suite, variant, *mirrors(suite), *sorted(packages)))
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def cached_root(
    extra_packages: Sequence[str],
    suite: str = SUITE,
    variant: str = "minbase",
    base_packages: Sequence[str] = BASE_PACKAGES,
) -> Path:
    """The extracted root with `base_packages` and these, built (about 30 s) the first time."""
    packages = sorted({*base_packages, *extra_packages})
    base = CACHE / f"debian-{suite}-{cache_key(packages, suite, variant)}"
    root = base / "root"
    if root.is_dir():
        os.utime(base)
        return root
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / "lock"):
        if not root.is_dir():
            _build(base, root, packages, suite, variant)
    _prune(base)
    return root


def _prune(keep: Path) -> None:
    """Delete roots of other package lists that no run has used for a day."""
    for other in keep.parent.glob("debian-*-*"):
        if other != keep and time.time() - other.stat().st_mtime > PRUNE_AFTER:
            shutil.rmtree(other, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (two test runs must not build one root together)."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build(base: Path, root: Path, packages: Sequence[str], suite: str, variant: str) -> None:
    """mmdebstrap the tarball (kept) and extract it, atomically, to `root`."""
    tarball = base / "root.tar.zst"
    if not tarball.exists():
        partial = base / "root.partial.tar.zst"
        command = ["mmdebstrap", f"--variant={variant}", "--include=" + ",".join(packages)]
        _run([*command, suite, str(partial), *mirrors(suite)], BUILD_TIMEOUT)
        partial.rename(tarball)
    staging = Path(tempfile.mkdtemp(prefix="root.", dir=base))
    _run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(staging)], BUILD_TIMEOUT)
    staging.rename(root)


def _run(command: Sequence[str], timeout: float) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


@dataclass(frozen=True)
class Overlay:
    """A writable view of the cached root; changes land in `base/upper` only."""

    lower: Path
    base: Path

    @classmethod
    def create(cls, lower: Path, base: Path) -> Overlay:
        """Lay out the upper, work and mount-point directories under `base`."""
        for name in ("upper", "work", "merged"):
            (base / name).mkdir(parents=True, exist_ok=True)
        return cls(lower, base)

    @property
    def root(self) -> Path:
        """Where the root is mounted (inside the namespace of `run` only)."""
        return self.base / "merged"

    def run(
        self, command: Sequence[str], timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a host command with the root mounted at `self.root`."""
        env = {
            **os.environ,
            "LOWER": str(self.lower),
            "UPPER": str(self.base / "upper"),
            "WORK": str(self.base / "work"),
            "ROOT": str(self.root),
        }
        namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-euc", NAMESPACE]
        return subprocess.run(
            [*namespace, "sh", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def shell(self, script: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a host shell script with the root mounted at $ROOT."""
        return self.run(["sh", "-euc", script], timeout)

    def container(
        self,
        command: Sequence[str],
        binds: Mapping[Path, str] | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` inside the root (systemd-nspawn, not booted); `binds` are read-only."""
        return self.run([*_nspawn(self.root, binds or {}, None, timeout), "--", *command], timeout)

    def boot(
        self,
        console: Path,
        results: Path,
        binds: Mapping[Path, str] | None = None,
        init_args: Sequence[str] = (),
        timeout: float = 120.0,
        writable: Mapping[Path, str] | None = None,
    ) -> int:
        """Boot the root with systemd as PID 1, `results` writable at /results.

        `binds` are read-only, `writable` read-write (caches shared between runs).
        Returns nspawn's exit status: what the container's `systemctl exit N` said.
        """
        nspawn = _nspawn(self.root, binds or {}, results, timeout, writable or {})
        script = 'exec "$@" > "$CONSOLE" 2>&1'
        command = [*nspawn, "--boot", "--", *init_args]
        done = self.run(["env", f"CONSOLE={console}", "sh", "-c", script, "sh", *command], timeout)
        return done.returncode


def _nspawn(
    root: Path,
    binds: Mapping[Path, str],
    results: Path | None,
    timeout: float,
    writable: Mapping[Path, str] | None = None,
) -> list[str]:
    """The systemd-nspawn command line that works on a host without systemd as PID 1."""
    command = ["timeout", "--kill-after=10", str(int(timeout)), "systemd-nspawn", "--quiet"]
    command += ["--directory", str(root), "--register=no", "--keep-unit"]
    command += [f"--bind-ro={source}:{target}" for source, target in binds.items()]
    command += [f"--bind={source}:{target}" for source, target in (writable or {}).items()]
    if results is not None:
        command.append(f"--bind={results}:/results")
    return command


def tools_missing() -> str:
    """Why the package tier cannot run on this machine ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (apt-get, mount namespaces, overlayfs)"
    if shutil.which("apt-get") is None:
        return "needs a Debian machine (apt-get)"
    return ""
