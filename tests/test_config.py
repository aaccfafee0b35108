"""The layout file: parsing, every error message, reading files and the digest."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

from migrestore import config, metrics
from migrestore.errors import ConfigError, ExitCode
from migrestore.model import (
    ComputeSpec,
    DesiredNode,
    GpuSpec,
    InstanceSpec,
    RestoreOptions,
    Selector,
    SelectorKind,
)

SOURCE = "/etc/migrestore/migrestore.toml"
EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "migrestore.toml"
GPU = 'version = 1\n[[gpu]]\nselect = "all"\n'
INSTANCE = GPU + "[[gpu.instance]]\n"
ONE_INSTANCE = INSTANCE + 'profile = "3g.40gb"\n'
PROFILE_WANTED = 'must be a profile name such as "3g.40gb" or a numeric profile id'


def parse_error(text: str) -> str:
    """The message parse raises for `text` (which must be wrong)."""
    with pytest.raises(ConfigError) as caught:
        config.parse(text, SOURCE)
    return str(caught.value)


def uncomment_settings(text: str) -> str:
    """Remove the `#` from the example's settings (`#key`, `#[table]` and their indented lines)."""
    lines, in_setting = [], False
    for line in text.splitlines():
        in_setting = bool(re.match(r"#\S", line) or (in_setting and line.startswith("#  ")))
        lines.append(line[1:] if in_setting else line)
    return "\n".join(lines) + "\n"


class TestParse:
    """What a correct file turns into."""

    def test_version_only_is_an_empty_layout(self) -> None:
        """A file with only the version governs no GPU and keeps the restore defaults."""
        assert config.parse("version = 1\n", SOURCE) == DesiredNode(gpus=(), source=SOURCE)

    def test_full_file(self) -> None:
        """Every key of the format lands in the model, with its key path."""
        text = """
            version = 1
            [restore]
            stop-units = ["nvsm.service"]
            refresh-units = []
            driver-timeout = 30
            [[gpu]]
            select = "all"
            [[gpu]]
            select = { model = "NVIDIA H100 80GB HBM3" }
            mig = true
              [[gpu.instance]]
              profile = "MIG 3g.40gb"
              placement = 4
              compute = ["1c.3g.40gb", { profile = "2c.3g.40gb", placement = 1 }]
              [[gpu.instance]]
              profile = 19
              count = 2
              compute = []
            [[gpu]]
            select = { index = 3 }
            mig = false
        """
        instances = (
            InstanceSpec(
                "MIG 3g.40gb",
                placement=4,
                compute=(
                    ComputeSpec("1c.3g.40gb", where="gpu[1].instance[0].compute[0]"),
                    ComputeSpec("2c.3g.40gb", 1, where="gpu[1].instance[0].compute[1]"),
                ),
                where="gpu[1].instance[0]",
            ),
            InstanceSpec(19, count=2, compute=(), where="gpu[1].instance[1]"),
        )
        model = Selector(SelectorKind.MODEL, "NVIDIA H100 80GB HBM3")
        assert config.parse(text, SOURCE) == DesiredNode(
            gpus=(
                GpuSpec(Selector(SelectorKind.ALL), where="gpu[0]"),
                GpuSpec(model, instances=instances, where="gpu[1]"),
                GpuSpec(Selector(SelectorKind.INDEX, 3), mig=False, where="gpu[2]"),
            ),
            restore=RestoreOptions(("nvsm.service",), (), 30.0),
            source=SOURCE,
        )

    def test_compute_omitted_means_default(self) -> None:
        """No `compute` key gives compute=None (one full-size compute instance)."""
        desired = config.parse(ONE_INSTANCE, SOURCE)
        assert desired.gpus[0].instances[0].compute is None

    @pytest.mark.parametrize(
        "written",
        ["0000:3b:00.0", "00000000:3B:00.0", "3b:00.0", "3B:00.0", " 0:3b:0.0 "],
    )
    def test_pci_is_normalised(self, written: str) -> None:
        """Every spelling of a PCI bus id is stored in NVML's 8-digit upper-case form."""
        desired = config.parse(f'version = 1\n[[gpu]]\nselect = {{ pci = "{written}" }}\n', SOURCE)
        assert desired.gpus[0].selector == Selector(SelectorKind.PCI, "00000000:3B:00.0")

    def test_uuid_is_stripped(self) -> None:
        """Spaces around a UUID are dropped."""
        text = 'version = 1\n[[gpu]]\nselect = { uuid = " GPU-ab12 " }\n'
        assert config.parse(text, SOURCE).gpus[0].selector == Selector(
            SelectorKind.UUID, "GPU-ab12"
        )

    def test_driver_timeout_may_be_fractional(self) -> None:
        """driver-timeout accepts a float."""
        text = "version = 1\n[restore]\ndriver-timeout = 2.5\n"
        assert config.parse(text, SOURCE).restore.driver_timeout == 2.5

    def test_metrics_dir(self) -> None:
        """metrics-dir lands in the model as written; without it the default applies (None)."""
        text = 'version = 1\n[restore]\nmetrics-dir = "/srv/node-exporter"\n'
        assert config.parse(text, SOURCE).restore.metrics_dir == "/srv/node-exporter"
        assert config.parse("version = 1\n", SOURCE).restore.metrics_dir is None

    def test_empty_gpu_array(self) -> None:
        """`gpu = []` is an empty layout too."""
        assert config.parse("version = 1\ngpu = []\n", SOURCE).gpus == ()


