"""The API's request pipeline. Every route is declared with `endpoint`: authenticate,
check CSRF for cookie sessions, check the caller's standing (renkei.patients.authz), validate
the body with its marshmallow schema, call the view — which translates HTTP into one
core service call and back — then end the request through the unit of work
(renkei/common/work.py): commit with exactly one access-log entry, or roll back and audit the failure."""

import json
import logging
import re
from functools import cache, wraps

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from renkei.common import db, idempotency, problems, work
from renkei.common.crypto import DecryptionError
from renkei.common.problems import Problem
from renkei.patients import authz
from renkei.people import auth, staff
from renkei.people.auth import csrf
from renkei.record import versioned

log = logging.getLogger("renkei.api")
bp = Blueprint("api", __name__, url_prefix="/api/v1")
ROUTES: list[dict] = []  # what api/openapi.py describes
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# open while a second factor is due
ADDS_FACTOR = {"start_totp", "confirm_totp", "passkey_creation_options", "add_passkey"}
ENROLMENT = {
    "start_totp",
    "confirm_totp",
    "me",
    "revoke_token",
    "passkey_creation_options",
    "add_passkey",
    "list_passkeys",
}


def endpoint(
    method: str,
    rule: str,
    *,
    summary: str,
    tag: str,
    action: str | None,
    auth: str = "user",
    body=None,
    query=None,
    response=None,
    status: int = 200,
    errors: tuple = (),
    idempotent: bool = False,
    upload=None,
):
    """auth: "public", "user", "admin" or "audit" (administrators and auditors).
    idempotent: a creating POST that honours Idempotency-Key (renkei/common/idempotency.py).
    upload: the body is multipart/form-data with one `file` part, at most upload()
    bytes, and `body` describes its other fields; the view gets the file as `upload`."""

    def decorate(view):
        meta = dict(
            method=method,
            rule=rule,
            summary=summary,
            tag=tag,
            action=action,
            auth=auth,
            body=body,
            query=query,
            response=response,
            status=status,
            errors=errors,
            idempotent=idempotent,
            upload=upload,
            name=view.__name__,
        )
        ROUTES.append(meta)

        @wraps(view)
        def handle(**kwargs):
            return _run(view, meta, kwargs)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=[method])
        return view

    return decorate


def _caller():
    return current_user if current_user and current_user.is_authenticated else None


def _load(schema, data):
    try:
        return schema().load(data)
    except ValidationError as err:
        raise problems.invalid(err.messages_dict)


def _json_body():
    if not request.get_data():  # over MAX_CONTENT_LENGTH: 413, caught in _run
        return {}
    try:
        data = request.get_json(silent=True, force=True)
    except RecursionError:  # nested deeper than the parser goes
        data = None
    if data is None:
        raise Problem(400, "The body is not valid JSON.")
    try:  # "\ud800" parses, but is no character: it could be neither sealed nor logged
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(400, "The body contains an escaped lone surrogate (\\ud800-\\udfff), which is not a character.")
    if not isinstance(data, dict):
        raise problems.invalid({"_schema": ["The body must be a JSON object."]})
    return data


FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields beside the file


def _expect_upload(limit: int):
    """Before anything reads the body (CSRF reads the form of a cookie session): the
    limits, and no database work held open while the file arrives."""
    request.upload_limit = limit
    request.max_content_length = limit + FORM_OVERHEAD
    request.max_form_parts = 8
    db.session.commit()


def _multipart_body():
    """(the fields with the file's SHA-256, the file's Spool). The file is sealed as it
    arrives (renkei/common/frames.py): over the limit it is 413 before the rest is read."""
    try:
        files = request.files.getlist("file")
        form = request.form.to_dict()
    except ValueError:
        raise Problem(400, "The body is not valid multipart/form-data.")
    if len(files) != 1 or len(request.files) != 1:
        raise problems.invalid({"file": ["Send exactly one file, in the part named file."]})
    spool = files[0].stream
    return form | {"file_sha256": spool.sha256}, spool


