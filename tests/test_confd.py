"""Drop-ins: conf.d/*.toml beside the layout file, merged over it in name order (issue 12)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import config
from migrestore.errors import ConfigError
from migrestore.model import GpuSpec
from tests.simhost import Host, make_host, mutations

H100 = "NVIDIA H100 80GB HBM3"
A30 = "NVIDIA A30"
FLEET = f"""version = 1
[restore]
driver-timeout = 60
stop-units = ["nvsm.service", "dcgm.service"]

[[gpu]]
select = {{ model = "{H100}" }}
[[gpu.instance]]
profile = "3g.40gb"
count = 2

[[gpu]]
select = {{ model = "{A30}" }}
mig = false
"""


def drop_in(host: Host, name: str, text: str) -> Path:
    """Write conf.d/NAME beside the host's layout file."""
    directory = host.config.parent / "conf.d"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(name="host")
def fixture_host(tmp_path: Path) -> Host:
    """Two H100s and an A30 with the fleet file as their layout."""
    return make_host(tmp_path, (H100, 2), (A30, 1), layout=FLEET)


def test_a_restore_key_is_replaced_key_by_key_and_a_list_as_a_whole(host: Host) -> None:
    """A drop-in's stop-units replaces the fleet's list; driver-timeout it leaves alone."""
    drop_in(host, "50-host.toml", 'version = 1\n[restore]\nstop-units = ["slurmd.service"]\n')
    restore = config.load(host.config).restore
    assert restore.stop_units == ("slurmd.service",)
    assert restore.driver_timeout == 60.0


def test_a_drop_in_may_set_every_restore_key(host: Host) -> None:
    """Each [restore] key a layout file may give, a drop-in may give too (none is an internal
    error when merged)."""
    drop_in(
        host,
        "50-host.toml",
        'version = 2\n[restore]\non-failure = "disable-mig"\nconsumer = "slurm"\n'
        'pre-apply = ["/usr/local/bin/site-check"]\nmetrics-dir = "/srv/metrics"\n'
        "strict-profile-names = true\nrefresh-units = []\n",
    )
    restore = config.load(host.config).restore
    assert (restore.on_failure.value, str(restore.consumer)) == ("disable-mig", "slurm")
    assert restore.pre_apply == ("/usr/local/bin/site-check",)
    assert (restore.metrics_dir, restore.strict_profile_names) == ("/srv/metrics", True)
    assert restore.refresh_units == ()
    assert restore.driver_timeout == 60.0


def test_drop_ins_merge_in_name_order(host: Host) -> None:
    """The later name wins; names sort by code point, so 9-late.toml comes after 10-early.toml."""
    drop_in(host, "9-late.toml", "version = 1\n[restore]\ndriver-timeout = 9\n")
    drop_in(host, "10-early.toml", "version = 1\n[restore]\ndriver-timeout = 10\n")
    assert config.load(host.config).restore.driver_timeout == 9.0
    assert [Path(f).name for f in config.merged(host.config).files[1:]] == [
        "10-early.toml",
        "9-late.toml",
    ]


def test_only_visible_toml_files_are_drop_ins(host: Host) -> None:
    """A backup, an editor's hidden file and a README in conf.d are not read (they are broken)."""
    for name in ("50-host.toml.bak", ".50-host.toml", "README"):
        drop_in(host, name, "not TOML at all [")
    assert config.merged(host.config).files == (str(host.config),)
    assert host.run("check").code == 0


def test_an_entry_with_the_same_selector_replaces_the_fleet_entry(host: Host) -> None:
    """The host's A30 entry replaces the fleet's (MIG off) in place; apply and verify use it."""
    drop_in(
        host,
        "50-host.toml",
        f'version = 1\n[[gpu]]\nselect = {{ model = "{A30}" }}\n'
        '[[gpu.instance]]\nprofile = "4g.24gb"\n',
    )
    merged = config.load(host.config)
    assert [str(g.selector) for g in merged.gpus] == [f"model={H100}", f"model={A30}"]
    assert host.run("apply").code == 0
    assert host.run("verify").code == 0
    state = json.loads(host.run("status", "--json").out)
    a30 = next(g for g in state["gpus"] if g["name"] == A30)
    assert [i["profile"] for i in a30["instances"]] == ["4g.24gb"]


