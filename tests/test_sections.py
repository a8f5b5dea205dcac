"""renkei/sections/catalogue.py declares each section once; what is derived from it must agree:
the edit form offers exactly the fields the schema accepts, and every section has both
titles."""

from marshmallow import fields

from renkei.sections.catalogue import SECTIONS


def _layout_names(layout) -> dict:
    return {f["name"]: f for f in layout}


def _check(schema_fields: dict, layout: list, where: str, row: bool = False):
    names = _layout_names(layout)
    # a row's id is in every row of the form, hidden (templates/_fields.html `row`)
    assert set(names) == set(schema_fields) - ({"id"} if row else set()), where
    for name, field in schema_fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested) and names[name]["type"] in ("rows", "group"):
            _check(inner.schema.fields, names[name]["fields"], f"{where}.{name}", names[name]["type"] == "rows")


def test_every_form_offers_exactly_the_fields_its_schema_accepts():
    assert len(SECTIONS) == 10
    for key, section in SECTIONS.items():
        _check(section.schema().fields, section.layout, key)


def test_every_section_has_both_titles():
    """Who writes which section is tested as callers meet it, route by route and role by
    role, in tests/test_access_matrix.py (the table there is written from docs/API.md)."""
    for section in SECTIONS.values():
        assert section.title_ja and section.title_en and section.title_ja != section.title_en
