"""The machine contract: every `--json` document of status, plan, verify and doctor, read from
simulated hosts in many states, validates against its schema in docs/schema/ (issue 13)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from migrestore import contract, simulator

from .simhost import H100, ROOT, Host, make_host

SCHEMAS = ROOT / "docs" / "schema"
VERBS: tuple[contract.Verb, ...] = ("status", "plan", "verify", "doctor")
A100 = "NVIDIA A100-SXM4-80GB"
LAYOUT = f"""\
version = 1
[[gpu]]
select = {{ model = "{H100}" }}
  [[gpu.instance]]
  profile = "3g.40gb"
  placement = 4
  compute = ["2c.3g.40gb", "1c.3g.40gb"]
  [[gpu.instance]]
  profile = "1g.10gb"
  count = 2
[[gpu]]
select = {{ model = "{A100}" }}
  [[gpu.instance]]
  profile = "7g.80gb"
"""
# Another layout: from LAYOUT it destroys instances (one of them busy) and creates others.
OTHER = f"""\
version = 1
[[gpu]]
select = {{ model = "{H100}" }}
  [[gpu.instance]]
  profile = "7g.80gb"
"""
# Entries that cannot be satisfied: a GPU the host lacks, a GPU without the profile named, and a
# known model the host does not have (absent: skipped).
UNFIT = f"""\
version = 1
[[gpu]]
select = {{ uuid = "GPU-00000000-dead-beef-0000-000000000000" }}
mig = false
[[gpu]]
select = {{ index = 0 }}
  [[gpu.instance]]
  profile = "1g.5gb"
[[gpu]]
select = {{ model = "{A100}" }}
mig = false
"""
# Each schema's shape (everything but titles, descriptions and comments) at each version. A
# shape that changes under an unchanged schema_version fails test_a_new_shape_needs_a_new_version.
SHAPES = {
    ("status", 1): "4d621c3d71212325",
    ("plan", 1): "6be27b6ede58bfb2",
    ("verify", 1): "a084746ce73c5c05",
    ("doctor", 1): "74f8ddcbce9c525c",
}


def schema(verb: str) -> dict[str, Any]:
    """docs/schema/VERB.schema.json."""
    document: dict[str, Any] = json.loads((SCHEMAS / f"{verb}.schema.json").read_text())
    return document


def problems(verb: str, document: object) -> list[str]:
    """Every way `document` breaks its verb's schema, one line each (empty: it validates)."""
    validator = Draft202012Validator(
        schema(verb), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@dataclass(frozen=True)
class State:
    """A simulated host brought into one state, and the exit status verify (and plan) give there."""

    host: Host
    verify_exit: int
    sysroot: Path | None = None
    plan_exit: int = 0  # 1 when a GPU cannot be planned (unreadable, of another model, missing)

    def document(self, verb: str) -> Any:
        """`VERB --json` on this host, parsed (its exit status checked where it is known)."""
        extra = ("--sysroot", str(self.sysroot)) if self.sysroot else ()
        result = self.host.run(*extra, verb, "--json")
        if verb == "verify":
            assert result.code == self.verify_exit, result
        elif verb == "plan":
            assert result.code == self.plan_exit, result
        elif verb == "status":
            assert result.code == 0, result
        return json.loads(result.out)


def fresh(tmp: Path) -> State:
    """Two H100s and an A100, MIG off, never restored."""
    return State(make_host(tmp, (H100, 2), (A100, 1), layout=LAYOUT), verify_exit=3)


def in_sync(tmp: Path) -> State:
    """Restored; the last run recorded, as if by `sudo` from a systemd unit."""
    state = fresh(tmp)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SUDO_USER", "alice")
        env.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        assert state.host.run("apply", "--force").code == 0
    return State(state.host, verify_exit=0)


def drifted(tmp: Path) -> State:
    """Restored, then a process started on an instance and the layout file changed: the new
    layout's steps destroy that busy instance."""
    state = in_sync(tmp)
    status = json.loads(state.host.run("status", "--json").out)
    gi = status["gpus"][0]["instances"][0]
    simulator.attach(state.host.state, 0, "train.py", gi_id=gi["id"], ci_id=0, pid=4242)
    state.host.write_layout(OTHER)
    return State(state.host, verify_exit=3)


def rebooted(tmp: Path) -> State:
    """Restored, then rebooted: the H100s lost MIG mode and every instance."""
    state = in_sync(tmp)
    simulator.reboot(state.host.state)
    return State(state.host, verify_exit=3)


def reset_pending(tmp: Path) -> State:
    """An A100 whose MIG mode change waits for a reset a driver client blocks (apply exit 4)."""
    host = make_host(tmp, (H100, 1), (A100, 1), layout=LAYOUT)
    simulator.attach(host.state, 1, "nv-hostengine")
    assert host.run("apply").code == 4
    return State(host, verify_exit=4)


def gpu_lost(tmp: Path) -> State:
    """Restored, then GPU 1 fell off the bus (GpuIsLost): it is unreadable, the others are not."""
    state = in_sync(tmp)
    simulator.lose_gpu(state.host.state, 1)
    return State(state.host, verify_exit=1, plan_exit=1)


def unplanned(tmp: Path) -> State:
    """R535 with MIG off: the H100's profile table cannot be read yet, its instances unplanned."""
    host = make_host(tmp, (H100, 1), (A100, 1), layout=LAYOUT, driver="535.x")
    return State(host, verify_exit=3)


def unfit(tmp: Path) -> State:
    """Entries naming a GPU the host lacks, a profile GPU 0 lacks, and a model the host does not
    have; one GPU unmanaged."""
    return State(make_host(tmp, (H100, 2), layout=UNFIT), verify_exit=3, plan_exit=1)


def handed_off(tmp: Path) -> State:
    """GPU 1 left to another owner (managed = false): unmanaged, never judged; GPU 0 drifted."""
    layout = LAYOUT.replace("version = 1", "version = 2") + "[[gpu]]\nselect = { index = 1 }\n"
    return State(make_host(tmp, (H100, 2), layout=layout + "managed = false\n"), verify_exit=3)


def with_files(tmp: Path) -> State:
    """A host with a sysroot of its own files (/proc/driver/nvidia...), so doctor reads them."""
    host = Host(tmp / "host.json", tmp / "layout.toml")
    simulator.init_host(host.state, [(H100, 1), (A100, 1)], sysroot=tmp / "root")
    host.write_layout(LAYOUT)
    return State(host, verify_exit=3, sysroot=tmp / "root")


STATES = {
    f.__name__: f
    for f in (
        fresh,
        in_sync,
        drifted,
        rebooted,
        reset_pending,
        gpu_lost,
        unplanned,
        unfit,
        handed_off,
    )
}
STATES[with_files.__name__] = with_files


@pytest.fixture(scope="module", name="states")
def fixture_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, State]:
    """Every state, each built once for this module."""
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in STATES.items()}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("name", list(STATES))
def test_output_validates(states: dict[str, State], name: str, verb: str) -> None:
    """The verb's --json document on the host in this state validates against its schema."""
    document = states[name].document(verb)
    assert problems(verb, document) == []


