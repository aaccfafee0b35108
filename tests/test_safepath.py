"""Only root may be able to change what runs at boot: the layout file's owner and mode, and those of
every directory and link on its way, checked on what was opened (config.load(root_only=True))."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrestore import cli, config
from migrestore.context import Context
from migrestore.errors import ConfigError
from migrestore.verbs.common import load_layout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as root")

NOBODY = 65534
GOOD = "version = 1\n"
BAD = 'version = 1\n[[gpu]]\nselect = "all"\n'  # what an attacker would like to see applied


def refusal(path: Path) -> ConfigError:
    """The error load(root_only=True) raises for `path` (which must be refused)."""
    with pytest.raises(ConfigError) as caught:
        config.load(path, root_only=True)
    return caught.value


@pytest.fixture(name="etc")
def fixture_etc(tmp_path: Path) -> Path:
    """A root-only directory (0755) holding a root-only layout file (0644)."""
    directory = tmp_path / "etc"
    directory.mkdir()
    directory.chmod(0o755)
    layout = directory / "migrestore.toml"
    layout.write_text(GOOD)
    layout.chmod(0o644)
    return directory


def test_root_owned_file_is_read_and_hashed(etc: Path) -> None:
    """A 0644 root file in root directories is read; the record's hash is of those bytes."""
    layout = etc / "migrestore.toml"
    desired = config.load(layout, root_only=True)
    assert desired.gpus == ()
    assert desired.sha256 == hashlib.sha256(GOOD.encode()).hexdigest()


@pytest.mark.parametrize(
    ("mode", "who"), [(0o664, "its group"), (0o646, "others"), (0o666, "group and others")]
)
def test_writable_file(etc: Path, mode: int, who: str) -> None:
    """A file writable by group or others is refused, with the fix as a hint."""
    layout = etc / "migrestore.toml"
    layout.chmod(mode)
    error = refusal(layout)
    expected = f"{layout}: writable by {who} (mode {mode:04o}); only root may change the layout"
    assert str(error) == expected
    assert error.hint == f"chmod go-w {layout}"


def test_file_owned_by_nobody(etc: Path) -> None:
    """A file owned by another user is refused, naming its uid."""
    layout = etc / "migrestore.toml"
    os.chown(layout, NOBODY, 0)
    error = refusal(layout)
    assert (
        str(error)
        == f"{layout}: owned by uid {NOBODY}, not root; the layout decides what runs at boot"
    )
    assert error.hint == f"chown root: {layout}"


def test_parent_owned_by_nobody(etc: Path) -> None:
    """A directory above the file owned by another user is refused (its owner could swap it)."""
    os.chown(etc, NOBODY, 0)
    assert str(refusal(etc / "migrestore.toml")).startswith(f"{etc}: owned by uid {NOBODY}")


def test_world_writable_parent(etc: Path) -> None:
    """A directory others may write is refused (they could replace the file)."""
    etc.chmod(0o777)
    assert str(refusal(etc / "migrestore.toml")) == (
        f"{etc}: writable by group and others (mode 0777); only root may change the layout"
    )


def test_writable_directory_higher_up(etc: Path) -> None:
    """Every directory up to / is checked, not only the file's own."""
    deeper = etc / "a" / "b"
    deeper.mkdir(parents=True)
    (deeper / "migrestore.toml").write_text(GOOD)
    (etc / "a").chmod(0o775)
    assert str(refusal(deeper / "migrestore.toml")).startswith(
        f"{etc / 'a'}: writable by its group"
    )


def test_root_sticky_directory_is_accepted(etc: Path) -> None:
    """A root-owned sticky directory (like /tmp) is accepted: others cannot touch root's entries."""
    etc.chmod(0o1777)
    assert config.load(etc / "migrestore.toml", root_only=True).gpus == ()


def test_nobodys_directory_in_a_sticky_directory(etc: Path) -> None:
    """In a sticky directory an entry that is not root's is refused: its owner may replace it."""
    etc.chmod(0o1777)
    theirs = etc / "theirs"
    theirs.mkdir(mode=0o755)
    (theirs / "migrestore.toml").write_text(GOOD)
    os.chown(theirs, NOBODY, 0)
    assert str(refusal(theirs / "migrestore.toml")).startswith(f"{theirs}: owned by uid {NOBODY}")


def test_symlink_to_a_root_file_works(etc: Path, tmp_path: Path) -> None:
    """A root-owned link (absolute or relative, through ..) to a root file is followed."""
    real = tmp_path / "srv"
    real.mkdir(mode=0o755)
    (real / "layout.toml").write_text(BAD)
    absolute = etc / "absolute.toml"
    absolute.symlink_to(real / "layout.toml")
    relative = etc / "relative.toml"
    relative.symlink_to("../srv/./layout.toml")
    for link in (absolute, relative):
        assert len(config.load(link, root_only=True).gpus) == 1


def test_symlink_into_a_writable_directory(etc: Path, tmp_path: Path) -> None:
    """A link is followed and the directories it leads through are checked too."""
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    (unsafe / "real.toml").write_text(GOOD)
    link = etc / "link.toml"
    link.symlink_to(unsafe / "real.toml")
    assert str(refusal(link)).startswith(f"{unsafe}: writable by group and others")