ERRORS = [
    # the document and its version
    ("", "version: missing; the file must start with version = 2"),
    ("version = 3", "version: unsupported version 3; this migrestore reads versions 1 to 2"),
    ("version = 0", "version: unsupported version 0; this migrestore reads versions 1 to 2"),
    ('version = "1"', 'version: must be an integer such as 2, got "1"'),
    ("version = true", "version: must be an integer such as 2, got true"),
    ("version = 1.0", "version: must be an integer such as 2, got 1.0"),
    ("version = 1979-05-27", "version: must be an integer such as 2, got a date"),
    (
        'version = 1\n[[gpu]]\nselect = { device-id = "0x233510DE" }\n',
        "version: is 1, but the file uses select.device-id, optional, geometry, on-failure, "
        "consumer, managed, pre-apply or the like (version 2); "
        "write version = 2",
    ),
    (
        'version = 1\n[[gpu]]\nselect = "all"\noptional = true\n',
        "version: is 1, but the file uses select.device-id, optional, geometry, on-failure, "
        "consumer, managed, pre-apply or the like (version 2); "
        "write version = 2",
    ),
    (
        'version = 2\n[[gpu]]\nselect = { device-id = "20F1" }\n',
        'gpu[0].select.device-id: must be a PCI device id such as "0x20F110DE" (optionally ":0x" '
        'and the subsystem id), got "20F1"',
    ),
    (
        'version = 2\n[[gpu]]\nselect = "all"\noptional = "yes"\n',
        'gpu[0].optional: must be true or false, got "yes"',
    ),
    ("version = 1\ngpus = []", "gpus: unknown key (known here: version, restore, gpu)"),
    ('"a b" = 1', '"a b": unknown key (known here: version, restore, gpu)'),
    ("version = 1\nx = [1,,]\n", "line 2, column 8: not valid TOML: invalid value"),
    ("version = 1\nversion = 1\n", "line 2, column 12: not valid TOML: cannot overwrite a value"),
    ("version = ", "end of document: not valid TOML: invalid value"),
    # [restore]
    ("version = 1\nrestore = 1", "restore: must be a table, got 1"),
    (
        "version = 1\n[restore]\nstop_units = []",
        "restore.stop_units: unknown key (known here: stop-units, refresh-units, driver-timeout, "
        "strict-profile-names, metrics-dir, on-failure, consumer, pre-apply)",
    ),
    (
        'version = 1\n[restore]\nstop-units = "nvsm.service"',
        'restore.stop-units: must be an array of unit names such as ["nvsm.service"], '
        'got "nvsm.service"',
    ),
    (
        'version = 1\n[restore]\nstop-units = ["nvsm"]',
        'restore.stop-units[0]: must be a systemd unit name such as "nvsm.service", got "nvsm"',
    ),
    (
        'version = 1\n[restore]\nrefresh-units = ["a.service", 7]',
        'restore.refresh-units[1]: must be a systemd unit name such as "nvsm.service", got 7',
    ),
    (
        "version = 1\n[restore]\ndriver-timeout = 0",
        "restore.driver-timeout: must be a number of seconds > 0, got 0",
    ),
    (
        "version = 1\n[restore]\ndriver-timeout = -5.5",
        "restore.driver-timeout: must be a number of seconds > 0, got -5.5",
    ),
    (
        "version = 1\n[restore]\ndriver-timeout = true",
        "restore.driver-timeout: must be a number of seconds > 0, got true",
    ),
    (
        'version = 1\n[restore]\ndriver-timeout = "120"',
        'restore.driver-timeout: must be a number of seconds > 0, got "120"',
    ),
    (
        "version = 1\n[restore]\ndriver-timeout = inf",
        "restore.driver-timeout: must be a number of seconds > 0, got inf",
    ),
    (
        'version = 1\n[restore]\nmetrics-dir = "metrics"',
        'restore.metrics-dir: must be an absolute directory path such as "/srv/metrics", '
        'got "metrics"',
    ),
    (
        "version = 1\n[restore]\nmetrics-dir = false",
        'restore.metrics-dir: must be an absolute directory path such as "/srv/metrics", got false',
    ),
    # [[gpu]]
    (
        'version = 1\n[gpu]\nselect = "all"',
        "gpu: must be an array of tables ([[gpu]]), got a table",
    ),
    ("version = 1\ngpu = [1]", "gpu[0]: must be a table, got 1"),
    (
        GPU + "mode = true",
        "gpu[0].mode: unknown key (known here: select, mig, instance, optional, on-failure, "
        "managed)",
    ),
    ("version = 1\n[[gpu]]\nmig = true", 'gpu[0].select: missing; for example select = "all"'),
    (
        'version = 1\n[[gpu]]\nselect = "al"',
        'gpu[0].select: must be "all" or a table such as { uuid = "GPU-..." }, got "al"',
    ),
    (
        "version = 1\n[[gpu]]\nselect = 3",
        'gpu[0].select: must be "all" or a table such as { uuid = "GPU-..." }, got 3',
    ),
    (
        "version = 1\n[[gpu]]\nselect = {}",
        "gpu[0].select: must name exactly one of uuid, pci, index, device-id, model, "
        "got an empty table",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { uuid = "GPU-1", index = 1 }',
        "gpu[0].select: must name exactly one of uuid, pci, index, device-id, model, "
        "got uuid and index",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { serial = "1" }',
        "gpu[0].select.serial: unknown key (known here: uuid, pci, index, device-id, model)",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { uuid = "MIG-5d5b" }',
        'gpu[0].select.uuid: must be a GPU UUID such as "GPU-5d5ba0d6-...", got "MIG-5d5b"',
    ),
    (
        'version = 1\n[[gpu]]\nselect = { uuid = "GPU-" }',
        'gpu[0].select.uuid: must be a GPU UUID such as "GPU-5d5ba0d6-...", got "GPU-"',
    ),
    (
        'version = 1\n[[gpu]]\nselect = { pci = "3b:00" }',
        'gpu[0].select.pci: must be a PCI bus id such as "0000:3b:00.0", got "3b:00"',
    ),
    (
        'version = 1\n[[gpu]]\nselect = { pci = "0000:3b:20.0" }',
        'gpu[0].select.pci: must be a PCI bus id such as "0000:3b:00.0", got "0000:3b:20.0"',
    ),
    (
        "version = 1\n[[gpu]]\nselect = { pci = 59 }",
        'gpu[0].select.pci: must be a PCI bus id such as "0000:3b:00.0", got 59',
    ),
    (
        "version = 1\n[[gpu]]\nselect = { index = -1 }",
        "gpu[0].select.index: must be an integer >= 0, got -1",
    ),
    (
        "version = 1\n[[gpu]]\nselect = { index = true }",
        "gpu[0].select.index: must be an integer >= 0, got true",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { model = " " }',
        'gpu[0].select.model: must be a GPU model name such as "NVIDIA H100 80GB HBM3", got " "',
    ),
    (GPU + 'mig = "yes"', 'gpu[0].mig: must be true or false, got "yes"'),
    (GPU + "mig = 1", "gpu[0].mig: must be true or false, got 1"),
    (
        GPU + 'mig = false\n[[gpu.instance]]\nprofile = "1g.10gb"',
        "gpu[0].instance: not allowed with mig = false (MIG off means no instances)",
    ),
    (
        "version = 1\n[[gpu]]\nselect = { index = 1 }\n[[gpu]]\nselect = { index = 1 }",
        "gpu[1].select: same selector as gpu[0].select (index=1); merge the two entries",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { pci = "3b:00.0" }\n'
        '[[gpu]]\nselect = { pci = "0000:3B:00.0" }',
        "gpu[1].select: same selector as gpu[0].select (pci=00000000:3B:00.0); "
        "merge the two entries",
    ),
    (
        'version = 1\n[[gpu]]\nselect = { model = "NVIDIA A30" }\n'
        '[[gpu]]\nselect = { model = "nvidia a30" }',
        "gpu[1].select: same selector as gpu[0].select (model=nvidia a30); merge the two entries",
    ),
    (
        GPU + '[[gpu]]\nselect = "all"',
        "gpu[1].select: same selector as gpu[0].select (all); merge the two entries",
    ),
    # [[gpu.instance]]
    (
        GPU + "instance = 3",
        "gpu[0].instance: must be an array of tables ([[gpu.instance]]), got 3",
    ),
    (
        ONE_INSTANCE + "placment = 0",
        "gpu[0].instance[0].placment: unknown key "
        "(known here: profile, placement, count, compute, geometry)",
    ),
    (
        ONE_INSTANCE + "geometry = { slices = 3, size = 4 }",
        "gpu[0].instance[0].geometry.memory-mib: missing; "
        "for example geometry = { slices = 3, size = 4, memory-mib = 40192 }",
    ),
    (
        ONE_INSTANCE + 'geometry = { slices = "3", size = 4, memory-mib = 40192 }',
        'gpu[0].instance[0].geometry.slices: must be a positive integer, got "3"',
    ),
    (
        ONE_INSTANCE + "geometry = { slices = 3, size = 4, memory-mib = 40192, sms = 60 }",
        "gpu[0].instance[0].geometry.sms: unknown key (known here: slices, size, memory-mib)",
    ),
    (
        INSTANCE + "count = 1",
        'gpu[0].instance[0].profile: missing; for example profile = "3g.40gb"',
    ),
    (INSTANCE + "profile = true", f"gpu[0].instance[0].profile: {PROFILE_WANTED}, got true"),
    (INSTANCE + "profile = -1", f"gpu[0].instance[0].profile: {PROFILE_WANTED}, got -1"),
    (INSTANCE + "profile = 1.5", f"gpu[0].instance[0].profile: {PROFILE_WANTED}, got 1.5"),
    (INSTANCE + 'profile = ""', f'gpu[0].instance[0].profile: {PROFILE_WANTED}, got ""'),
    (
        ONE_INSTANCE + "placement = -1",
        "gpu[0].instance[0].placement: must be an integer >= 0, got -1",
    ),
    (
        ONE_INSTANCE + "placement = true",
        "gpu[0].instance[0].placement: must be an integer >= 0, got true",
    ),
    (
        ONE_INSTANCE + 'placement = "4"',
        'gpu[0].instance[0].placement: must be an integer >= 0, got "4"',
    ),
    (
        ONE_INSTANCE + 'count = "two"',
        'gpu[0].instance[0].count: must be a positive integer, got "two"',
    ),
    (ONE_INSTANCE + "count = 0", "gpu[0].instance[0].count: must be a positive integer, got 0"),
    (
        ONE_INSTANCE + "count = true",
        "gpu[0].instance[0].count: must be a positive integer, got true",
    ),
    (ONE_INSTANCE + "count = 2.0", "gpu[0].instance[0].count: must be a positive integer, got 2.0"),
    (
        ONE_INSTANCE + "placement = 0\ncount = 2",
        "gpu[0].instance[0].count: must be 1 when a placement is given, got 2; "
        "write one [[gpu.instance]] per placement",
    ),
    # compute
    (
        ONE_INSTANCE + 'compute = "1c.3g.40gb"',
        'gpu[0].instance[0].compute: must be an array such as ["1c.3g.40gb", "2c.3g.40gb"], '
        'got "1c.3g.40gb"',
    ),
    (
        ONE_INSTANCE + "compute = [true]",
        f"gpu[0].instance[0].compute[0]: {PROFILE_WANTED} or "
        '{ profile = "...", placement = N }, got true',
    ),
    (
        ONE_INSTANCE + 'compute = ["1c.3g.40gb", ["x"]]',
        f"gpu[0].instance[0].compute[1]: {PROFILE_WANTED} or "
        '{ profile = "...", placement = N }, got an array',
    ),
    (
        ONE_INSTANCE + "compute = [-3]",
        f"gpu[0].instance[0].compute[0]: {PROFILE_WANTED}, got -3",
    ),
    (
        ONE_INSTANCE + "compute = [{ placement = 0 }]",
        'gpu[0].instance[0].compute[0].profile: missing; for example profile = "1c.3g.40gb"',
    ),
    (
        ONE_INSTANCE + 'compute = [{ profile = "1c.3g.40gb", size = 1 }]',
        "gpu[0].instance[0].compute[0].size: unknown key (known here: profile, placement)",
    ),
    (
        ONE_INSTANCE + 'compute = [{ profile = "1c.3g.40gb", placement = -2 }]',
        "gpu[0].instance[0].compute[0].placement: must be an integer >= 0, got -2",
    ),
    (
        ONE_INSTANCE + "compute = [{ profile = false }]",
        f"gpu[0].instance[0].compute[0].profile: {PROFILE_WANTED}, got false",
    ),
    # the key path counts entries
    (
        GPU + "[[gpu]]\nselect = { index = 0 }\n"
        '[[gpu.instance]]\nprofile = "1g.10gb"\n[[gpu.instance]]\nprofile = 9\ncount = "two"',
        'gpu[1].instance[1].count: must be a positive integer, got "two"',
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_error_message(text: str, message: str) -> None:
    """Each mistake is one ConfigError line: file, key path, what is wrong."""
    assert parse_error(text) == f"{SOURCE}: {message}"


def test_config_error_exits_2() -> None:
    """A layout error maps to the usage/config exit code."""
    with pytest.raises(ConfigError) as caught:
        config.parse("version = 3\n", SOURCE)
    assert caught.value.exit_code is ExitCode.USAGE


class TestLoad:
    """Reading the file from disk."""

    def test_reads_and_names_the_file(self, tmp_path: Path) -> None:
        """load parses the file and records its path as the source."""
        path = tmp_path / "migrestore.toml"
        path.write_text(ONE_INSTANCE)
        desired = config.load(path)
        assert desired.source == str(path)
        assert desired.gpus[0].instances[0].profile == "3g.40gb"

    def test_errors_name_the_file(self, tmp_path: Path) -> None:
        """Errors in a loaded file start with its path."""
        path = tmp_path / "migrestore.toml"
        path.write_text("version = 3\n")
        with pytest.raises(ConfigError, match=re.escape(f"{path}: version: unsupported")):
            config.load(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is a one-line error."""
        path = tmp_path / "absent.toml"
        with pytest.raises(ConfigError) as caught:
            config.load(path)
        assert str(caught.value) == f"{path}: cannot read: No such file or directory"

    def test_directory(self, tmp_path: Path) -> None:
        """A directory given as the layout file is a one-line error."""
        with pytest.raises(ConfigError) as caught:
            config.load(tmp_path)
        assert str(caught.value) == f"{tmp_path}: is a directory, not a regular file"

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are named by their line."""
        path = tmp_path / "latin1.toml"
        path.write_bytes(b"version = 1\n# caf\xe9\n")
        with pytest.raises(ConfigError) as caught:
            config.load(path)
        assert str(caught.value) == f"{path}: line 2: not UTF-8 text"


class TestExample:
    """The commented example shipped as /etc/migrestore/migrestore.toml."""

    def test_restores_nothing(self) -> None:
        """As shipped it is valid and selects no GPU, with default restore options."""
        assert config.load(EXAMPLE) == DesiredNode(gpus=(), source=str(EXAMPLE))

    def test_settings_are_valid_when_uncommented(self) -> None:
        """Uncommenting every example setting gives a valid file with three entries."""
        desired = config.parse(uncomment_settings(EXAMPLE.read_text()), "example")
        kinds = [spec.selector.kind for spec in desired.gpus]
        assert kinds == [SelectorKind.ALL, SelectorKind.UUID, SelectorKind.PCI]

    def test_documented_defaults_are_the_real_ones(self) -> None:
        """The [restore] values shown in the example are the built-in defaults."""
        desired = config.parse(uncomment_settings(EXAMPLE.read_text()), "example")
        # metrics-dir is unset by default: a real host then uses node_exporter's directory, which
        # the example shows (a simulated host uses none unless one is given).
        assert desired.restore.metrics_dir == metrics.DEFAULT_DIR
        assert replace(desired.restore, metrics_dir=None) == RestoreOptions()


class TestDigest:
    """The file's fingerprint for the run record."""

    def test_is_sha256_of_the_bytes(self, tmp_path: Path) -> None:
        """digest is the hex SHA-256 of the file content."""
        path = tmp_path / "migrestore.toml"
        path.write_bytes(b"version = 1\n")
        assert config.digest(path) == hashlib.sha256(b"version = 1\n").hexdigest()

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a ConfigError."""
        with pytest.raises(ConfigError, match="cannot read"):
            config.digest(tmp_path / "absent.toml")