def test_a_host_exception_beats_the_fleet_entry_by_precedence(host: Host) -> None:
    """An index entry in a drop-in is added; it governs GPU 1, the fleet's model entry GPU 0."""
    drop_in(
        host,
        "50-host.toml",
        'version = 1\n[[gpu]]\nselect = { index = 1 }\n[[gpu.instance]]\nprofile = "7g.80gb"\n',
    )
    assert host.run("apply").code == 0
    state = json.loads(host.run("status", "--json").out)
    profiles = [[i["profile"] for i in g["instances"]] for g in state["gpus"][:2]]
    assert profiles == [["3g.40gb", "3g.40gb"], ["7g.80gb"]]


def test_an_error_in_a_drop_in_names_the_drop_in_and_the_key(host: Host) -> None:
    """A wrong type in a drop-in is one line naming that file and its key path; exit 2."""
    path = drop_in(host, "50-host.toml", 'version = 1\n[restore]\ndriver-timeout = "soon"\n')
    result = host.run("plan")
    assert result.code == 2
    assert result.err.splitlines()[0].startswith(
        f"migrestore: error: {path}: restore.driver-timeout: must be a number"
    )


def test_a_planner_error_in_a_drop_in_entry_names_the_drop_in(host: Host) -> None:
    """A profile the GPU lacks, asked by a drop-in's entry, is reported against that file."""
    path = drop_in(
        host,
        "50-host.toml",
        'version = 1\n[[gpu]]\nselect = { index = 0 }\n[[gpu.instance]]\nprofile = "9g.1tb"\n',
    )
    result = host.run("apply")
    assert result.code == 2
    assert f"{path}: gpu[0].instance[0].profile: unknown profile" in result.err
    assert mutations(host.counters()) == 0


def test_each_drop_in_carries_its_own_version(host: Host) -> None:
    """A drop-in without a version line is refused at its own version key."""
    path = drop_in(host, "50-host.toml", '[restore]\nstop-units = ["slurmd.service"]\n')
    result = host.run("verify")
    assert result.code == 2
    assert f"{path}: version: missing" in result.err


def test_a_conf_d_that_is_not_a_directory_is_one_line(host: Host) -> None:
    """conf.d as a regular file is a one-line error (exit 2), not silently ignored."""
    (host.config.parent / "conf.d").write_text("")
    result = host.run("check")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "conf.d: not a directory" in result.err


def test_without_the_layout_file_the_drop_ins_are_not_read(host: Host) -> None:
    """A missing layout file is the error, even beside a broken conf.d."""
    (host.config.parent / "conf.d").write_text("")
    host.config.unlink()
    result = host.run("check")
    assert result.code == 2
    assert f"{host.config}: cannot read: No such file or directory" in result.err
    with pytest.raises(ConfigError, match=f"{host.config}: cannot read"):
        config.digest(host.config)


def test_a_drop_in_others_can_write_is_refused_where_the_file_would_be(tmp_path: Path) -> None:
    """With root_only (the real host), a group- or world-writable drop-in is refused by name."""
    if os.geteuid() != 0:
        pytest.skip("needs a root-owned tree (the tests run as root in CI)")
    host = make_host(tmp_path, (H100, 1), layout=FLEET)
    os.chmod(tmp_path, 0o755)
    os.chmod(host.config, 0o644)
    path = drop_in(host, "50-host.toml", "version = 1\n")
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    config.load(host.config, root_only=True)
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError, match=str(path)):
        config.load(host.config, root_only=True)


def test_the_digest_covers_the_drop_ins(host: Host) -> None:
    """Without drop-ins the record's digest is the file's SHA-256; a drop-in changes it."""
    alone = config.load(host.config).sha256
    assert alone == hashlib.sha256(host.config.read_bytes()).hexdigest()
    path = drop_in(host, "50-host.toml", "version = 1\n")
    with_drop_in = config.load(host.config).sha256
    assert with_drop_in != alone
    assert config.digest(host.config) == with_drop_in
    path.write_text("version = 1\n# changed\n")
    assert config.load(host.config).sha256 != with_drop_in


