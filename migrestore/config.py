"""The layout file: TOML -> DesiredNode with key-path errors (writer.py writes layout files).

`load`/`parse` check everything that can be checked without a GPU: keys, types, numbers, the
version, the shape of selectors. Every problem is one ConfigError line
`<file>: <key path>: <what is wrong>`. Profile names, capacity and placements depend on each GPU's
profile table: the planner checks them. `load(root_only=True)` reads the file only if root alone
could have written it (`safepath`); `digest` serves the run records.

Drop-ins: every `*.toml` in `conf.d/` beside the layout file (/etc/migrestore/conf.d) is a layout
file of its own, checked alone (its errors name it), then merged over the main file in name order:
a `[restore]` key a later file gives replaces the earlier value (a list as a whole), and a
`[[gpu]]` entry replaces the earlier entry with the same selector, else it is added. `merged`
keeps where each entry and key came from (`check --show`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from migrestore import safepath, toml
from migrestore.errors import ConfigError
from migrestore.model import (
    ComputeSpec,
    Consumer,
    DesiredNode,
    GpuSpec,
    InstanceSpec,
    OnFailure,
    ProfileShape,
    RestoreOptions,
    Selector,
    SelectorKind,
)
from migrestore.selection import normalise_pci

FORMAT_VERSION = 2  # the newest this migrestore reads (and writes, when a file needs it)
# What each version added: a file using it must say at least that version, so that an older
# migrestore refuses the file at its version line rather than at the unknown key.
_SINCE_VERSION_2 = (
    "select.device-id",
    "optional",
    "geometry",
    "on-failure",
    "consumer",
    "managed",
    "pre-apply",
)
# Version 2 also added `gpus` (on an index entry) and [restore] `gpus` and `adopt-replaced`.
# The [restore] keys a version-1 file may not give:
RESTORE_KEYS_SINCE_VERSION_2 = ("on-failure", "consumer", "pre-apply", "gpus", "adopt-replaced")

# Bounds checked before any work: a layout file is small, shallow and holds small numbers.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 8  # document > gpu > [n] > instance > [n] > compute > [n] > profile is the deepest
MAX_ITEMS = 256  # entries in any one array
MAX_TEXT = 256  # characters in any one string or key
MAX_COUNT = 64  # `count`: no GPU has more than 7 GPU instances
MAX_SMALL_INT = 4095  # placements, profile ids, GPU indices
MAX_DRIVER_TIMEOUT = 86400.0  # a day
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

_TOP_KEYS = ("version", "restore", "gpu")
_RESTORE_KEYS = (
    "stop-units",
    "refresh-units",
    "driver-timeout",
    "strict-profile-names",
    "metrics-dir",
    "on-failure",
    "consumer",
    "pre-apply",
    "gpus",
    "adopt-replaced",
)
_GPU_KEYS = ("select", "mig", "instance", "optional", "on-failure", "managed", "gpus")
_SELECT_KEYS = ("uuid", "pci", "index", "device-id", "model")
_DEVICE_ID = re.compile(r"0x([0-9a-f]{8})(?::0x([0-9a-f]{8}))?", re.IGNORECASE)
_INSTANCE_KEYS = ("profile", "placement", "count", "compute", "geometry")
_GEOMETRY_KEYS = ("slices", "size", "memory-mib")
MAX_MEMORY_MIB = 1 << 24  # 16 TiB: no GPU instance has more
_COMPUTE_KEYS = ("profile", "placement")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_UNIT_NAME = re.compile(
    r"[\w:.\\@-]+\.(service|socket|target|device|mount|automount|swap|path|timer|slice|scope)"
)
_TOML_POSITION = re.compile(
    r"(?P<problem>.*) \(at (?P<where>line \d+, column \d+|end of document)\)"
)
_PROFILE = 'a profile name such as "3g.40gb" or a numeric profile id'

T = TypeVar("T")


# ---- reading ----


def load(path: Path, *, root_only: bool = False) -> DesiredNode:
    """Read and check the layout file at `path`, with its drop-ins merged over it. With
    `root_only`, refuse them unless only root could have written them: each file, each directory
    above it and each link on the way, checked on the descriptors that were opened, and the file
    read from the one that was checked."""
    return merged(path, root_only=root_only).node


def parse(text: str, source: str = "<string>") -> DesiredNode:
    """Check a layout file's text; `source` names it in error messages."""
    return _parse(text, source)[0]