def test_the_states_cover_the_shapes(states: dict[str, State]) -> None:
    """Together the states give every kind of step and every list the schemas describe, so
    each branch of each schema is checked against real output at least once."""
    plans = [states[name].document("plan") for name in STATES]
    done = {a["action"] for p in plans for g in p["gpus"] for a in g["actions"]}
    described = {
        d["properties"]["action"]["const"]
        for d in schema("plan")["$defs"].values()
        if "action" in d.get("properties", {})
    }
    assert done == described
    for key in ("unmanaged", "missing", "absent", "mismatched", "unplanned", "unreadable"):
        assert any(p[key] for p in plans), key
    assert any(g["busy"] for p in plans for g in p["gpus"])
    statuses = [states[name].document("status") for name in STATES]
    assert any(s["unreadable"] for s in statuses)
    assert any(s["last_run"] is None for s in statuses)
    assert any(s["last_run"] and s["last_run"]["who"]["sudo_user"] for s in statuses)
    processes = [
        ci["processes"]
        for s in statuses
        for g in s["gpus"]
        for gi in g["instances"]
        for ci in gi["compute"]
    ]
    assert any(processes)


@pytest.mark.parametrize("verb", VERBS)
def test_schema_is_a_valid_draft_2020_12_schema(verb: str) -> None:
    """Each schema file is itself a valid JSON Schema of draft 2020-12."""
    Draft202012Validator.check_schema(schema(verb))
    assert schema(verb)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def subschemas(node: object, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema below `node` with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from subschemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from subschemas(value, f"{path}/{n}")


@pytest.mark.parametrize("verb", VERBS)
def test_every_property_has_a_title_and_a_description(verb: str) -> None:
    """Each property of each object, and each definition, says what it is."""
    undocumented = [
        f"{path}/{name}"
        for path, node in subschemas(schema(verb))
        if isinstance(node.get("properties"), dict) and path.rsplit("/", 1)[-1] != "properties"
        for name, prop in node["properties"].items()
        if not (prop.get("title") and prop.get("description"))
    ]
    undocumented += [
        f"$defs/{name}"
        for name, definition in schema(verb).get("$defs", {}).items()
        if not (definition.get("title") and definition.get("description"))
    ]
    assert undocumented == []


@pytest.mark.parametrize("verb", VERBS)
def test_objects_are_closed_and_their_keys_required(verb: str) -> None:
    """Every object the schema describes forbids other keys and requires all of its own."""
    loose = [
        path or "(top)"
        for path, node in subschemas(schema(verb))
        if node.get("type") == "object"
        and (
            node.get("additionalProperties") is not False
            or set(node.get("required", ())) != set(node.get("properties", {}))
        )
    ]
    assert loose == []


@pytest.mark.parametrize("verb", VERBS)
def test_schema_names_its_verb_and_version(verb: contract.Verb) -> None:
    """$id and title name the verb; schema_version is the one the program writes."""
    document = schema(verb)
    assert document["$id"] == f"urn:migrestore:schema:{verb}:{contract.SCHEMA_VERSIONS[verb]}"
    assert f"migrestore {verb} --json" == document["title"]
    assert document["properties"]["schema_version"]["const"] == contract.SCHEMA_VERSIONS[verb]
    assert document["required"][0] == "schema_version"


def test_documents_start_with_their_schema_version(states: dict[str, State]) -> None:
    """`schema_version` is each document's first key, so a reader can switch on it first."""
    for verb in VERBS:
        document = states["in_sync"].document(verb)
        assert isinstance(document, dict)
        assert next(iter(document)) == "schema_version"
        assert document["schema_version"] == contract.SCHEMA_VERSIONS[verb]


def test_the_schemas_notice_shape_changes(states: dict[str, State]) -> None:
    """A key added, a key dropped, a nested key renamed or a value retyped fails validation."""
    status = states["drifted"].document("status")
    assert isinstance(status, dict)
    added = {**status, "extra": 1}
    dropped = {k: v for k, v in status.items() if k != "driver"}
    renamed = copy.deepcopy(status)
    renamed["gpus"][0]["instances"][0]["compute"][0]["mig_uuid"] = renamed["gpus"][0]["instances"][
        0
    ]["compute"][0].pop("uuid")
    retyped = copy.deepcopy(status)
    retyped["last_run"]["who"]["login_uid"] = "1000"
    unknown_action = copy.deepcopy(states["fresh"].document("plan"))
    assert isinstance(unknown_action, dict)
    unknown_action["gpus"][0]["actions"][0]["action"] = "format-gpu"
    for verb, document in (
        ("status", added),
        ("status", dropped),
        ("status", renamed),
        ("status", retyped),
        ("plan", unknown_action),
    ):
        assert problems(verb, document), document


def shape(verb: str) -> str:
    """The schema's shape: a digest of it without titles, descriptions and comments."""

    def bare(node: object) -> object:
        if isinstance(node, dict):
            prose = ("title", "description", "$comment")
            return {k: bare(v) for k, v in node.items() if not (k in prose and isinstance(v, str))}
        if isinstance(node, list):
            return [bare(v) for v in node]
        return node

    text = json.dumps(bare(schema(verb)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("verb", VERBS)
def test_a_new_shape_needs_a_new_version(verb: contract.Verb) -> None:
    """A schema whose shape changed carries a new schema_version (and SHAPES records it): a
    document's shape never changes under a version a consumer already parses."""
    version = contract.SCHEMA_VERSIONS[verb]
    assert (verb, version) in SHAPES, f"record SHAPES[({verb!r}, {version})] = {shape(verb)!r}"
    assert shape(verb) == SHAPES[verb, version], (
        f"docs/schema/{verb}.schema.json changed shape under schema_version {version}: bump "
        f"the version (contract.SCHEMA_VERSIONS, the schema's const and $id) and record "
        f"SHAPES[({verb!r}, {version + 1})] = {shape(verb)!r}"
    )


def test_the_man_page_and_readme_point_to_the_schemas() -> None:
    """migrestore(8) and the README name docs/schema/ and the versioning rule."""
    man = (ROOT / "docs" / "migrestore.8").read_text()
    readme = (ROOT / "README.md").read_text()
    for verb in VERBS:
        assert f"{verb}.schema.json" in man, verb
    assert "docs/schema/" in readme
    assert "schema_version" in man
    assert "schema_version" in readme
