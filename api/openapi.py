"""OpenAPI 3 description, generated from the routes declared with `endpoint` and the
marshmallow schemas that validate their requests."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import jsonify

from api import schemas
from api.pipeline import ROUTES, bp
from renkei.sections.catalogue import SECTION_KEYS, SECTIONS

PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True},
    },
}


IF_MATCH = {"put_section", "put_thresholds"}  # versioned writes (412 when stale)
# Routes that answer one object for one and {"items": [...]} for several.
# Routes with a second success status besides their own.
OTHER_SUCCESS = {"add_member": {"202": "An administrator's appointment: pending until a second person confirms it"}}
ONE_OR_MANY = {"record_observations": ("ObservationOut", "ObservationList")}
# Routes that answer with bytes, and which types.
BINARY = {
    "get_attachment": ("image/jpeg", "image/png", "image/webp", "application/pdf"),
    "get_thumbnail": ("image/jpeg",),
}


def build_spec() -> dict:
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title="Renkei API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[marshmallow],
        info={"description": "Secure information sharing for home-care teams (連携)."},
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", PROBLEM)
    for name in dict.fromkeys(n for pair in ONE_OR_MANY.values() for n in pair):  # the nested one first
        spec.components.schema(name, schema=getattr(schemas, name))
    for key, section in SECTIONS.items():
        spec.components.schema(f"Section_{key}", schema=section.schema)
    paths: dict[str, dict] = {}
    for r in ROUTES:
        path = "/api/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r["rule"])
        op = {"summary": r["summary"], "tags": [r["tag"]], "operationId": r["name"], "responses": {}}
        params = [
            {"name": p, "in": "path", "required": True, "schema": _param_schema(p)}
            for p in re.findall(r"{(\w+)}", path)
        ]
        if r["query"] is not None:
            op["parameters"] = params + [{"in": "query", "schema": r["query"]}]
        elif params:
            op["parameters"] = params
        if r["name"] in IF_MATCH:
            op.setdefault("parameters", []).append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": r'^(W/)?"?\d+"?$'},
                }
            )
        if r["idempotent"]:
            op.setdefault("parameters", []).append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Send the same key again to retry safely (docs/API.md).",
                    "schema": {"type": "string", "pattern": r'^"?[\x21\x23-\x7e]{1,255}"?$'},
                }
            )
        if r["upload"] is not None:  # one file part beside the fields of `body`
            form = marshmallow.converter.schema2jsonschema(r["body"])
            form["properties"]["file"] = {"type": "string", "format": "binary"}
            form["required"] = ["file"]
            op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
        elif r["body"] is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r["body"]}}}
        ok = {"description": "OK"}
        if r["response"] is not None:
            ok["content"] = {"application/json": {"schema": r["response"]}}
        if r["name"] in ONE_OR_MANY:
            ok["content"] = {
                "application/json": {
                    "schema": {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in ONE_OR_MANY[r["name"]]]}
                }
            }
        if r["name"] == "export":
            ok["content"] = {"text/csv": {"schema": {"type": "string"}}}
        if r["name"] in BINARY:
            ok["content"] = {t: {"schema": {"type": "string", "format": "binary"}} for t in BINARY[r["name"]]}
        op["responses"][str(r["status"])] = ok
        for code, description in OTHER_SUCCESS.get(r["name"], {}).items():
            op["responses"][code] = dict(ok, description=description)
        errors = set(r["errors"]) | {400, 422} if r["body"] or r["query"] else set(r["errors"])
        if r["idempotent"]:
            errors |= {400, 409, 422}
        if r["auth"] != "public":
            op["security"] = [{"bearer": []}]
            errors |= {401}
            if r["auth"] in ("admin", "audit"):
                errors |= {403}
        for code in sorted(errors):
            op["responses"][str(code)] = {
                "description": "Problem",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
        paths.setdefault(path, {})[r["method"].lower()] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


def _param_schema(name: str) -> dict:
    if name == "section":
        return {"type": "string", "enum": list(SECTION_KEYS)}
    return {"type": "string"}


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())