def digest(path: Path) -> str:
    """The SHA-256 recorded with every run: of the layout file's bytes; with drop-ins, of the
    `sha256sum` lines of the file and each drop-in, in the order they are merged."""
    main = read_regular_file(path)  # the file first: its errors come first
    return _digest([(path, main), *((p, read_regular_file(p)) for p in drop_ins(path))])


def _digest(files: Sequence[tuple[Path, bytes]]) -> str:
    if len(files) == 1:
        return hashlib.sha256(files[0][1]).hexdigest()
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {p}\n" for p, data in files)
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def _parse(text: str, source: str) -> tuple[DesiredNode, tuple[str, ...]]:
    """The file's layout and the `[restore]` keys it gives."""
    root = _Key(source)
    decoded = _decode_toml(text, source)
    _check_shape(decoded, root)
    document = _table(decoded, root, _TOP_KEYS)
    version = _check_version(document, root.child("version"))
    restore = RestoreOptions()
    if "restore" in document:
        restore = _restore(document["restore"], root.child("restore"), version)
    gpus = _array_of_tables(document.get("gpu", []), root.child("gpu"), _gpu)
    _check_needed_version(gpus, version, root.child("version"))
    _check_distinct_selectors(gpus, source)
    given = tuple(document.get("restore", {}))
    return DesiredNode(gpus=gpus, restore=restore, source=source), given


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text") from None


# ---- drop-ins (conf.d) ----

DROP_IN_DIRECTORY = "conf.d"
MAX_DROP_INS = 64
RESTORE_FIELDS = {  # each [restore] key and its RestoreOptions field
    "stop-units": "stop_units",
    "refresh-units": "refresh_units",
    "driver-timeout": "driver_timeout",
    "strict-profile-names": "strict_profile_names",
    "metrics-dir": "metrics_dir",
    "on-failure": "on_failure",
    "consumer": "consumer",
    "pre-apply": "pre_apply",
    "gpus": "gpus",
    "adopt-replaced": "adopt_replaced",
}


@dataclass(frozen=True)
class Merged:
    """The layout file with its drop-ins merged over it, and where each part came from."""

    node: DesiredNode
    files: tuple[str, ...]
    """The main file, then each drop-in, in the order they were merged."""
    restore_from: tuple[tuple[str, str], ...] = ()
    """Each `[restore]` key some file gives, with the last file that gave it."""
    replaced: tuple[tuple[GpuSpec, GpuSpec], ...] = ()
    """(entry, the earlier entry with the same selector it replaced)."""


def drop_in_directory(path: Path) -> Path:
    """`conf.d` in the directory of the layout file as named (/etc/migrestore/conf.d)."""
    return path.parent / DROP_IN_DIRECTORY