def test_check_show_prints_the_merged_layout_with_each_part_s_file(host: Host) -> None:
    """--show names the file of each [restore] key and entry, and says which entry replaced one;
    written as a layout file of its own, it plans exactly as the file with its drop-ins."""
    path = drop_in(
        host,
        "50-host.toml",
        f'version = 2\n[restore]\nstop-units = []\n[[gpu]]\nselect = {{ model = "{A30}" }}\n'
        '[[gpu.instance]]\nprofile = "2g.12gb"\ncompute = ["1c.2g.12gb", '
        '{ profile = "1c.2g.12gb", placement = 1 }]\n'
        '[[gpu]]\nselect = { index = 1 }\noptional = true\n[[gpu.instance]]\nprofile = "7g.80gb"\n'
        "placement = 0\n",
    )
    shown = host.run("check", "--show")
    assert shown.code == 0
    assert f"# from {host.config}\ndriver-timeout = 60.0\n" in shown.out
    assert f"# from {path}\nstop-units = []\n" in shown.out
    assert f"# from {path} gpu[0], replacing {host.config} gpu[1] (same selector)" in shown.out
    assert f"# from {path} gpu[1]\n" in shown.out
    assert "version = 2\n" in shown.out  # optional needs version 2
    expected = host.run("plan", "--json").out
    (host.config.parent / "alone").mkdir()
    alone = make_host(host.config.parent / "alone", (H100, 2), (A30, 1), layout=shown.out)
    planned = json.loads(alone.run("plan", "--json").out)
    assert [g["steps"] for g in planned["gpus"]] == [
        g["steps"] for g in json.loads(expected)["gpus"]
    ]
    assert planned["gpus"][2]["steps"]  # the drop-in's A30 layout, not the fleet's MIG off


def test_a_tie_across_files_names_both_files(host: Host) -> None:
    """A drop-in's uuid entry and the file's index entry for the same GPU tie: one line naming
    each entry with its own file, exit 2, nothing touched."""
    uuid = json.loads(host.run("status", "--json").out)["gpus"][0]["uuid"]
    host.write_layout(FLEET + "[[gpu]]\nselect = { index = 0 }\nmig = false\n")
    path = drop_in(host, "50-host.toml", f'version = 1\n[[gpu]]\nselect = {{ uuid = "{uuid}" }}\n')
    result = host.run("apply")
    assert result.code == 2
    assert f"error: {host.config}: gpu[2].select, {path}: gpu[0].select: both select GPU 0" in (
        result.err
    )
    assert mutations(host.counters()) == 0


def test_check_show_reads_back_to_the_same_layout_with_every_key(host: Host) -> None:
    """Every key a layout may give (managed, on-failure, gpus, the version-2 [restore] keys)
    survives --show: the printed file parses to the same layout as the file with its drop-in."""
    drop_in(
        host,
        "50-host.toml",
        'version = 2\n[restore]\non-failure = "disable-mig"\nconsumer = "slurm"\ngpus = 3\n'
        'adopt-replaced = true\npre-apply = ["/usr/local/bin/site-check"]\n'
        "[[gpu]]\nselect = { index = 2 }\nmanaged = false\n"
        '[[gpu]]\nselect = { index = 1 }\ngpus = 3\non-failure = "leave"\n'
        '[[gpu.instance]]\nprofile = "7g.80gb"\nplacement = 0\n',
    )
    shown = host.run("check", "--show")
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[1:].count("version = 2") == 1
    again = config.parse(shown.out, "shown")
    merged = config.load(host.config)
    assert again.restore == merged.restore
    # Each entry where the merge put it; `where` counts entries in its own file.
    assert [unplaced(g) for g in again.gpus] == [unplaced(g) for g in merged.gpus]


def unplaced(spec: GpuSpec) -> GpuSpec:
    """The entry without its key paths (`gpu[3].instance[0]`), which name its place in a file."""
    instances = tuple(replace(i, where="") for i in spec.instances)
    return replace(spec, where="", instances=instances)
