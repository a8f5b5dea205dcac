"""The REST API (SPEC §4). Every route is declared with `endpoint`, which is the
single request pipeline: authenticate, check CSRF for cookie sessions, validate the
body with its marshmallow schema, run the view, then commit the change together
with exactly one audit entry — or roll it back and audit the failure."""
import logging
from functools import wraps

from flask import Blueprint, Response, g, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError

from renkei import audit, db, problems
from renkei.crypto import DecryptionError
from renkei.problems import Problem

log = logging.getLogger("renkei.api")
bp = Blueprint("api", __name__, url_prefix="/api/v1")
ROUTES: list[dict] = []  # what api/openapi.py describes
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def endpoint(method: str, rule: str, *, summary: str, tag: str, action: str | None,
             auth: str = "user", body=None, query=None, response=None, status: int = 200,
             errors: tuple = ()):
    """auth: "public", "user", "admin" or "audit" (administrators and auditors)."""
    def decorate(view):
        meta = dict(method=method, rule=rule, summary=summary, tag=tag, action=action,
                    auth=auth, body=body, query=query, response=response, status=status,
                    errors=errors, name=view.__name__)
        ROUTES.append(meta)

        @wraps(view)
        def handle(**kwargs):
            return _run(view, meta, kwargs)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=[method])
        return view
    return decorate


def set_audit(**fields):
    """Let a view name the patient or add detail to its request's audit entry."""
    g.audit_fields.update(fields)


def _caller():
    return current_user if current_user and current_user.is_authenticated else None


def _load(schema, data):
    try:
        return schema().load(data)
    except ValidationError as err:
        raise problems.invalid(err.messages_dict)


def _json_body():
    if not request.get_data():
        return {}
    data = request.get_json(silent=True, force=True)
    if data is None:
        raise Problem(400, "The body is not valid JSON.")
    if not isinstance(data, dict):
        raise problems.invalid({"_schema": ["The body must be a JSON object."]})
    return data


def _run(view, meta, kwargs):
    user = None
    g.audit_fields = {"patient_id": kwargs.get("patient_id"), "section": kwargs.get("section")}
    try:
        user = _caller()
        if meta["auth"] != "public":
            if user is None:
                raise Problem(401, "Sign in or send a valid bearer token.",
                              headers={"WWW-Authenticate": "Bearer"})
            if g.get("cookie_auth") and request.method not in SAFE_METHODS:
                from renkei import csrf
                csrf.protect()
            if meta["auth"] == "admin" and not user.is_admin:
                raise Problem(403, "Administrators only.")
            if meta["auth"] == "audit" and not (user.is_admin or user.is_auditor):
                raise Problem(403, "Administrators and auditors only.")
        if meta["body"] is not None:
            kwargs["body"] = _load(meta["body"], _json_body())
        if meta["query"] is not None:
            kwargs["query"] = _load(meta["query"], request.args.to_dict())
        resp = _to_response(view(**kwargs), meta)
    except Problem as p:
        resp = problems.from_problem(p)
    except CSRFError as e:
        resp = problems.response(400, f"CSRF check failed: {e.description}")
    except DBAPIError as exc:
        resp = database_problem(exc, meta["name"])
    except DecryptionError:
        log.error("decryption failed in %s (request %s)", meta["name"], audit.request_id())
        resp = problems.response(500, "A stored value could not be decrypted.")
    except Exception:
        log.exception("unhandled error in %s (request %s)", meta["name"], audit.request_id())
        resp = problems.response(500, "Internal error; nothing was changed.")
    return finish(resp, meta["action"], user, meta["name"])


def database_down(exc: DBAPIError) -> bool:
    """Connection lost or refused (not a constraint or a bad statement)."""
    return bool(getattr(exc, "connection_invalidated", False)) or exc.__class__.__name__ == "OperationalError"


def database_problem(exc: DBAPIError, name: str) -> Response:
    if str(getattr(exc.orig, "sqlstate", "") or "").startswith("40"):  # deadlock / serialisation failure
        log.warning("transaction rolled back by the database in %s (request %s): %s", name,
                    audit.request_id(), type(exc.orig).__name__)
        return problems.response(503, "A concurrent change got in the way; nothing was changed. Try again.",
                                 headers={"Retry-After": "1"})
    if database_down(exc):
        log.warning("database unavailable in %s (request %s)", name, audit.request_id())
        return problems.response(503, "The database is not reachable; nothing was read or changed.",
                                 headers={"Retry-After": "5"})
    log.exception("database error in %s (request %s)", name, audit.request_id())
    return problems.response(500, "Internal error; nothing was changed.")


def finish(resp: Response, action: str | None, user, name: str) -> Response:
    """Commit the request's work with its audit entry, or roll back and audit the
    failure. Pages (web/) end their requests here too."""
    fields = g.setdefault("audit_fields", {})
    if fields.get("patient_id"):
        fields["patient_id"] = str(fields["patient_id"])[:36]
    actor = user or g.get("login_candidate")
    if resp.status_code < 400:
        try:
            if action:
                audit.record(action, "ok", actor=actor, **fields)
            db.commit()
            return resp
        except DBAPIError as exc:
            resp = database_problem(exc, name)
        except Exception:
            log.exception("commit failed in %s (request %s)", name, audit.request_id())
            resp = problems.response(500, "Internal error; nothing was changed.")
    try:
        db.rollback()
    except DBAPIError:
        pass  # the connection is gone; the pool replaces it
    g.pop("audit_pending", None)
    if action and resp.status_code != 503:
        audit.record(action, audit.outcome_for(resp.status_code), actor=actor,
                     **{**fields, "detail": fields.get("detail") or f"status={resp.status_code}"})
        try:
            db.commit()
        except Exception:
            log.exception("could not write the audit entry of a failed request")
            db.rollback()
    return resp


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
        rv = meta["response"]().dump(rv)
    resp = jsonify(rv)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


# Route modules register themselves on import.
import api.auth, api.directory, api.patients, api.record, api.notes, api.breakglass  # noqa: E402,F401
import api.audit_log, api.openapi  # noqa: E402,F401
