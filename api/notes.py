"""The 連絡帳 timeline: short posts, urgent flags, acknowledgements (既読)."""
from flask_login import current_user
from sqlalchemy import select, tuple_

from api import endpoint, set_audit
from api.schemas import ListQuery, NoteIn, NoteList, NoteOut
from models import Note, NoteAck, Patient, User, new_id, utcnow
from renkei import authz, crypto, db, notify, vault
from renkei.authz import patient_access
from renkei.problems import Problem, not_found
from renkei.timefmt import iso, parse_iso


def notes_out(patient: Patient, notes: list[Note]) -> list[dict]:
    key = vault.patient_key(patient)
    ids = [n.id for n in notes]
    acks = db.session.execute(select(NoteAck, User.display_name).join(User, User.id == NoteAck.user_id)
                              .where(NoteAck.note_id.in_(ids)).order_by(NoteAck.at)).all() if ids else []
    authors = dict(db.session.execute(select(User.id, User.display_name).where(
        User.id.in_({n.created_by for n in notes}))).all()) if notes else {}
    out = []
    for n in notes:
        mine = [{"user_id": a.user_id, "display_name": name, "at": a.at} for a, name in acks if a.note_id == n.id]
        out.append({"id": n.id, "patient_id": patient.id, "category": n.category,
                    "urgent": n.urgent, "created_at": n.created_at, "author_id": n.created_by,
                    "author_name": authors.get(n.created_by),
                    "body": crypto.unseal(key, n.body_ct, vault.note_aad(patient.id, n.id)).decode(),
                    "acks": mine,
                    "acknowledged_by_me": any(a["user_id"] == current_user.id for a in mine)})
    return out


@endpoint("POST", "/patients/<patient_id>/notes", summary="Post to the timeline",
          tag="timeline", action="note.create", body=NoteIn, response=NoteOut, status=201,
          errors=(403, 404))
def create_note(patient_id, body):
    patient = patient_access(current_user, patient_id, authz.POST).patient
    note = Note(id=new_id(), patient_id=patient.id, category=body["category"],
                urgent=body["urgent"], created_by=current_user.id, created_at=utcnow())
    note.body_ct = crypto.seal(vault.patient_key(patient), body["body"].encode(), vault.note_aad(patient.id, note.id))
    db.session.add(note)
    db.session.flush()
    set_audit(detail="note=" + note.id)
    notify.queue("note.created", patient.id, {"note_id": note.id, "category": note.category,
                                              "urgent": note.urgent, "actor_id": current_user.id})
    return notes_out(patient, [note])[0]


def _cursor(text: str | None):
    """Cursor = "<created_at>|<id>" of the last note on the previous page."""
    if not text:
        return None
    at, _, note_id = text.partition("|")
    try:
        return parse_iso(at), note_id
    except ValueError:
        raise Problem(422, "Bad cursor.", errors={"cursor": ["Not a cursor from this API."]})


@endpoint("GET", "/patients/<patient_id>/notes", summary="The timeline, newest first, paginated",
          tag="timeline", action="note.list", query=ListQuery, response=NoteList,
          errors=(403, 404))
def list_notes(patient_id, query):
    patient = patient_access(current_user, patient_id, authz.READ).patient
    stmt = select(Note).where(Note.patient_id == patient.id)
    after = _cursor(query.get("cursor"))
    if after:
        stmt = stmt.where(tuple_(Note.created_at, Note.id) < tuple_(*after))
    rows = list(db.session.execute(stmt.order_by(Note.created_at.desc(), Note.id.desc())
                                   .limit(query["limit"] + 1)).scalars())
    page, more = rows[:query["limit"]], len(rows) > query["limit"]
    next_cursor = f"{iso(page[-1].created_at)}|{page[-1].id}" if more else None
    return {"items": notes_out(patient, page), "next_cursor": next_cursor}


@endpoint("POST", "/patients/<patient_id>/notes/<note_id>/ack",
          summary="Acknowledge (既読) a note", tag="timeline", action="note.ack", status=204,
          errors=(403, 404))
def ack_note(patient_id, note_id):
    patient = patient_access(current_user, patient_id, authz.POST).patient
    note = db.session.get(Note, note_id)
    if note is None or note.patient_id != patient.id:
        raise not_found()
    set_audit(detail="note=" + note.id)
    if db.session.get(NoteAck, (note.id, current_user.id)) is None:
        db.session.add(NoteAck(note_id=note.id, user_id=current_user.id, at=utcnow()))
    return None
