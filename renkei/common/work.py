"""The unit of work (docs/ARCHITECTURE.md, "One unit of work"): the one object that owns
a request's transaction. Services name what the request does besides its own writes —
the access-log entry, the realtime events, who is told by push or mail, the sessions it
ended — as typed records on it; at the end the door calls `finish`, which runs the
commit steps and commits everything together, or rolls everything back and logs the
failure instead.

The steps are the domains' (the access log's, outreach's, realtime's), installed by the
app factory (renkei/app.py) in a fixed order: this module imports no domain, and a
step is not a callback some service left behind but the same code for every request.

Every door ends its requests through `finish`: API routes (api/pipeline.py), pages
(web/pipeline.py), Socket.IO handlers, the CLI and the demo loader (`commit`)."""

import ipaddress
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models import utcnow
from renkei.common import db
from renkei.common.problems import Problem

log = logging.getLogger("renkei")
STEPS = "renkei.commit_steps"  # app.extensions key: the steps every commit runs, in order
REQUEST_ID = re.compile(r"^[0-9A-Fa-f-]{8,64}$")  # a UUID or hex: no room for words
# Longer than gunicorn's keep-alive (platform/gunicorn.conf.py, 5 s) and nginx's, so a
# client that waits as told opens a fresh connection instead of racing a closing one.
RETRY_AFTER = "7"


# --- what a request names besides its own writes ----------------------------------------


@dataclass
class Entry:
    """An access-log entry as the request names it. The access log's step checks each
    column before it is written (renkei/access_log/entries.py `place`)."""

    action: str
    outcome: str
    actor_id: str | None = None
    actor_org_id: str | None = None
    patient_id: object = None  # as named: kept only if it is a real patient's id
    section: object = None
    detail: str | None = None


@dataclass
class Event:
    """A realtime event for the patient's team (renkei/outreach/events.py `queue`)."""

    name: str
    patient_id: str
    payload: dict
    recipients: list[str]
    at: datetime = field(default_factory=utcnow)


@dataclass
class Stored:
    """An event as stored at commit: its body and each recipient's seq."""

    name: str
    body: dict
    seqs: dict[str, int]


@dataclass
class Told:
    """One person should hear of something outside the app (renkei/outreach/tell.py)."""

    kind: str
    patient_id: str
    user_id: str
    ids: dict


class Step(Protocol):
    """What a domain adds to every commit. `before_commit` runs inside the transaction
    (last writes: they lock shared rows only for the commit's milliseconds);
    `after_commit` only once the change is durable, never after a rollback."""

    def before_commit(self, unit: "Work") -> None: ...

    def after_commit(self, unit: "Work") -> None: ...


def install(app: Flask, *steps: Step):
    """Add steps to every commit of `app`, after those installed before."""
    app.extensions.setdefault(STEPS, []).extend(steps)


# --- the unit of work --------------------------------------------------------------------


