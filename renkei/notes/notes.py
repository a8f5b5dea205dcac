"""The 連絡帳 timeline: short posts, urgent flags, acknowledgements (既読)."""

from sqlalchemy import select

from models import Note, NoteAck, Patient, User, new_id, utcnow
from renkei.common import crypto, db, paging, vault, work
from renkei.common.problems import invalid, not_found
from renkei.outreach import events, tell
from renkei.patients import authz, escalation, teams
from renkei.patients.authz import patient_access


def notes_out(patient: Patient, notes: list[Note], viewer: User) -> list[dict]:
    key = vault.patient_key(patient)
    ids = [n.id for n in notes]
    acks = (
        db.session.execute(
            select(NoteAck, User.display_name)
            .join(User, User.id == NoteAck.user_id)
            .where(NoteAck.note_id.in_(ids))
            .order_by(NoteAck.at)
        ).all()
        if ids
        else []
    )
    authors = (
        dict(
            db.session.execute(
                select(User.id, User.display_name).where(User.id.in_({n.created_by for n in notes}))
            ).all()
        )
        if notes
        else {}
    )
    team = set(events.team_user_ids(patient.id)) if notes else set()
    rounds = escalation.rounds_of([n.id for n in notes if n.urgent])
    out = []
    for n in notes:
        mine = [{"user_id": a.user_id, "display_name": name, "at": a.at} for a, name in acks if a.note_id == n.id]
        out.append(
            {
                "id": n.id,
                "patient_id": patient.id,
                "category": n.category,
                "urgent": n.urgent,
                "created_at": n.created_at,
                "author_id": n.created_by,
                "author_name": authors.get(n.created_by),
                "body": crypto.unseal(key, n.body_ct, vault.note_aad(n)).decode(),
                "acks": mine,
                "readers": len(team - {n.created_by}),  # 既読 len(acks)/readers
                "acknowledged_by_me": any(a["user_id"] == viewer.id for a in mine),
                "escalations": rounds.get(n.id, []),
            }
        )
    return out


# What a note is about, in the order the form offers them (labels: web/forms.py). A rule
# of the 連絡帳 itself, so the core keeps it, not the API's schema (issue 30).
CATEGORIES = ("observation", "vital_signs", "medication", "adl", "contact", "incident", "other")


def post(actor: User, patient_id: str, body: str, category: str, urgent: bool = False) -> dict:
    """Post to the timeline; the team hears of it (identifiers only)."""
    patient = patient_access(actor, patient_id, authz.POST).patient
    if category not in CATEGORIES:
        raise invalid({"category": [f"One of: {', '.join(CATEGORIES)}."]})
    note = Note(
        id=new_id(), patient_id=patient.id, category=category, urgent=urgent, created_by=actor.id, created_at=utcnow()
    )
    note.body_ct = crypto.seal(vault.patient_key(patient), body.encode(), vault.note_aad(note))
    db.session.add(note)
    db.session.flush()
    work.describe(detail="note=" + note.id)
    events.queue(
        "note.created",
        patient.id,
        {"note_id": note.id, "category": note.category, "urgent": note.urgent, "actor_id": actor.id},
    )
    if urgent or "@" in body:  # beyond the open pages: pushes and mails (renkei/outreach/tell.py)
        members = teams.members(patient.id)
        if urgent:
            tell.tell("note.urgent", patient.id, [m.id for m in members], actor_id=actor.id, note_id=note.id)
            escalation.schedule(note)  # unless a physician or nurse acknowledges it in time
        tell.tell("note.mention", patient.id, tell.mentioned(body, members), actor_id=actor.id, note_id=note.id)
    return notes_out(patient, [note], actor)[0]


def timeline(actor: User, patient_id: str, limit: int = 50, cursor: str | None = None) -> dict:
    """The timeline, newest first, a page at a time."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    stmt = select(Note).where(Note.patient_id == patient.id)
    page, next_cursor = paging.page(stmt, Note.created_at, Note.id, cursor=cursor, limit=limit)
    return {"items": notes_out(patient, page, actor), "next_cursor": next_cursor}


def acknowledge(actor: User, patient_id: str, note_id: str):
    """The caller has read the note (既読)."""
    access = patient_access(actor, patient_id, authz.POST)
    patient = access.patient
    note = db.session.get(Note, note_id)
    if note is None or note.patient_id != patient.id:
        raise not_found()
    work.describe(detail="note=" + note.id)
    if db.session.get(NoteAck, (note.id, actor.id)) is None:
        db.session.add(NoteAck(note_id=note.id, user_id=actor.id, at=utcnow()))
        escalation.acknowledged(note, access.member)
        events.queue("note.acked", patient.id, {"note_id": note.id, "user_id": actor.id})
