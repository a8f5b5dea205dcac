"""The unit of work (docs/ARCHITECTURE.md, "One unit of work"): the one object that owns
a request's transaction. It holds what the request will add to the access log, the
realtime events it stored and the sessions it ended, and it ends the request: commit
the change together with its audit entry, then tell the after-commit listeners
(realtime) — or roll everything back and log the failure instead.

Every door ends its requests through `finish`: API routes (api/pipeline.py), pages
(web/pipeline.py), Socket.IO handlers, the CLI and the demo loader (`commit`)."""

import logging
import uuid
from typing import Callable

from flask import Response, current_app, g, has_request_context, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from renkei import audit, db, problems

log = logging.getLogger("renkei")
LISTENERS = "renkei.after_commit"  # app.extensions key: who hears of committed work
# Longer than gunicorn's keep-alive (platform/gunicorn.conf.py, 5 s) and nginx's, so a
# client that waits as told opens a fresh connection instead of racing a closing one.
RETRY_AFTER = "7"


class Work:
    def __init__(self):
        supplied = request.headers.get("X-Request-Id", "") if has_request_context() else ""
        if audit.REQUEST_ID.match(supplied):
            self.request_id = supplied
        else:  # a command (CLI, demo loader) has no request to name
            self.request_id = uuid.uuid4().hex if has_request_context() else None
        self.client_addr = audit.address(request.remote_addr) if has_request_context() else None
        self.audit_fields: dict = {}  # patient / section / detail of this request's entry
        self.marks: list[str] = []  # added to the entry's detail, e.g. break-glass
        self.patients_found: set[str] = set()  # patient ids the access check has read
        self.reset_announced: set[str] = set()  # patients told of a reset person's read
        self.entries: list[audit.Pending] = []
        self.outbox: list[tuple] = []  # realtime events named by services (renkei/notify.py)
        self.outreach: list[tuple] = []  # pushes and mails named by services (renkei/outreach.py)
        self.events: list[tuple[str, dict, dict]] = []  # (event name, payload, {user id: seq}), stored
        self.closing: list[Callable[[], None]] = []  # the last writes before COMMIT
        self.ended: list[tuple[str, str]] = []  # ("user" | "token", id) whose sockets must close
        self.afterwards: list[Callable[[], None]] = []  # core work that must follow the commit
        self.actor = None  # who is signing in, for the audit entry of a failed attempt
        self.token = None  # the ApiToken row the caller authenticated with, if any
        self.cookie_auth = False  # the caller came with the browser's session cookie

    def describe(self, **fields):
        """Name the patient, section or a detail in this request's audit entry."""
        self.audit_fields.update(fields)

    def announced_reset(self, patient_id: str) -> bool:
        """True if this request already announced a reset person's read of the patient."""
        if patient_id in self.reset_announced:
            return True
        self.reset_announced.add(patient_id)
        return False

    def mark(self, note: str):
        """Something the request's audit entry must show whatever else its detail says."""
        if note not in self.marks:
            self.marks.append(note)

    def record(self, action: str, outcome: str, *, actor=None, patient_id=None, section=None, detail=None):
        """Queue an access-log entry; it is written in this transaction by `commit`.
        Only validated values enter its columns (renkei/audit.py `place`)."""
        patient_id, section, notes = audit.place(patient_id, section, self.patients_found)
        detail = ";".join(([str(detail)] if detail else []) + notes) or None
        entry = audit.Pending(
            action=action,
            outcome=outcome,
            patient_id=patient_id,
            section=section,
            detail=audit.whole_or_digest(detail),
            client_addr=self.client_addr,
            request_id=self.request_id,
        )
        if actor is not None:
            entry.actor_id, entry.actor_org_id = actor.id, actor.organization_id
        self.entries.append(entry)

    def later(self, step: Callable[[], None]):
        """Run `step` after this transaction commits (never if it rolls back)."""
        self.afterwards.append(step)

    def last_before_commit(self, step: Callable[[], None]):
        """Run `step` inside the transaction just before COMMIT: writes that lock shared
        rows (event seqs) wait until the request's own work is done."""
        self.closing.append(step)

    def end_sessions(self, *, user_id: str | None = None, token_id: str | None = None):
        """After commit, close the open sockets of a user or of one token."""
        self.ended.append(("user", user_id) if user_id else ("token", token_id))

    def commit(self):
        """Append the audit entries, commit, then tell the listeners: events describe
        only what has committed."""
        for step in self.closing:
            step()
        # Inserted, no lock: the sealer places them (renkei/audit_sealer.py). A request
        # that changed nothing else writes them in one statement, with no BEGIN/COMMIT.
        wrote = db.session.new or db.session.dirty or db.session.deleted
        audit.write(self.entries, alone=bool(self.entries) and not wrote and not db.in_transaction())
        self.entries, self.closing, self.outbox, self.outreach = [], [], [], []
        db.session.commit()
        steps, self.afterwards = self.afterwards, []
        for step in steps:
            step()
        if self.events or self.ended:
            for listener in current_app.extensions.get(LISTENERS, ()):
                listener(self.events, self.ended)
        self.events, self.ended = [], []

    def rollback(self):
        db.session.rollback()
        self.patients_found = set()  # one found inside the rolled-back work may be gone with it
        self.closing, self.outbox, self.outreach = [], [], []
        self.entries, self.events, self.ended, self.afterwards = [], [], [], []  # marks stay: they describe the attempt

    def finish(self, resp: Response, action: str | None, user, where: str) -> Response:
        """End a request: commit its work with its audit entry, or roll back and audit the
        failure (a failed request changes nothing but the log)."""
        fields = self.audit_fields
        actor = user or self.actor
        if resp.status_code < 400:
            try:
                if action:
                    self.record(action, "ok", actor=actor, **self._with_marks(fields))
                self.commit()
                return resp
            except (DBAPIError, PoolTimeout) as exc:
                resp = self.database_problem(exc, where)
            except Exception:
                log.exception("commit failed in %s (request %s)", where, self.request_id)
                resp = problems.response(500, "Internal error; nothing was changed.")
        try:
            self.rollback()
        except DBAPIError:
            pass  # the connection is gone; the pool replaces it
        self.entries = []
        if action and resp.status_code != 503:
            failed = {**fields, "detail": fields.get("detail") or f"status={resp.status_code}"}
            self.record(action, audit.outcome_for(resp.status_code), actor=actor, **self._with_marks(failed))
            try:
                self.commit()
            except Exception:
                log.exception("could not write the audit entry of a failed request")
                self.rollback()
        return resp

    def _with_marks(self, fields: dict) -> dict:
        detail = ";".join(([fields["detail"]] if fields.get("detail") else []) + self.marks)
        return {**fields, "detail": detail or None}

    def database_problem(self, exc, where: str) -> Response:
        """A database error as the client should see it: 503 to retry, never details."""
        if db.pool_exhausted(exc):
            log.warning("no database connection free in %s (request %s)", where, self.request_id)
            return problems.response(
                503, "The service is busy; nothing was changed. Try again.", headers={"Retry-After": RETRY_AFTER}
            )
        if db.conflict(exc):
            log.warning(
                "transaction rolled back by the database in %s (request %s): %s",
                where,
                self.request_id,
                type(exc.orig).__name__,
            )
            return problems.response(
                503, "A concurrent change got in the way; nothing was changed. Try again.", headers={"Retry-After": "1"}
            )
        if db.out_of_resources(exc):
            log.error(
                "the database is out of space or resources in %s (request %s): %s",
                where,
                self.request_id,
                type(exc.orig).__name__,
            )
            return problems.response(
                503,
                "The database cannot take this now; nothing was changed. Try again later.",
                headers={"Retry-After": RETRY_AFTER},
            )
        if db.database_down(exc):
            log.warning("database unavailable in %s (request %s)", where, self.request_id)
            return problems.response(
                503, "The database is not reachable; nothing was read or changed.", headers={"Retry-After": RETRY_AFTER}
            )
        log.exception("database error in %s (request %s)", where, self.request_id)
        return problems.response(500, "Internal error; nothing was changed.")


def begin() -> Work:
    """A fresh unit of work for a request (doors call this first)."""
    g.work = Work()
    return g.work


def current() -> Work:
    """This request's (or command's) unit of work, begun on first use."""
    if "work" not in g:
        return begin()
    return g.work


def describe(**fields):
    current().describe(**fields)


def subscribe(app, listener: Callable[[list, list], None]):
    """Call listener(events, ended_sessions) after every commit that carries any."""
    app.extensions.setdefault(LISTENERS, []).append(listener)
