"""The machine contract: every `--json` document of status, plan, verify and doctor carries the
version of its shape, and docs/schema/VERB.schema.json (JSON Schema, draft 2020-12) fixes it.

Changing a document's shape (a key added, removed, renamed or retyped, a value newly allowed or
no longer given) means a new schema version: bump it here and in the schema's `schema_version`,
and say so in CHANGELOG.md. tests/test_schema.py validates every verb's real output against its
schema and notices a schema whose shape changed under an unchanged version.
"""

from __future__ import annotations

from typing import Any, Literal

Verb = Literal["status", "plan", "verify", "doctor"]

SCHEMA_VERSIONS: dict[Verb, int] = {"status": 1, "plan": 2, "verify": 2, "doctor": 1}


def versioned(verb: Verb, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its schema version as the first key."""
    return {"schema_version": SCHEMA_VERSIONS[verb], **document}