def _run(view, meta, kwargs):
    user, unit, held = None, work.current(), None
    unit.describe(patient_id=kwargs.get("patient_id"), section=kwargs.get("section"))
    try:
        if db.has_nul(*kwargs.values()):
            raise problems.not_found()
        user = _caller()
        if meta["auth"] != "public":
            if user is None:
                raise Problem(401, "Sign in or send a valid bearer token.", headers={"WWW-Authenticate": "Bearer"})
            if meta["upload"] is not None:
                _expect_upload(meta["upload"]())
            if unit.cookie_auth and request.method not in SAFE_METHODS:
                csrf.protect()
            if meta["auth"] in ("admin", "audit"):
                staff.require_staff(user, meta["auth"])
            if meta["name"] not in ENROLMENT and auth.enrolment_only(user):
                raise Problem(
                    403,
                    "Enrol a second factor first (a passkey: POST /api/v1/auth/passkeys/options; or POST "
                    "/api/v1/auth/totp), then sign in again with it.",
                    type_="/problems/second-factor-enrolment",
                )
            # A credential opened with a password alone enrols the *first* factor only.
            if meta["name"] in ADDS_FACTOR and auth.enrolment_only(user) and auth.has_second_factor(user):
                raise Problem(
                    403, "Sign in with your second factor to add another.", type_="/problems/second-factor-enrolment"
                )
        raw = {}  # the body as sent: what an Idempotency-Key's fingerprint covers
        if meta["upload"] is not None:
            raw, kwargs["upload"] = _multipart_body()
            kwargs["body"] = _load(meta["body"], {k: v for k, v in raw.items() if k != "file_sha256"})
        elif meta["body"] is not None:
            # The caller is known: end that short transaction so no database connection
            # is held while a (slow) client sends its body.
            db.session.commit()
            raw = _json_body()
            kwargs["body"] = _load(meta["body"], raw)
        if meta["query"] is not None:
            kwargs["query"] = _load(meta["query"], request.args.to_dict())
        key = idempotency.key_from(request.headers) if meta["idempotent"] else None
        held = key and idempotency.claim(user, key, request.method, request.path, raw)
        if isinstance(held, idempotency.Kept):  # a repeat: the first request's answer
            kept, held = held, None  # nothing of ours to release, whatever the replay answers
            resp = _replay(user, kept)
        else:
            resp = _to_response(view(**kwargs), meta)
            if held and resp.status_code < 400:
                idempotency.keep(
                    held,
                    resp.status_code,
                    {h: resp.headers[h] for h in idempotency.KEPT_HEADERS if h in resp.headers},
                    resp.get_data(as_text=True),
                    unit.entry_fields.get("patient_id"),
                )
    except Problem as p:
        resp = problems.from_problem(p)
    except CSRFError as e:
        resp = problems.response(400, f"CSRF check failed: {e.description}")
    except HTTPException as e:  # e.g. 413 for a body over the size limit
        resp = problems.response(e.code or 400, e.description or "")
    except (DBAPIError, PoolTimeout) as exc:
        resp = problems.from_problem(unit.database_problem(exc, meta["name"]))
    except DecryptionError:
        log.error("decryption failed in %s (request %s)", meta["name"], unit.request_id)
        resp = problems.response(500, "A stored value could not be decrypted.")
    except Exception:
        log.exception("unhandled error in %s (request %s)", meta["name"], unit.request_id)
        resp = problems.response(500, "Internal error; nothing was changed.")
    failed = unit.finish(resp.status_code, meta["action"], user, meta["name"])
    if failed:
        resp = problems.from_problem(failed)
    if held and resp.status_code >= 400:
        idempotency.release(held)
    return resp


def if_match_version() -> int | versioned.Unreadable | None:
    """The version named by If-Match ("3", W/"3"): None when the header is absent,
    UNREADABLE when it is not a version; the core answers 428 or 400 after its access
    check (renkei/record/versioned.py), so a patient one may not see stays 404."""
    if "If-Match" not in request.headers:
        return None
    tags = request.if_match.as_set(include_weak=True)
    value = next(iter(tags)) if len(tags) == 1 else ""
    if not re.fullmatch(r"[0-9]{1,9}", value):  # not str.isdigit: "²" is a digit to it
        return versioned.UNREADABLE
    return int(value)


def _replay(user, kept: idempotency.Kept) -> Response:
    """The first request's answer, if this person may still see its patient (else 404)."""
    if kept.patient_id is not None:
        # An administrator never reads a record; appointing a team's manager needs TEAM_VIEW.
        authz.patient_access(user, kept.patient_id, authz.TEAM_VIEW if user.is_admin else authz.READ)
    work.describe(patient_id=kept.patient_id)
    work.current().mark("replayed")
    answer = kept.answer()
    return Response(answer["body"], status=kept.status, headers={**answer["headers"], "Idempotent-Replayed": "true"})


@cache
def _dumper(schema):
    """One instance per response schema: building a nested schema costs more than the dump."""
    return schema()


def _to_response(rv, meta) -> Response:
    if isinstance(rv, Response):
        return rv
    headers = {}
    status = meta["status"]
    if isinstance(rv, tuple):
        rv, status, headers = (rv + ({},))[:3] if len(rv) == 2 else rv
    if rv is None:
        return Response(status=status, headers=headers)
    if meta["response"] is not None:
        rv = _dumper(meta["response"]).dump(rv)
    resp = jsonify(rv)
    resp.status_code = status
    resp.headers.update(headers)
    return resp
