"""Fuzzed layout files (types, sizes, unicode, nesting): a clean exit, one line, nothing touched."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrestore.simulator import state as simstate

from .simhost import Host, make_host

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
ALLOWED = {0, 2, 3, 4}
GPUS = ((H100, 1), (A100, 1))
KEYS = {
    "top": ("version", "restore", "gpu"),
    "restore": ("stop-units", "refresh-units", "driver-timeout", "strict-profile-names"),
    "gpu": ("select", "mig", "instance"),
    "select": ("uuid", "pci", "index", "model"),
    "instance": ("profile", "placement", "count", "compute"),
}
PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb", "MIG 1g.10gb", "1c.3g.40gb", "9", "²")

texts = st.text(max_size=40) | st.sampled_from(
    (*PROFILES, "all", H100, A100, "nvsm.service", "x@.service", "a\nb", "\x1b[0m", "<0>")
)
scalars = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from((0, 1, 2, 7, 64, 65, 4096, 10**9))
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | texts
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(min_size=1, max_size=12) | st.sampled_from(KEYS["top"]), inner)
    ),
    max_leaves=12,
)


def _table(kind: str, extra: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A table of `kind` with some of its own keys (random values) and now and then a stranger."""
    keys = st.sampled_from(KEYS[kind]) | st.text(min_size=1, max_size=8)
    return st.dictionaries(keys, extra | values, max_size=5)


instances = _table("instance", st.sampled_from(PROFILES))
gpus = st.fixed_dictionaries(
    {"select": st.sampled_from(("all", {"model": H100}, {"index": 1})) | values},
    optional={"instance": st.lists(instances, max_size=4) | values, "mig": values},
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from((1, 2, "1")) | values,
        "restore": _table("restore", st.lists(texts, max_size=3)),
        "gpu": st.lists(gpus, max_size=3) | values,
    },
) | st.dictionaries(st.text(max_size=8), values, max_size=4)
raw = st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1"))


def _layout_text(document: dict[str, Any]) -> str:
    """TOML for a document (tomli_w refuses a few values: those become raw text)."""
    try:
        return tomli_w.dumps(document)
    except (ValueError, TypeError):
        return repr(document)


def _gpus(host: Host) -> object:
    """The simulated host's GPUs as stored (modes, instances), without call counters."""
    return simstate.HostStore(host.state).read().gpus


def _check(host: Host, text: str) -> None:
    """Apply `text` and hold the invariant."""
    host.write_layout(text)
    before = _gpus(host)
    result = host.run("apply")
    assert result.code in ALLOWED, (text, result)
    if result.code != 0:
        lines = result.err.splitlines()
        assert len(lines) == 1, (text, result)
        assert lines[0].startswith("migrestore: error: "), (text, result)
    if result.code == 2:
        assert _gpus(host) == before, text


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=documents)
def test_fuzzed_layout_documents(document: dict[str, Any]) -> None:
    """Structured random layouts: exit 0/2/3/4, one error line, the host unchanged on exit 2."""
    with tempfile.TemporaryDirectory() as directory:
        _check(make_host(Path(directory), *GPUS), _layout_text(document))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=raw)
def test_fuzzed_layout_text(text: str) -> None:
    """Random text and bytes as the layout file: the same invariant."""
    with tempfile.TemporaryDirectory() as directory:
        _check(make_host(Path(directory), *GPUS), text)
