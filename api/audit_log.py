"""The access log for administrators and auditors. Reading it is audited too."""
from datetime import timezone

from flask import Response, stream_with_context
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from api import endpoint, set_audit
from api.schemas import AuditList, AuditQuery, AuditVerify
from models import AuditEntry
from renkei import audit, db

EXPORT_BATCH = 5000


def _utc(dt):
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


def filtered(query: dict):
    stmt = select(AuditEntry)
    for name in ("actor_id", "patient_id", "action"):
        if query.get(name):
            stmt = stmt.where(getattr(AuditEntry, name) == query[name])
    if query.get("since"):
        stmt = stmt.where(AuditEntry.at >= _utc(query["since"]))
    if query.get("until"):
        stmt = stmt.where(AuditEntry.at < _utc(query["until"]))
    return stmt


def _describe(query):
    set_audit(detail=";".join(f"{k}={v}" for k, v in sorted(query.items())
                              if k in ("actor_id", "patient_id", "action"))[:200] or None)


@endpoint("GET", "/audit", summary="Search the access log, newest first", tag="audit",
          action="audit.read", auth="audit", query=AuditQuery, response=AuditList)
def search(query):
    _describe(query)
    stmt = filtered(query)
    if query.get("cursor"):
        stmt = stmt.where(AuditEntry.seq < query["cursor"])
    rows = list(db.session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(query["limit"] + 1)).scalars())
    page = rows[:query["limit"]]
    return {"items": page,  # dumped once, by the response schema
            "next_cursor": str(page[-1].seq) if len(rows) > query["limit"] else None}


@endpoint("GET", "/audit/verify", summary="Verify the hash chain of the access log", tag="audit",
          action="audit.verify", auth="audit", response=AuditVerify)
def verify():
    return audit.verify()


class Checkpoint(Schema):
    seq = fields.Integer(required=True)
    hash = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    at = fields.String(required=True)
    public_key = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    signature = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{128}$"))


class CheckpointResult(Schema):
    ok = fields.Boolean()
    reason = fields.String()
    entries = fields.Integer()
    first_bad = fields.Integer(allow_none=True)


@endpoint("GET", "/audit/checkpoint", summary="A signed checkpoint of the log's head, to keep outside the system",
          tag="audit", action="audit.checkpoint", auth="audit", response=Checkpoint)
def get_checkpoint():
    from renkei import audit_archive
    return audit_archive.checkpoint()


@endpoint("POST", "/audit/checkpoint/verify", summary="Check the log against a saved checkpoint (detects truncation)",
          tag="audit", action="audit.verify", auth="audit", body=Checkpoint, response=CheckpointResult)
def verify_checkpoint(body):
    from renkei import audit_archive
    return audit_archive.verify_checkpoint(body)


@endpoint("GET", "/audit/export.csv", summary="Export the access log as CSV (same filters)",
          tag="audit", action="audit.export", auth="audit", query=AuditQuery)
def export(query):
    _describe(query)
    head = db.session.execute(select(func.max(AuditEntry.seq))).scalar() or 0

    def entries():
        # Keyset pages up to the head at the start: memory stays flat on a log of millions.
        after = 0
        while True:
            page = list(db.session.execute(filtered(query).where(AuditEntry.seq > after, AuditEntry.seq <= head)
                                           .order_by(AuditEntry.seq).limit(EXPORT_BATCH)).scalars())
            yield from page
            if len(page) < EXPORT_BATCH:
                return
            after = page[-1].seq
            db.session.expunge_all()
    return Response(stream_with_context(audit.csv_lines(entries())), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="renkei-audit.csv"'})
