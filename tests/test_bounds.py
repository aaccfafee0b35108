"""Hostile layout files: bounded, typed and one line each, checked before any work (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.simhost import ROOT, Host, Result, make_host, mutations

H100 = "NVIDIA H100 80GB HBM3"
ENTRY = f'version = 1\n[[gpu]]\nselect = {{ model = "{H100}" }}\n[[gpu.instance]]\n'


@pytest.fixture(name="host")
def fixture_host(tmp_path: Path) -> Host:
    """One simulated H100 and a layout file next to it."""
    return make_host(tmp_path, (H100, 1))


def one_line_error(result: Result) -> str:
    """The single error line of a run that exited 2 (fails if there is more than one line)."""
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("migrestore: error: "), result.err
    return lines[0]


def run_bounded(host: Host, *args: str, seconds: float = 20) -> Result:
    """migrestore as a process that is killed (failing the test) if it does not end in time."""
    command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds, cwd=ROOT, env=env, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_huge_count_is_refused_at_once(host: Host) -> None:
    """count = 1000000000 is one line and exit 2 at once (a process: the startup is most of it)."""
    host.write_layout(ENTRY + 'profile = "1g.10gb"\ncount = 1000000000\n')
    started = time.monotonic()
    result = run_bounded(host, "--config", str(host.config), "apply", seconds=10)
    assert time.monotonic() - started < 5.0
    assert "gpu[0].instance[0].count: must be an integer from 1 to 64" in one_line_error(result)
    assert mutations(host.counters()) == 0


def test_count_beyond_the_profile_table_is_refused_before_expansion(host: Host) -> None:
    """count = 64 of a 7-instance profile names the count key, not the 64th copy."""
    host.write_layout(ENTRY + 'profile = "1g.10gb"\ncount = 64\n')
    line = one_line_error(host.run("check"))
    assert "gpu[0].instance[0].count: 64 x 1g.10gb asked, at most 7 fit" in line


def test_huge_placement_and_profile_id_are_refused(host: Host) -> None:
    """Placements and profile ids far beyond any GPU are range errors naming the key."""
    host.write_layout(ENTRY + 'profile = "1g.10gb"\nplacement = 100000000000000000000\n')
    assert "gpu[0].instance[0].placement: must be an integer from 0 to" in one_line_error(
        host.run("check")
    )
    host.write_layout(ENTRY + "profile = 100000000000000000000\n")
    assert "gpu[0].instance[0].profile: must be an integer from 0 to" in one_line_error(
        host.run("check")
    )


def test_huge_count_in_a_mig_parted_config_is_refused_at_once(host: Host, tmp_path: Path) -> None:
    """import-mig-parted with a count of 1000000000 is one line and exit 2 at once."""
    source = tmp_path / "mig-parted.yaml"
    source.write_text(
        "version: v1\nmig-configs:\n  all:\n    - devices: all\n      mig-enabled: true\n"
        '      mig-devices:\n        "1g.10gb": 1000000000\n'
    )
    started = time.monotonic()
    result = run_bounded(host, "import-mig-parted", str(source), "--model", H100, seconds=10)
    assert time.monotonic() - started < 5.0
    assert "mig-devices.1g.10gb: count must be at most 64" in one_line_error(result)


@pytest.mark.parametrize("opening", ["[", "{ a = "], ids=["arrays", "inline-tables"])
def test_deep_nesting_is_an_error_not_a_recursion_error(host: Host, opening: str) -> None:
    """500 nested arrays or tables are exit 2 with one line."""
    closing = "]" if opening == "[" else "}"
    host.write_layout(f"version = 1\nx = {opening * 500}{closing * 500}\n")
    assert "nested deeper than 8 levels" in one_line_error(host.run("check"))


def test_moderate_nesting_names_the_key(host: Host) -> None:
    """Nesting TOML can parse but no layout needs is refused naming where it goes too deep."""
    host.write_layout("version = 1\nx = " + "[" * 20 + "]" * 20 + "\n")
    assert ": x" + "[0]" * 8 + ": nested deeper than 8 levels" in one_line_error(host.run("check"))


def test_huge_driver_timeout_fails_check(host: Host) -> None:
    """driver-timeout = 1e308 is a range error at `check`, long before apply --boot uses it."""
    host.write_layout("version = 1\n[restore]\ndriver-timeout = 1e308\n")
    line = one_line_error(host.run("check"))
    assert "restore.driver-timeout: must be at most 86400 seconds" in line


def test_unicode_digit_in_a_profile_is_refused(host: Host) -> None:
    """A profile of "²" (a digit, but not an ASCII one) is a one-line error naming the key."""
    host.write_layout(ENTRY + 'profile = "²"\n')
    line = one_line_error(host.run("check"))
    assert "gpu[0].instance[0].profile:" in line
    assert "not an ASCII digit" in line


@pytest.mark.parametrize(
    ("layout", "key"),
    [
        (ENTRY + 'profile = "1g.10gb\\n<0>x"\n', "gpu[0].instance[0].profile"),
        (ENTRY + 'profile = "3g.40gb"\ncompute = ["1c\\r"]\n', "gpu[0].instance[0].compute[0]"),
        ('version = 1\n[[gpu]]\nselect = { model = "H100\\u001b[2J" }\n', "gpu[0].select.model"),
        ('version = 1\n[restore]\nstop-units = ["a\\u2028.service"]\n', "restore.stop-units[0]"),
        ('version = 1\n"a\\nb" = 1\n', '"a\\nb"'),
    ],
    ids=["newline", "carriage-return", "escape", "line-separator", "key"],
)
def test_control_characters_are_refused_in_one_line(host: Host, layout: str, key: str) -> None:
    """A control character anywhere in the file is exit 2 with one escaped line naming the key."""
    host.write_layout(layout)
    line = one_line_error(host.run("check"))
    assert "control character" in line
    assert f": {key}: " in line
    assert not any(ord(c) < 0x20 or c == "\u2028" for c in line)


def test_error_messages_escape_control_characters(tmp_path: Path) -> None:
    """A file name with a newline still gives one line, the newline escaped."""
    host = make_host(tmp_path, (H100, 1))
    named = Host(host.state, tmp_path / "bad\nname.toml")
    named.write_layout("version = 3\n")
    line = one_line_error(named.run("check"))
    assert "bad\\x0aname.toml: version: unsupported version 3" in line


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "large"])
def test_only_small_regular_files_are_read(host: Host, tmp_path: Path, kind: str) -> None:
    """A FIFO (never blocks), a directory, a device or a file over 1 MiB is exit 2, one line."""
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "large":
        path.write_text("version = 1\n" + "#" * (1 << 20) + "\n")
    else:
        path = Path("/dev/zero")
    result = run_bounded(host, "--config", str(path), "check", seconds=20)
    problem = {
        "fifo": "is a FIFO, not a regular file",
        "directory": "is a directory, not a regular file",
        "device": "is a character device, not a regular file",
        "large": "larger than 1048576",
    }[kind]
    assert problem in one_line_error(result)


def test_a_fifo_at_boot_does_not_block(host: Host, tmp_path: Path) -> None:
    """apply --boot with a FIFO as the layout file ends at once with exit 2."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    result = run_bounded(host, "--config", str(fifo), "apply", "--boot", seconds=20)
    assert "is a FIFO" in one_line_error(result)


