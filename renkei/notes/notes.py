"""The 連絡帳 timeline (docs/API.md, "Notes"): short posts, urgent flags, replies in
threads, search, and two levels of reading — seen (既読, automatic: shown on screen)
and 確認 (the explicit acknowledgement that ends an urgent note's escalation)."""

import unicodedata

from sqlalchemy import select

from models import Note, NoteAck, NoteSeen, Patient, User, new_id, utcnow
from renkei.common import crypto, db, paging, vault, work
from renkei.common.problems import invalid, not_found
from renkei.outreach import events, tell
from renkei.patients import authz, escalation, teams
from renkei.patients.authz import patient_access


def notes_out(patient: Patient, notes: list[Note], viewer: User) -> list[dict]:
    key = vault.patient_key(patient)
    ids = [n.id for n in notes]
    acks, seen = _who(NoteAck, ids), _who(NoteSeen, ids)
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
        mine, seen_by = acks.get(n.id, []), seen.get(n.id, [])
        out.append(
            {
                "id": n.id,
                "patient_id": patient.id,
                "category": n.category,
                "urgent": n.urgent,
                "reply_to": n.reply_to,
                "created_at": n.created_at,
                "author_id": n.created_by,
                "author_name": authors.get(n.created_by),
                "body": crypto.unseal(key, n.body_ct, vault.note_aad(n)).decode(),
                "acks": mine,
                "readers": len(team - {n.created_by}),  # 既読 len(acks)/readers
                "acknowledged_by_me": any(a["user_id"] == viewer.id for a in mine),
                "seen_by": seen_by,
                "seen_by_me": n.created_by == viewer.id or any(s["user_id"] == viewer.id for s in seen_by),
                "escalations": rounds.get(n.id, []),
            }
        )
    return out


def _who(model, ids: list[str]) -> dict[str, list[dict]]:
    """Who confirmed (NoteAck) or saw (NoteSeen) each note, in the order they did."""
    out: dict[str, list[dict]] = {}
    if ids:
        for row, name in db.session.execute(
            select(model, User.display_name)
            .join(User, User.id == model.user_id)
            .where(model.note_id.in_(ids))
            .order_by(model.at)
        ):
            out.setdefault(row.note_id, []).append({"user_id": row.user_id, "display_name": name, "at": row.at})
    return out


# What a note is about, in the order the form offers them (labels: web/forms.py). A rule
# of the 連絡帳 itself, so the core keeps it, not the API's schema (issue 30).
CATEGORIES = ("observation", "vital_signs", "medication", "adl", "contact", "incident", "other")


def post(
    actor: User, patient_id: str, body: str, category: str, urgent: bool = False, reply_to: str | None = None
) -> dict:
    """Post to the timeline, or reply in a thread; the team hears of it (identifiers only)."""
    patient = patient_access(actor, patient_id, authz.POST).patient
    if category not in CATEGORIES:
        raise invalid({"category": [f"One of: {', '.join(CATEGORIES)}."]})
    thread = _thread_of(patient, reply_to) if reply_to is not None else None
    note = Note(
        id=new_id(),
        patient_id=patient.id,
        category=category,
        urgent=urgent,
        created_by=actor.id,
        created_at=utcnow(),
        reply_to=thread,
    )
    note.body_ct = crypto.seal(vault.patient_key(patient), body.encode(), vault.note_aad(note))
    db.session.add(note)
    db.session.flush()
    work.describe(detail="note=" + note.id)
    events.queue(
        "note.created",
        patient.id,
        {
            "note_id": note.id,
            "category": note.category,
            "urgent": note.urgent,
            "reply_to": note.reply_to,
            "actor_id": actor.id,
        },
    )
    if urgent or "@" in body:  # beyond the open pages: pushes and mails (renkei/outreach/tell.py)
        members = teams.members(patient.id)
        if urgent:
            tell.tell("note.urgent", patient.id, [m.id for m in members], actor_id=actor.id, note_id=note.id)
            escalation.schedule(note)  # unless a physician or nurse acknowledges it in time
        tell.tell("note.mention", patient.id, tell.mentioned(body, members), actor_id=actor.id, note_id=note.id)
    return notes_out(patient, [note], actor)[0]


def _thread_of(patient: Patient, reply_to) -> str:
    """The first note of the thread a reply answers: a reply to a reply answers it too."""
    target = db.session.get(Note, reply_to) if isinstance(reply_to, str) else None
    if target is None or target.patient_id != patient.id:
        raise invalid({"reply_to": ["Not a note of this patient."]})
    return target.reply_to or target.id


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
        _mark_seen(note, actor)  # 確認 implies 既読
        escalation.acknowledged(note, access.member)
        events.queue("note.acked", patient.id, {"note_id": note.id, "user_id": actor.id})


def seen(actor: User, patient_id: str, note_id: str):
    """The note was shown to the caller (既読). Their other pages hear of it, so their
    unread counts move; the team does not (seeing is not 確認)."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    note = db.session.get(Note, note_id) if isinstance(note_id, str) else None
    if note is None or note.patient_id != patient.id:
        raise not_found()
    work.describe(detail="note=" + note.id)
    _mark_seen(note, actor)


def _mark_seen(note: Note, actor: User):
    if note.created_by == actor.id or db.session.get(NoteSeen, (note.id, actor.id)) is not None:
        return
    db.session.add(NoteSeen(note_id=note.id, user_id=actor.id, at=utcnow()))
    events.queue_for(
        "note.seen", note.patient_id, {"note_id": note.id, "user_id": actor.id, "urgent": note.urgent}, [actor.id]
    )


SEARCH_BATCH = 200  # notes opened at a time while searching


def search(actor: User, patient_id: str, text: str, limit: int = 50, cursor: str | None = None) -> dict:
    """The patient's notes whose body holds `text`, newest first, a page at a time. The
    bodies are sealed, so they are searched here after decryption, in batches; what was
    searched for is never written down (not in the access log either)."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    wanted = _folded(text)
    if not wanted:
        raise invalid({"text": ["Type a word to search for."]})
    key, found, after = vault.patient_key(patient), [], cursor
    stmt = select(Note).where(Note.patient_id == patient.id)
    while True:
        batch, after = paging.page(stmt, Note.created_at, Note.id, cursor=after, limit=SEARCH_BATCH)
        for n in batch:
            if wanted in _folded(crypto.unseal(key, n.body_ct, vault.note_aad(n)).decode()):
                found.append(n)
                if len(found) == limit:
                    more = n is not batch[-1] or after is not None
                    return {
                        "items": notes_out(patient, found, actor),
                        "next_cursor": paging.cursor_of(n, Note.created_at, Note.id) if more else None,
                    }
        if after is None:
            return {"items": notes_out(patient, found, actor), "next_cursor": None}


def _folded(text: str) -> str:
    """What a search compares: full- and half-width alike (NFKC), case ignored."""
    return unicodedata.normalize("NFKC", text).casefold().strip()
