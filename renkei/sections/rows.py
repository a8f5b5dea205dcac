"""The rows of a section's lists (key persons, medications, conditions, …) keep a stable
`id` (docs/API.md, "The record"), so two people who changed different rows of one list
can both be kept, and a section's history can follow a row. The server gives each row
sent without one a UUID on save — or, if it equals a row stored now, that row's id, so
an edit sent twice still writes nothing; a client may send its own; two rows with one id
are refused. Rows saved before ids existed get one derived from where they are stored,
the same at every read, until the next save keeps it."""

import uuid

from marshmallow import fields

from renkei.common.problems import invalid
from renkei.sections.catalogue import SECTIONS

_DERIVED = uuid.UUID("5b0c5e0e-6d2a-4c1e-9a57-2f6d1c3e0b7a")  # the namespace of derived row ids


def lists_of(section: str) -> list[str]:
    """The section's fields that are lists of rows."""
    schema = SECTIONS[section].schema()
    return [
        name
        for name, field in schema.fields.items()
        if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested)
    ]


def as_stored(section: str, content: dict, where: str) -> dict:
    """Content as read, every row with an id (`where`: the revision, for derived ones)."""
    out = dict(content)
    for name in lists_of(section):
        if isinstance(out.get(name), list):
            out[name] = [
                row if row.get("id") else {"id": str(uuid.uuid5(_DERIVED, f"{where}/{section}/{name}/{i}")), **row}
                for i, row in enumerate(out[name])
            ]
    return out


def keep_ids(section: str, content: dict, current: dict) -> dict:
    """Content to save, every row with an id: its own, an equal stored row's, or new."""
    out, errors = dict(content), {}
    for name in lists_of(section):
        rows = out.get(name)
        if not isinstance(rows, list):
            continue
        stored = [dict(r) for r in current.get(name) or []]
        taken = {row["id"] for row in rows if row.get("id")}
        kept = []
        for i, row in enumerate(rows):
            if row.get("id"):
                if sum(1 for r in rows if r.get("id") == row["id"]) > 1:
                    errors.setdefault(name, {})[i] = {"id": ["Two rows have this id."]}
                kept.append(row)
                continue
            same = next(
                (s for s in stored if s.get("id") not in taken and _without_id(s) == _without_id(row)),
                None,
            )
            row_id = same["id"] if same and same.get("id") else str(uuid.uuid4())
            taken.add(row_id)
            kept.append({"id": row_id, **row})
        out[name] = kept
    if errors:
        raise invalid({"content": errors})
    return out


def _without_id(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "id"}
