"""The access log (SPEC §3 Audit): one entry per request that touches patient data,
credentials, teams, consent, exports or the log itself, allowed or not.

Entries form a hash chain: each entry's hash covers its fields and the previous
entry's hash, and seq has no gaps, so editing, deleting or reordering an entry is
found by `verify`. No clinical content is ever written here."""
import csv
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from flask import g, has_request_context, request
from sqlalchemy import select

from models import AuditEntry, utcnow
from renkei import db
from renkei.timefmt import iso

GENESIS = "0" * 64
CSV_COLUMNS = ("seq", "at", "actor_id", "actor_org_id", "action", "patient_id", "section",
               "outcome", "client_addr", "request_id", "detail", "hash")


@dataclass
class Pending:
    action: str
    outcome: str
    actor_id: str | None = None
    actor_org_id: str | None = None
    patient_id: str | None = None
    section: str | None = None
    detail: str | None = None
    client_addr: str | None = None
    request_id: str | None = None
    at: object = field(default_factory=utcnow)


def request_id() -> str:
    if "request_id" not in g:
        supplied = request.headers.get("X-Request-Id", "") if has_request_context() else ""
        g.request_id = supplied[:64] if supplied.isprintable() and supplied else uuid.uuid4().hex
    return g.request_id


def record(action: str, outcome: str, *, actor=None, patient_id=None, section=None,
           detail=None):
    """Queue an entry; it is written by db.commit() in the request's transaction."""
    entry = Pending(action=action, outcome=outcome, patient_id=patient_id, section=section,
                    detail=(detail or None) and str(detail)[:200])
    if actor is not None:
        entry.actor_id, entry.actor_org_id = actor.id, actor.organization_id
    if has_request_context():
        entry.client_addr = request.remote_addr
        entry.request_id = request_id()
    g.setdefault("audit_pending", []).append(entry)


def entry_hash(prev_hash: str, seq: int, e) -> str:
    fields = [seq, e.at.isoformat(timespec="microseconds"), e.actor_id, e.actor_org_id,
              e.action, e.patient_id, e.section, e.outcome, e.client_addr, e.request_id,
              e.detail, prev_hash]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def write_pending():
    pending = g.pop("audit_pending", [])
    if not pending:
        return
    db.lock_audit_head()
    head = db.session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    for e in pending:
        seq += 1
        digest = entry_hash(prev, seq, e)
        db.session.add(AuditEntry(seq=seq, at=e.at, actor_id=e.actor_id,
                                  actor_org_id=e.actor_org_id, action=e.action,
                                  patient_id=e.patient_id, section=e.section,
                                  outcome=e.outcome, client_addr=e.client_addr,
                                  request_id=e.request_id, detail=e.detail,
                                  prev_hash=prev, hash=digest))
        prev = digest


def verify(batch: int = 5000) -> dict:
    """Walk the chain in seq order; report the first entry that does not fit.
    After an archival the chain begins at the signed anchor (renkei/audit_archive.py)."""
    from renkei.audit_archive import live_start
    start_seq, prev, genuine = live_start()
    if not genuine:
        return {"ok": False, "entries": 0, "first_bad": start_seq + 1}
    expected_seq, count = start_seq + 1, 0
    rows = db.session.execute(select(AuditEntry).where(AuditEntry.seq > start_seq).order_by(AuditEntry.seq)
                              .execution_options(yield_per=batch)).scalars()
    for e in rows:
        if e.seq != expected_seq or e.prev_hash != prev or entry_hash(prev, e.seq, e) != e.hash:
            return {"ok": False, "entries": count, "first_bad": min(e.seq, expected_seq)}
        prev, expected_seq, count = e.hash, e.seq + 1, count + 1
    return {"ok": True, "entries": count, "first_bad": None}


def outcome_for(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict",
            412: "conflict", 428: "invalid", 400: "invalid", 422: "invalid",
            429: "throttled"}.get(status, "failed")


def csv_lines(entries, chunk: int = 65536):
    """The CSV export of entries (AuditEntry rows or archived dicts), in chunks of text."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = e if isinstance(e, dict) else {c: getattr(e, c) for c in CSV_COLUMNS}
        at = datetime.fromisoformat(row["at"]) if isinstance(row["at"], str) else row["at"]
        writer.writerow([iso(at) if c == "at" else row[c] for c in CSV_COLUMNS])
        if buf.tell() > chunk:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
