"""The access log as administrators and auditors read it: search, export, verify,
checkpoints, and the usage figures a municipality asks for (活用状況). Each operation
checks its reader (renkei.patients.staff.require_staff); reading the log is itself audited by the
door that calls these (docs/ARCHITECTURE.md, "The access log")."""

import re
from datetime import timedelta, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select

from models import (
    AuditAnchor,
    AuditEntry,
    BreakGlass,
    Consent,
    Note,
    Organization,
    Patient,
    SectionRevision,
    User,
    utcnow,
)
from renkei.access_log import entries, sealer, tree, verification
from renkei.common import crypto, db, problems, vault, work
from renkei.patients import registry
from renkei.people import staff, throttle

EXPORT_BATCH = 5000
SEARCHES_PER_WINDOW = 30  # an auditor's name searches per lockout window (settings.lockout_seconds)
ACTION = re.compile(r"^[a-z_]{1,20}\.[a-z_]{1,19}$")


class Query(Schema):
    """The filters of a search or export; the API validates its query string with it."""

    class Meta:
        unknown = "exclude"

    actor_id = fields.String(validate=validate.Length(max=36))
    patient_id = fields.String(validate=validate.Length(max=36))
    action = fields.String(validate=validate.Length(max=40))
    since = fields.DateTime()
    until = fields.DateTime()
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.Integer(validate=validate.Range(min=1, max=2**63 - 1))  # a database integer
    connections = fields.Boolean(
        load_default=True,
        metadata={"description": "false: leave out realtime.connect (a socket's every connection), as the page does"},
    )

    @validates_schema
    def _range_in_order(self, data, **_):
        if data.get("since") and data.get("until") and _utc(data["since"]) > _utc(data["until"]):
            raise ValidationError("The range ends before it starts.", "until")


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
    if not query.get("connections", True) and not query.get("action"):
        stmt = stmt.where(AuditEntry.action != "realtime.connect")
    return stmt


def _describe(query: dict):
    """Which filters the reader used: ids as they are when well-formed, else digests."""
    parts = []
    for name in ("action", "actor_id", "patient_id"):
        value = query.get(name)
        if value:
            if name == "action":  # an action is named as typed only if the log holds it
                known = (
                    bool(ACTION.match(value))
                    and db.session.execute(select(AuditEntry.id).where(AuditEntry.action == value).limit(1)).first()
                    is not None
                )
            else:
                known = bool(entries.UUID.match(value))
            parts.append(entries.ref(name, value, known))
    work.describe(detail=";".join(parts) or None)


def search(reader: User, query: dict) -> dict:
    """Entries matching the filters, newest first, keyset-paged by insertion id (an entry
    has an id at once; its seq, its place in the tree, comes when it is sealed)."""
    staff.require_staff(reader, "audit")
    sealer.catch_up()
    _describe(query)
    stmt = filtered(query)
    if query.get("cursor"):
        stmt = stmt.where(AuditEntry.id < query["cursor"])
    rows = list(db.session.execute(stmt.order_by(AuditEntry.id.desc()).limit(query["limit"] + 1)).scalars())
    page = rows[: query["limit"]]
    return {"items": page, "next_cursor": str(page[-1].id) if len(rows) > query["limit"] else None}


def export_csv(reader: User, query: dict):
    """The matching entries as CSV text chunks (the API's machine format)."""
    return entries.csv_lines(export_entries(reader, query))


def export_entries(reader: User, query: dict):
    """The matching entries, oldest first. Keyset pages up to the head at the start:
    memory stays flat on a log of millions."""
    staff.require_staff(reader, "audit")
    sealer.catch_up()
    _describe(query)
    head = db.session.execute(select(func.max(AuditEntry.id))).scalar() or 0

    def entries():
        after = 0
        while True:
            page = list(
                db.session.execute(
                    filtered(query)
                    .where(AuditEntry.id > after, AuditEntry.id <= head)
                    .order_by(AuditEntry.id)
                    .limit(EXPORT_BATCH)
                ).scalars()
            )
            db.session.commit()  # no transaction left open while a slow client downloads
            yield from page
            if len(page) < EXPORT_BATCH:
                return
            after = page[-1].id
            db.session.expunge_all()

    return entries()


def find_patients(reader: User, name: str) -> list[dict]:
    """Patients whose full name or kana this is (exact, through the blind index), for an
    auditor answering "who saw my record?": id, name, kana and birth date only, never
    clinical content. Auditors only (administrators never learn who is a patient), 30
    searches per person per lockout window; the access log keeps a keyed digest of the
    typed name and the ids it found."""
    staff.require_staff(reader, "auditor")
    typed = vault.keyed_digest("audit_patient_search", crypto.normalize_name(name))
    work.describe(detail="name=" + typed)
    throttle.count_lookup("audit_patient_search", reader, SEARCHES_PER_WINDOW)
    wanted = vault.name_index(name)
    rows = list(
        db.session.execute(
            select(Patient).where(
                (Patient.name_index == wanted) | (Patient.kana_index == wanted), Patient.deleted_at.is_(None)
            )
        ).scalars()
    )
    work.describe(detail=f"name={typed};found=" + ",".join(p.id for p in rows[:4]) + (",…" if len(rows) > 4 else ""))
    return [_identity(p) for p in rows]