@pytest.mark.parametrize("link", ["dangling", "looping"])
def test_unreadable_layout_symlink_at_boot_is_an_error(
    host: Host, tmp_path: Path, link: str
) -> None:
    """apply --boot: a layout path that is a dangling or looping symlink is exit 2, not a no-op."""
    path = tmp_path / "linked.toml"
    path.symlink_to(tmp_path / "nowhere.toml" if link == "dangling" else path)
    result = Host(host.state, path).run("apply", "--boot")
    line = one_line_error(result)
    assert f"{path}: cannot read: " in line
    assert "nothing to restore" not in result.out


def test_absent_layout_at_boot_is_still_a_no_op(host: Host, tmp_path: Path) -> None:
    """apply --boot without anything at the layout path succeeds and restores nothing."""
    result = Host(host.state, tmp_path / "absent.toml").run("apply", "--boot")
    assert result.code == 0, result
    assert "nothing to restore" in result.out


@pytest.mark.parametrize(
    ("units", "problem"),
    [
        ('["x@.service"]', 'restore.stop-units[0]: "x@.service" is a template'),
        (
            '["nvsm.service", "dcgm.service", "nvsm.service"]',
            'stop-units[2]: "nvsm.service" is listed twice (also at [0])',
        ),
    ],
    ids=["template", "duplicate"],
)
def test_bad_stop_units_are_refused(host: Host, units: str, problem: str) -> None:
    """A template without an instance or a unit listed twice is one line naming file and key."""
    host.write_layout(f"version = 1\n[restore]\nstop-units = {units}\n")
    line = one_line_error(host.run("check"))
    assert f"{host.config}: " in line
    assert problem in line


def test_template_instances_are_accepted(host: Host) -> None:
    """A template unit with an instance is a unit name like any other."""
    host.write_layout('version = 1\n[restore]\nstop-units = ["nvidia-mig@gpu0.service"]\n')
    assert host.run("check").code == 0


@pytest.mark.parametrize(
    ("select", "where"),
    [('"all"', "gpu[0].select (--model)"), ('{ model = "Nope" }', "--model")],
    ids=["stands-in", "unused"],
)
def test_check_with_an_unknown_model_names_file_and_key(
    host: Host, select: str, where: str
) -> None:
    """check --model NAME with a NAME no model has is one line naming the file and the key."""
    host.write_layout(f"version = 1\n[[gpu]]\nselect = {select}\n")
    line = one_line_error(host.run("check", "--model", "Nope"))
    assert f'{host.config}: {where}: unknown model "Nope"; known: ' in line


def test_an_unknown_model_entry_names_file_and_key(host: Host) -> None:
    """check (offline) of a model entry whose model is unknown names the file and select.model."""
    host.write_layout('version = 1\n[[gpu]]\nselect = { model = "Nope" }\n')
    line = one_line_error(host.run_offline("check"))
    assert f'{host.config}: gpu[0].select.model: unknown model "Nope"' in line


def test_a_missing_gpu_fails_the_run_but_the_others_are_restored(host: Host) -> None:
    """An absent GPU an entry names: exit 1, the present GPU restored, as the man page says."""
    absent = '[[gpu]]\nselect = { uuid = "GPU-absent" }\nmig = false\n'
    host.write_layout(ENTRY + 'profile = "3g.40gb"\nplacement = 4\n' + absent)
    assert host.run("apply").code == 1
    host.write_layout(ENTRY + 'profile = "3g.40gb"\nplacement = 4\n')
    assert host.run("verify").code == 0
    page = " ".join((ROOT / "docs" / "migrestore.8").read_text().split())
    assert "but the GPUs that are present are still restored" in page
    assert "a missing GPU or a driver that is not loaded is an error" not in page