def drop_ins(path: Path) -> tuple[Path, ...]:
    """The drop-ins of the layout file at `path`: every `*.toml` in its `conf.d` (but names
    starting with a dot), in the order of their names (code points, as `ls` in the C locale);
    none when there is no `conf.d`."""
    directory = drop_in_directory(path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return ()
    except NotADirectoryError:
        raise ConfigError(
            f"{directory}: not a directory; drop-ins are *.toml files in a directory {directory}"
        ) from None
    except OSError as error:
        raise ConfigError(f"{directory}: cannot read: {error.strerror or error}") from None
    chosen = sorted(n for n in names if n.endswith(".toml") and not n.startswith("."))
    if len(chosen) > MAX_DROP_INS:
        raise ConfigError(f"{directory}: more than {MAX_DROP_INS} drop-ins ({len(chosen)})")
    return tuple(directory / name for name in chosen)


def merged(path: Path, *, root_only: bool = False) -> Merged:
    """The layout file at `path` and its drop-ins, each read and checked alone, then merged in
    name order: a later file's `[restore]` key replaces the value so far (a list as a whole); a
    later file's `[[gpu]]` entry replaces the entry with the same selector, else it is added."""
    data = read_regular_file(path, root_only=root_only)  # the file first: its errors come first
    files = [(path, data)]
    layers = [_parse(_decode(path, data), str(path))]
    for file in drop_ins(path):
        data = read_regular_file(file, root_only=root_only)
        node, given = _parse(_decode(file, data), str(file))
        # A drop-in's entries name their own file.
        node = replace(node, gpus=tuple(replace(g, source=str(file)) for g in node.gpus))
        files.append((file, data))
        layers.append((node, given))
    main = layers[0][0]
    restore, gpus = main.restore, list(main.gpus)
    restore_from = dict.fromkeys(layers[0][1], main.source)
    replaced: list[tuple[GpuSpec, GpuSpec]] = []
    for node, given in layers[1:]:
        restore = replace(
            restore,
            **{RESTORE_FIELDS[k]: getattr(node.restore, RESTORE_FIELDS[k]) for k in given},
        )
        restore_from.update((key, node.source) for key in given)
        for spec in node.gpus:
            same = next((i for i, g in enumerate(gpus) if _same_selector(g, spec)), None)
            if same is None:
                gpus.append(spec)
            else:
                replaced.append((spec, gpus[same]))
                gpus[same] = spec
    if len(gpus) > MAX_ITEMS:
        raise ConfigError(f"{path}: with its drop-ins, more than {MAX_ITEMS} [[gpu]] entries")
    node = DesiredNode(tuple(gpus), restore, main.source, sha256=_digest(files))
    return Merged(
        node, tuple(str(f) for f, _ in files), tuple(restore_from.items()), tuple(replaced)
    )


def _same_selector(one: GpuSpec, other: GpuSpec) -> bool:
    """The same selector, as two entries of one file may not have (case-insensitively)."""
    return _selector_identity(one) == _selector_identity(other)


def _selector_identity(spec: GpuSpec) -> tuple[SelectorKind, str]:
    return (spec.selector.kind, str(spec.selector.value).casefold())


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES, *, root_only: bool = False) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. A FIFO, device or directory is
    refused without blocking (O_NONBLOCK, then fstat of the descriptor that was opened). With
    `root_only`, also refused unless only root could have written it (`safepath`)."""
    fd, info = _open(path, root_only)
    try:
        _check_regular(path, info, limit)
        data = _read_at_most(fd, limit + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{path}: larger than {limit} bytes; not a layout file")
    return data


def _open(path: Path, root_only: bool) -> tuple[int, os.stat_result]:
    """A descriptor of `path` and its fstat (the caller closes it)."""
    if root_only:
        return safepath.open_root_only(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return fd, os.fstat(fd)
    except OSError as error:
        os.close(fd)
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None


def _check_regular(path: Path, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = {
            stat.S_IFDIR: "a directory",
            stat.S_IFIFO: "a FIFO",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket",
        }.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise ConfigError(f"{path}: is {kind}, not a regular file")
    if info.st_size > limit:
        raise ConfigError(f"{path}: {info.st_size} bytes, larger than {limit}; not a layout file")


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decode_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return toml.loads(text)
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    except toml.TOMLDecodeError as error:
        found = _TOML_POSITION.fullmatch(str(error))
        if found is None:
            raise ConfigError(f"{source}: not valid TOML: {error}") from None
        problem = found["problem"][:1].lower() + found["problem"][1:]
        raise ConfigError(f"{source}: {found['where']}: not valid TOML: {problem}") from None


@dataclass(frozen=True)
class _Key:
    """Where a value sits (file and key path); raises the one-line error about it."""

    source: str
    path: str = ""

    def child(self, name: str) -> _Key:
        label = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
        return _Key(self.source, f"{self.path}.{label}" if self.path else label)

    def item(self, index: int) -> _Key:
        return _Key(self.source, f"{self.path}[{index}]")

    def fail(self, problem: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {self.path}: {problem}")


def _check_shape(document: dict[str, Any], root: _Key) -> None:
    """Depth, array sizes, string lengths and control characters of everything the file gives,
    before any of it is interpreted (iteratively: nothing here can recurse too deep)."""
    stack: list[tuple[object, _Key, int]] = [(document, root, 0)]
    while stack:
        value, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            key.fail(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for name, item in value.items():
                _check_text(name, key.child(name), "key")
                stack.append((item, key.child(name), depth + 1))
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                key.fail(f"more than {MAX_ITEMS} entries ({len(value)})")
            stack.extend((item, key.item(i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, key, "value")


def _check_text(text: str, key: _Key, what: str) -> None:
    if len(text) > MAX_TEXT:
        key.fail(f"{what} longer than {MAX_TEXT} characters")
    bad = next((c for c in text if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
    if bad is not None:
        key.fail(f"{what} contains the control character U+{ord(bad):04X}")


def _describe(value: object) -> str:
    """A value as error messages show it: `"two"`, `true`, `1.5`, `a table`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _table(value: object, key: _Key, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        key.fail(f"must be a table, got {_describe(value)}")
    for name in value:
        if name not in known:
            key.child(name).fail(f"unknown key (known here: {', '.join(known)})")
    return value


def _array_of_tables(value: object, key: _Key, read: Callable[[object, _Key], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        header = re.sub(r"\[\d+\]", "", key.path)
        key.fail(f"must be an array of tables ([[{header}]]), got {_describe(value)}")
    return tuple(read(item, key.item(index)) for index, item in enumerate(value))


def _integer(value: object, key: _Key, minimum: int, maximum: int = MAX_SMALL_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        key.fail(f"must be {wanted}, got {_describe(value)}")
    if value > maximum:
        key.fail(f"must be an integer from {minimum} to {maximum}, got {_describe(value)}")
    return value


def _optional_integer(
    table: dict[str, Any], name: str, key: _Key, minimum: int, maximum: int = MAX_SMALL_INT
) -> int | None:
    if name not in table:
        return None
    return _integer(table[name], key.child(name), minimum, maximum)


def _text(value: object, key: _Key, wanted: str) -> str:
    if not isinstance(value, str) or not value.strip():
        key.fail(f"must be {wanted}, got {_describe(value)}")
    return value.strip()


def _profile(value: object, key: _Key) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return _integer(value, key, 0)
    text = _text(value, key, _PROFILE)
    digit = next((c for c in text if c.isdigit() and not c.isascii()), None)
    if digit is not None:
        key.fail(f"must be {_PROFILE}, got {_describe(text)} ({digit!r} is not an ASCII digit)")
    return text


def _required(table: dict[str, Any], name: str, key: _Key, example: str) -> object:
    if name not in table:
        key.child(name).fail(f"missing; for example {example}")
    return table[name]


def _check_version(document: dict[str, Any], key: _Key) -> int:
    if "version" not in document:
        key.fail(f"missing; the file must start with version = {FORMAT_VERSION}")
    version = document["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        key.fail(f"must be an integer such as {FORMAT_VERSION}, got {_describe(version)}")
    if not 1 <= version <= FORMAT_VERSION:
        key.fail(
            f"unsupported version {version}; this migrestore reads versions 1 to {FORMAT_VERSION}"
        )
    return version


def needed_version(gpus: Sequence[GpuSpec]) -> int:
    """The lowest file version that can say these entries (2 for device-id, optional,
    on-failure, managed, gpus or an instance's geometry)."""
    newer = any(
        s.optional
        or s.on_failure is not None
        or not s.managed
        or s.gpus is not None
        or s.selector.kind is SelectorKind.DEVICE_ID
        or any(i.shape is not None for i in s.instances)
        for s in gpus
    )
    return 2 if newer else 1


def _check_needed_version(gpus: Sequence[GpuSpec], version: int, key: _Key) -> None:
    needed = needed_version(gpus)
    if version < needed:
        key.fail(
            f"is {version}, but the file uses {', '.join(_SINCE_VERSION_2)} or the like "
            f"(version {needed}); "
            f"write version = {needed}"
        )


# ---- [restore] ----


def _restore(value: object, key: _Key, version: int) -> RestoreOptions:
    table = _table(value, key, _RESTORE_KEYS)
    defaults = RestoreOptions()
    for name in RESTORE_KEYS_SINCE_VERSION_2:
        if name in table and version < 2:
            key.child(name).fail(f"needs version = 2 (the file says version = {version})")
    consumer = None
    if "consumer" in table:
        consumer = Consumer(_choice(table["consumer"], key.child("consumer"), Consumer))
    return RestoreOptions(
        stop_units=_units(table, "stop-units", key, defaults.stop_units),
        refresh_units=_units(table, "refresh-units", key, defaults.refresh_units),
        driver_timeout=_seconds(table.get("driver-timeout", defaults.driver_timeout), key),
        strict_profile_names=_flag(table, "strict-profile-names", key),
        metrics_dir=_directory(table, "metrics-dir", key),
        on_failure=_on_failure(table, key) or defaults.on_failure,
        consumer=consumer,
        pre_apply=_command(table, "pre-apply", key),
        gpus=_optional_integer(table, "gpus", key, 1, MAX_ITEMS),
        adopt_replaced=_flag(table, "adopt-replaced", key),
    )


def _on_failure(table: dict[str, Any], key: _Key) -> OnFailure | None:
    """`on-failure = "leave" | "disable-mig"`, None when not given."""
    if "on-failure" not in table:
        return None
    return OnFailure(_choice(table["on-failure"], key.child("on-failure"), OnFailure))


def _choice(value: object, key: _Key, choices: type[OnFailure] | type[Consumer]) -> str:
    known = [c.value for c in choices]
    if not isinstance(value, str) or value not in known:
        key.fail(
            f"must be one of {', '.join(json.dumps(k) for k in known)}, got {_describe(value)}"
        )
    return value


def _flag(table: dict[str, Any], name: str, key: _Key) -> bool:
    value = table.get(name, False)
    if not isinstance(value, bool):
        key.child(name).fail(f"must be true or false, got {_describe(value)}")
    return value


def _directory(table: dict[str, Any], name: str, key: _Key) -> str | None:
    if name not in table:
        return None
    value, key = table[name], key.child(name)
    if not isinstance(value, str) or not value.startswith("/"):
        wanted = 'an absolute directory path such as "/srv/metrics"'
        key.fail(f"must be {wanted}, got {_describe(value)}")
    return value


def _command(table: dict[str, Any], name: str, key: _Key) -> tuple[str, ...]:
    """A command as an array: an absolute program path, then its arguments."""
    if name not in table:
        return ()
    value, key = table[name], key.child(name)
    wanted = 'an array such as ["/usr/local/sbin/drained", "--node"]'
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        key.fail(f"must be {wanted}, got {_describe(value)}")
    if not value[0].startswith("/"):
        key.fail(f"must start with an absolute program path, got {_describe(value[0])}")
    return tuple(value)


def _units(
    table: dict[str, Any], name: str, key: _Key, default: tuple[str, ...]
) -> tuple[str, ...]:
    if name not in table:
        return default
    value, key = table[name], key.child(name)
    if not isinstance(value, list):
        key.fail(f'must be an array of unit names such as ["nvsm.service"], got {_describe(value)}')
    for index, unit in enumerate(value):
        _unit(unit, value[:index], key.item(index))
    return tuple(value)


def _unit(unit: object, earlier: list[Any], key: _Key) -> None:
    if not isinstance(unit, str) or not _UNIT_NAME.fullmatch(unit):
        key.fail(f'must be a systemd unit name such as "nvsm.service", got {_describe(unit)}')
    if "@." in unit:
        key.fail(f'{_describe(unit)} is a template; name an instance such as "getty@tty1.service"')
    if unit in earlier:
        key.fail(f"{_describe(unit)} is listed twice (also at [{earlier.index(unit)}])")


def _seconds(value: object, key: _Key) -> float:
    key = key.child("driver-timeout")
    problem = f"must be a number of seconds > 0, got {_describe(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        key.fail(problem)
    if not math.isfinite(value) or value <= 0:
        key.fail(problem)
    if value > MAX_DRIVER_TIMEOUT:
        key.fail(f"must be at most {MAX_DRIVER_TIMEOUT:g} seconds, got {_describe(value)}")
    return float(value)


# ---- [[gpu]] ----


def _gpu(value: object, key: _Key) -> GpuSpec:
    table = _table(value, key, _GPU_KEYS)
    selector = _selector(_required(table, "select", key, 'select = "all"'), key.child("select"))
    mig = table.get("mig", True)
    if not isinstance(mig, bool):
        key.child("mig").fail(f"must be true or false, got {_describe(mig)}")
    instances = _array_of_tables(table.get("instance", []), key.child("instance"), _instance)
    if instances and not mig:
        key.child("instance").fail("not allowed with mig = false (MIG off means no instances)")
    optional = table.get("optional", False)
    if not isinstance(optional, bool):
        key.child("optional").fail(f"must be true or false, got {_describe(optional)}")
    on_failure = _on_failure(table, key)
    if on_failure is OnFailure.DISABLE_MIG and not mig:
        key.child("on-failure").fail(
            '"disable-mig" with mig = false: MIG is meant to be off anyway'
        )
    managed = table.get("managed", True)
    if not isinstance(managed, bool):
        key.child("managed").fail(f"must be true or false, got {_describe(managed)}")
    for name in ("mig", "instance", "on-failure"):
        if not managed and name in table:
            key.child(name).fail("not allowed with managed = false (another owner has the GPU)")
    expected = _optional_integer(table, "gpus", key, 1, MAX_ITEMS)
    if expected is not None and selector.kind is not SelectorKind.INDEX:
        key.child("gpus").fail("only an entry that selects by index needs the host's GPU count")
    spec = GpuSpec(
        selector,
        mig,
        instances,
        where=key.path,
        optional=optional,
        managed=managed,
        gpus=expected,
    )
    return replace(spec, on_failure=on_failure)


def _selector(value: object, key: _Key) -> Selector:
    if value == "all":
        return Selector(SelectorKind.ALL)
    if not isinstance(value, dict):
        key.fail(f'must be "all" or a table such as {{ uuid = "GPU-..." }}, got {_describe(value)}')
    table = _table(value, key, _SELECT_KEYS)
    if len(table) != 1:
        given = " and ".join(table) if table else "an empty table"
        key.fail(f"must name exactly one of {', '.join(_SELECT_KEYS)}, got {given}")
    [(name, raw)] = table.items()
    kind = SelectorKind(name)
    return Selector(kind, _selector_value(kind, raw, key.child(name)))


def _selector_value(kind: SelectorKind, value: object, key: _Key) -> str | int:
    if kind is SelectorKind.INDEX:
        return _integer(value, key, 0)
    if kind is SelectorKind.MODEL:
        return _text(value, key, 'a GPU model name such as "NVIDIA H100 80GB HBM3"')
    if kind is SelectorKind.DEVICE_ID:
        return _device_id(value, key)
    if kind is SelectorKind.UUID:
        uuid = value.strip() if isinstance(value, str) else ""
        if not uuid.upper().startswith("GPU-") or len(uuid) <= len("GPU-"):
            key.fail(f'must be a GPU UUID such as "GPU-5d5ba0d6-...", got {_describe(value)}')
        return uuid
    pci = normalise_pci(value) if isinstance(value, str) else None
    if pci is None:
        key.fail(f'must be a PCI bus id such as "0000:3b:00.0", got {_describe(value)}')
    return pci


def _device_id(value: object, key: _Key) -> str:
    """`0x20F110DE` (device and vendor, as nvidia-smi and mig-parted write it), optionally with
    the subsystem id: `0x20F110DE:0x145F10DE`; returned in that form, upper-case hex."""
    found = _DEVICE_ID.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        key.fail(
            'must be a PCI device id such as "0x20F110DE" (optionally ":0x" and the subsystem '
            f"id), got {_describe(value)}"
        )
    device, subsystem = found.groups()
    return f"0x{device.upper()}" + (f":0x{subsystem.upper()}" if subsystem else "")


def _check_distinct_selectors(gpus: Sequence[GpuSpec], source: str) -> None:
    """Two entries with the same selector always tie: refuse them even if the GPU is absent."""
    seen: dict[tuple[SelectorKind, str], GpuSpec] = {}
    for spec in gpus:
        first = seen.setdefault(_selector_identity(spec), spec)
        if first is not spec:
            raise ConfigError(
                f"{source}: {spec.where}.select: same selector as {first.where}.select "
                f"({spec.selector}); merge the two entries"
            )


# ---- [[gpu.instance]] ----


def _instance(value: object, key: _Key) -> InstanceSpec:
    table = _table(value, key, _INSTANCE_KEYS)
    profile = _profile(
        _required(table, "profile", key, 'profile = "3g.40gb"'), key.child("profile")
    )
    placement = _optional_integer(table, "placement", key, 0)
    count = _optional_integer(table, "count", key, 1, MAX_COUNT) or 1
    if count > 1 and placement is not None:
        key.child("count").fail(
            f"must be 1 when a placement is given, got {count}; "
            "write one [[gpu.instance]] per placement"
        )
    compute = None
    if "compute" in table:
        compute = _compute_list(table["compute"], key.child("compute"))
    shape = _geometry(table["geometry"], key.child("geometry")) if "geometry" in table else None
    return InstanceSpec(profile, placement, count, compute, where=key.path, shape=shape)


def _geometry(value: object, key: _Key) -> ProfileShape:
    """`geometry = { slices = 3, size = 4, memory-mib = 40192 }`: every key required."""
    table = _table(value, key, _GEOMETRY_KEYS)

    def read(name: str, maximum: int = MAX_SMALL_INT) -> int:
        example = "geometry = { slices = 3, size = 4, memory-mib = 40192 }"
        return _integer(_required(table, name, key, example), key.child(name), 1, maximum)

    return ProfileShape(read("slices"), read("size"), read("memory-mib", MAX_MEMORY_MIB))


def _compute_list(value: object, key: _Key) -> tuple[ComputeSpec, ...]:
    if not isinstance(value, list):
        key.fail(f'must be an array such as ["1c.3g.40gb", "2c.3g.40gb"], got {_describe(value)}')
    return tuple(_compute(item, key.item(index)) for index, item in enumerate(value))


def _compute(value: object, key: _Key) -> ComputeSpec:
    if not isinstance(value, dict):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return ComputeSpec(_profile(value, key), where=key.path)
        key.fail(
            f'must be {_PROFILE} or {{ profile = "...", placement = N }}, got {_describe(value)}'
        )
    table = _table(value, key, _COMPUTE_KEYS)
    profile = _profile(
        _required(table, "profile", key, 'profile = "1c.3g.40gb"'), key.child("profile")
    )
    placement = _optional_integer(table, "placement", key, 0)
    return ComputeSpec(profile, placement, where=key.path)