def patient_identity(reader: User, patient_id: str) -> dict | None:
    """Who a patient id in the log is (name, kana, birth date), or None if unknown or
    shredded. Auditors only."""
    staff.require_staff(reader, "auditor")
    patient = db.session.get(Patient, patient_id) if entries.UUID.match(patient_id or "") else None
    return _identity(patient) if patient is not None and patient.demographics_ct is not None else None


def _identity(patient: Patient) -> dict:
    d = registry.demographics(patient)
    return {"id": patient.id, "name": d["name"], "name_kana": d["name_kana"], "birth_date": d["birth_date"]}


def verify(reader: User) -> dict:
    staff.require_staff(reader, "audit")
    sealer.catch_up()
    return verification.verify()


def checkpoint(reader: User) -> dict:
    staff.require_staff(reader, "audit")
    sealer.catch_up()
    return sealer.checkpoint()


def verify_checkpoint(reader: User, note: str) -> dict:
    staff.require_staff(reader, "audit")
    return verification.verify_checkpoint(note)


def inclusion_proof(reader: User, seq: int, tree_size: int) -> dict:
    """RFC 9162 inclusion proof of entry `seq` (leaf seq − 1) in the tree of `tree_size`."""
    staff.require_staff(reader, "audit")
    work.describe(detail=f"seq={seq};tree_size={tree_size}")
    _signed_size("tree_size", tree_size)
    if seq > tree_size:
        raise problems.invalid({"seq": ["Not in a tree of this size: not sealed yet, or tree_size too small."]})
    tiles = tree.Tiles()
    return {
        "leaf_index": seq - 1,
        "leaf_hash": entries.b64(tiles.node(0, seq - 1)),
        "tree_size": tree_size,
        "audit_path": [entries.b64(h) for h in tiles.inclusion(seq - 1, tree_size)],
    }


def consistency_proof(reader: User, first: int, second: int) -> dict:
    """RFC 9162 consistency proof between the trees of `first` and `second` entries."""
    staff.require_staff(reader, "audit")
    work.describe(detail=f"first={first};second={second}")
    _signed_size("second", second)
    if first > second:
        raise problems.invalid({"first": ["The first tree must not be larger than the second."]})
    return {"proof": [entries.b64(h) for h in tree.Tiles().consistency(first, second)]}


def _signed_size(field: str, size: int):
    """A proof is for a tree some signed head names: 422 on `field` beyond the newest."""
    sealed, _ = sealer.head()
    if size > sealed:
        raise problems.invalid({field: [f"The log has no signed head of this size yet (newest: {sealed})."]})


def archived_through() -> AuditAnchor | None:
    """The newest archive anchor: entries up to its seq live in archive files."""
    return db.session.execute(select(AuditAnchor).order_by(AuditAnchor.seq.desc()).limit(1)).scalar()


def everyone(reader: User) -> list[User]:
    """Every person ever in the directory, for naming actors in the log."""
    staff.require_staff(reader, "audit")
    return db.session.execute(select(User).order_by(User.display_name)).scalars().all()


def usage(reader: User, days: int = 30, weeks: int = 8) -> dict:
    """活用状況: organisations and people active in the last `days`, by profession;
    patients with consent; break-glass openings and notes by profession in those days;
    updates and notes per week for `weeks` weeks."""
    staff.require_staff(reader, "audit")
    now = utcnow()
    active = (
        select(AuditEntry.actor_id)
        .where(
            AuditEntry.at >= now - timedelta(days=days), AuditEntry.outcome == "ok", AuditEntry.patient_id.is_not(None)
        )
        .distinct()
    )
    by_profession = db.session.execute(
        select(User.profession, func.count(User.id)).where(User.id.in_(active)).group_by(User.profession)
    ).all()
    orgs_active = db.session.execute(
        select(func.count(func.distinct(User.organization_id))).where(User.id.in_(active))
    ).scalar()
    per_week = []
    for i in range(weeks - 1, -1, -1):
        start = (now - timedelta(days=now.weekday() + 7 * i)).replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=7)
        updates = db.session.execute(
            select(func.count(SectionRevision.id)).where(
                SectionRevision.created_at >= start, SectionRevision.created_at < end
            )
        ).scalar()
        notes = db.session.execute(
            select(func.count(Note.id)).where(Note.created_at >= start, Note.created_at < end)
        ).scalar()
        per_week.append({"start": start.date(), "updates": updates, "notes": notes})
    since = now - timedelta(days=days)
    notes_by_profession = db.session.execute(
        select(User.profession, func.count(Note.id))
        .join(User, User.id == Note.created_by)
        .where(Note.created_at >= since)
        .group_by(User.profession)
    ).all()
    live = Patient.deleted_at.is_(None)
    consented = select(Consent.patient_id).where(Consent.withdrawn_at.is_(None))
    totals = {
        "organizations": db.session.execute(select(func.count(Organization.id))).scalar(),
        "users": db.session.execute(select(func.count(User.id)).where(User.disabled.is_(False))).scalar(),
        "orgs_active": orgs_active,
        "people_active": sum(n for _, n in by_profession),
        "patients": db.session.execute(select(func.count(Patient.id)).where(live)).scalar(),
        "patients_with_consent": db.session.execute(
            select(func.count(Patient.id)).where(live, Patient.id.in_(consented))
        ).scalar(),
        "breakglass": db.session.execute(
            select(func.count(BreakGlass.id)).where(BreakGlass.opened_at >= since)
        ).scalar(),
    }
    return {
        "totals": totals,
        "by_profession": by_profession,
        "notes_by_profession": notes_by_profession,
        "weeks": per_week,
        "days": days,
    }