def test_symlink_owned_by_nobody(etc: Path) -> None:
    """A link on the way must be root's too."""
    link = etc / "link.toml"
    link.symlink_to("migrestore.toml")
    os.chown(link, NOBODY, 0, follow_symlinks=False)
    assert str(refusal(link)).startswith(f"{link}: owned by uid {NOBODY}")


def test_symlink_loop_and_dangling_link(etc: Path) -> None:
    """A looping or dangling link is a file that cannot be read, in one line."""
    loop = etc / "loop.toml"
    loop.symlink_to("loop.toml")
    dangling = etc / "dangling.toml"
    dangling.symlink_to("absent.toml")
    assert str(refusal(loop)) == f"{loop}: cannot read: Too many levels of symbolic links"
    assert str(refusal(dangling)) == f"{dangling}: cannot read: No such file or directory"


def test_fifo_and_directory_are_refused_without_blocking(etc: Path) -> None:
    """A FIFO (no writer) and a directory are refused by their type; nothing blocks."""
    fifo = etc / "fifo.toml"
    os.mkfifo(fifo, 0o644)
    assert str(refusal(fifo)) == f"{fifo}: is a FIFO, not a regular file"
    assert str(refusal(etc)) == f"{etc}: is a directory, not a regular file"


def test_a_file_below_a_file(etc: Path) -> None:
    """A path through a regular file is 'Not a directory'."""
    below = etc / "migrestore.toml" / "x.toml"
    assert str(refusal(below)) == f"{below}: cannot read: Not a directory"


def test_without_root_only_nobodys_file_is_read(etc: Path) -> None:
    """--allow-insecure-config and simulated hosts read the file without these checks."""
    layout = etc / "migrestore.toml"
    os.chown(layout, NOBODY, 0)
    assert config.load(layout).gpus == ()


def run_cli(*args: str) -> tuple[int, str]:
    """`migrestore ARGS...` in this process: exit status and standard error."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(args))
    return code, err.getvalue()


def test_cli_refuses_nobodys_layout(etc: Path, tmp_path: Path) -> None:
    """On a real host `plan` refuses a layout in a directory owned by nobody before NVML is
    touched: exit 2, the error and its hint."""
    os.chown(etc, NOBODY, 0)
    code, err = run_cli(
        *("--config", str(etc / "migrestore.toml"), "--state-dir", str(tmp_path)),
        *("--run-dir", str(tmp_path), "plan"),
    )
    assert (code, err.count("\n")) == (2, 2)
    assert f"{etc}: owned by uid {NOBODY}, not root" in err


@pytest.mark.parametrize(("allow", "simulate"), [(True, False), (False, True)])
def test_allowed_or_simulated_the_layout_is_read_as_it_is(
    etc: Path, tmp_path: Path, allow: bool, simulate: bool
) -> None:
    """--allow-insecure-config, or a simulated host, reads nobody's layout without the checks;
    a real host without the option refuses it."""
    os.chown(etc, NOBODY, 0)

    def context(allow: bool, simulate: bool) -> Context:
        return Context(
            config=etc / "migrestore.toml",
            simulate=tmp_path / "host.json" if simulate else None,
            state_dir=tmp_path,
            run_dir=tmp_path,
            sysroot=Path("/"),
            sysroot_given=False,
            allow_insecure_config=allow,
            debug=False,
        )

    assert load_layout(context(allow, simulate)).gpus == ()
    with pytest.raises(ConfigError, match=f"owned by uid {NOBODY}"):
        load_layout(context(False, False))


SWAPPER = textwrap.dedent(
    """\
    import os, sys
    good, bad, target, tmp = sys.argv[1:5]
    while True:
        for source in (good, bad):
            os.link(source, tmp)
            os.replace(tmp, target)  # a no-op if both are links of one file: then tmp stays
            if os.path.lexists(tmp):
                os.unlink(tmp)
    """
)


@contextlib.contextmanager
def swapping(directory: Path) -> Iterator[Path]:
    """`layout.toml` in `directory` swapped as fast as possible between root's good file and
    nobody's bad one (both complete files, renamed into place), by another process."""
    good, bad = directory / "good.toml", directory / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    os.chown(bad, NOBODY, 0)
    target = directory / "layout.toml"
    os.link(good, target)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(good), str(bad), str(target), str(directory / "tmp")]
    )
    try:
        yield target
    finally:
        swapper.kill()
        swapper.wait()


def test_swapping_the_file_never_gets_nobodys_content_through(etc: Path) -> None:
    """The file is checked on the descriptor it is read from: while it is swapped between root's
    and nobody's, each load is refused or reads root's file, never nobody's (both happen)."""
    outcomes = {"root's": 0, "refused": 0, "nobody's": 0}
    reasons = set()
    with swapping(etc) as layout:
        for _ in range(1000):
            try:
                desired = config.load(layout, root_only=True)
            except ConfigError as error:
                reasons.add(str(error).replace(str(layout), "LAYOUT"))
                kind = "refused"
            else:
                kind = "nobody's" if desired.gpus else "root's"
            outcomes[kind] += 1
    assert outcomes["nobody's"] == 0, outcomes
    assert outcomes["root's"] > 0, outcomes
    assert outcomes["refused"] > 0, outcomes
    owned = f"LAYOUT: owned by uid {NOBODY}, not root; the layout decides what runs at boot"
    assert reasons <= {owned, "LAYOUT: replaced while it was being checked; try again"}