class Work:
    def __init__(self):
        supplied = request.headers.get("X-Request-Id", "") if has_request_context() else ""
        if REQUEST_ID.match(supplied):
            self.request_id = supplied
        else:  # a command (CLI, demo loader) has no request to name
            self.request_id = uuid.uuid4().hex if has_request_context() else None
        self.client_addr = address(request.remote_addr) if has_request_context() else None
        self.entry_fields: dict = {}  # patient / section / detail of this request's entry
        self.marks: list[str] = []  # added to the entry's detail, e.g. break-glass
        self.patients_found: set[str] = set()  # patient ids the access check has read
        self.reset_announced: set[str] = set()  # patients told of a reset person's read
        self.actor = None  # who is signing in, for the access-log entry of a failed attempt
        self.token = None  # the ApiToken row the caller authenticated with, if any
        self.cookie_auth = False  # the caller came with the browser's session cookie
        self._clear()

    def _clear(self):
        self.entries: list[Entry] = []  # the access log's entries
        self.events: list[Event] = []  # realtime events, stored with their seqs at commit
        self.stored: list[Stored] = []  # ... as stored, for realtime after the commit
        self.told: list[Told] = []  # pushes and mails, decided by each person's settings at commit
        self.deliveries_queued = False  # a delivery row was added: the sender looks at once
        self.ended: list[tuple[str, str]] = []  # ("user" | "token", id) whose sockets must close
        self.freed_space = False  # a patient was shredded: overwrite the freed pages after commit

    def describe(self, **fields):
        """Name the patient, section or a detail in this request's access-log entry."""
        self.entry_fields.update(fields)

    def announced_reset(self, patient_id: str) -> bool:
        """True if this request already announced a reset person's read of the patient."""
        if patient_id in self.reset_announced:
            return True
        self.reset_announced.add(patient_id)
        return False

    def mark(self, note: str):
        """Something the request's access-log entry must show whatever else its detail says."""
        if note not in self.marks:
            self.marks.append(note)

    def add_entry(self, action: str, outcome: str, *, actor=None, patient_id=None, section=None, detail=None):
        """Queue an access-log entry; the access log's step writes it at commit."""
        entry = Entry(action, outcome, patient_id=patient_id, section=section, detail=detail)
        if actor is not None:
            entry.actor_id, entry.actor_org_id = actor.id, actor.organization_id
        self.entries.append(entry)

    def end_sessions(self, *, user_id: str | None = None, token_id: str | None = None):
        """After commit, close the open sockets of a user or of one token."""
        self.ended.append(("user", user_id) if user_id else ("token", token_id))

    def commit(self):
        """Run every step's last writes, commit, then every step's after-commit part:
        events describe only what has committed."""
        steps = current_app.extensions[STEPS]  # no steps installed: no entry would be written
        for step in steps:
            step.before_commit(self)
        db.session.commit()
        try:
            if self.freed_space:
                db.purge_freed_space()
            for step in steps:
                try:
                    step.after_commit(self)
                except Exception:  # the change is durable: say so in the log, not to the client
                    log.exception("after-commit step %s failed (request %s)", type(step).__name__, self.request_id)
        finally:  # what this commit carried never rides on the next one
            self._clear()

    def rollback(self):
        try:
            db.session.rollback()
        finally:  # even when the connection is gone: nothing of the failed work is sent
            self.patients_found = set()  # one found inside the rolled-back work may be gone with it
            self._clear()  # marks stay: they describe the attempt

    def finish(self, status: int, action: str | None, user, where: str) -> Problem | None:
        """End a request that answers `status`: commit its work with its access-log entry, or
        roll back and audit the failure (a failed request changes nothing but the log).
        A problem to answer instead if the commit itself failed."""
        fields = self.entry_fields
        actor = user or self.actor
        problem = None
        if status < 400:
            try:
                if action:
                    self.add_entry(action, "ok", actor=actor, **self._with_marks(fields))
                self.commit()
                return None
            except (DBAPIError, PoolTimeout) as exc:
                problem = self.database_problem(exc, where)
            except Exception:
                log.exception("commit failed in %s (request %s)", where, self.request_id)
                problem = Problem(500, "Internal error; nothing was changed.")
            status = problem.status
        try:
            self.rollback()
        except DBAPIError:
            pass  # the connection is gone; the pool replaces it
        self.entries = []
        if action and status != 503:
            failed = {**fields, "detail": fields.get("detail") or f"status={status}"}
            self.add_entry(action, outcome_for(status), actor=actor, **self._with_marks(failed))
            try:
                self.commit()
            except Exception:
                log.exception("could not write the access-log entry of a failed request")
                self.rollback()
        return problem

    def _with_marks(self, fields: dict) -> dict:
        detail = ";".join(([fields["detail"]] if fields.get("detail") else []) + self.marks)
        return {**fields, "detail": detail or None}

    def database_problem(self, exc, where: str) -> Problem:
        """A database error as the client should see it: 503 to retry, never details."""
        if db.pool_exhausted(exc):
            log.warning("no database connection free in %s (request %s)", where, self.request_id)
            return Problem(
                503, "The service is busy; nothing was changed. Try again.", headers={"Retry-After": RETRY_AFTER}
            )
        if db.conflict(exc):
            log.warning(
                "transaction rolled back by the database in %s (request %s): %s",
                where,
                self.request_id,
                type(exc.orig).__name__,
            )
            return Problem(
                503, "A concurrent change got in the way; nothing was changed. Try again.", headers={"Retry-After": "1"}
            )
        if db.out_of_resources(exc):
            log.error(
                "the database is out of space or resources in %s (request %s): %s",
                where,
                self.request_id,
                type(exc.orig).__name__,
            )
            return Problem(
                503,
                "The database cannot take this now; nothing was changed. Try again later.",
                headers={"Retry-After": RETRY_AFTER},
            )
        if db.database_down(exc):
            log.warning("database unavailable in %s (request %s)", where, self.request_id)
            return Problem(
                503, "The database is not reachable; nothing was read or changed.", headers={"Retry-After": RETRY_AFTER}
            )
        log.exception("database error in %s (request %s)", where, self.request_id)
        return Problem(500, "Internal error; nothing was changed.")


def address(value) -> str | None:
    """A client address as the log keeps it: a valid IP address, or nothing."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def outcome_for(status: int) -> str:
    """The outcome an access-log entry records for an HTTP status."""
    if status < 400:
        return "ok"
    return {
        401: "unauthenticated",
        403: "denied",
        404: "not_found",
        409: "conflict",
        412: "conflict",
        428: "invalid",
        400: "invalid",
        422: "invalid",
        429: "throttled",
    }.get(status, "failed")


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
