"""Photos and documents in the shared record (docs/ARCHITECTURE.md, "Attachments").

An upload arrives sealed in a spool (renkei/common/frames.py) while no database work is
open. Its type is decided from its bytes; a photo is decoded and encoded again
without metadata (renkei/attachments/images.py), a PDF is kept as it is. The result is sealed in
frames under a data key of the attachment's own, wrapped by the patient's key, and
stored with its thumbnail in `attachment_frames`. Deleting an attachment shreds its
key and drops its frames; shredding the patient shreds every attachment's key with it.
Who may attach where is renkei/patients/authz.py's: a section's writers, or anyone who may post
to the timeline; break-glass reads only."""

import unicodedata
from typing import Iterator

from flask import current_app
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError

from models import Attachment, AttachmentFrame, Note, Patient, User, new_id, utcnow
from renkei.attachments import images
from renkei.common import crypto, db, frames, paging, vault, work
from renkei.common.problems import Problem, invalid, not_found
from renkei.outreach import events
from renkei.patients import authz
from renkei.patients.authz import patient_access
from renkei.sections.catalogue import SECTIONS

FILE, THUMB = "file", "thumb"
_INSERT_FRAME = insert(AttachmentFrame.__table__)
_BATCH = 16  # frames per statement when storing or reading: 1 MiB in memory at a time


def _frame_aad(patient_id: str, attachment_id: str, part: str):
    def aad_for(index: int, last: bool) -> str:
        return vault.aad(
            patient_id, "attachment=" + attachment_id, "part=" + part, f"frame={index}", "last" if last else "more"
        )

    return aad_for


def _key_aad(a: Attachment) -> str:
    return vault.aad(a.patient_id, "attachment-key=" + a.id)


def _field_aad(a: Attachment, field: str) -> str:
    return vault.aad(a.patient_id, "attachment=" + a.id, field)


def series_index(patient_id: str, series: str) -> str:
    """Photos of one body site group under a keyed digest of its name, per patient."""
    return vault.keyed_digest("attachment-series", patient_id + "|" + series_key(series))


def series_key(text: str) -> str:
    """One series however it was typed: "仙骨部褥瘡 " is 仙骨部褥瘡, ｾﾝｺﾂ is センコツ."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _limits() -> tuple[int, int]:
    s = current_app.config["RENKEI"]
    return s.attachment_max_bytes, s.attachment_patient_quota_bytes


def upload_limit() -> int:
    return _limits()[0]


# --- upload -------------------------------------------------------------------------


def _where_it_goes(actor: User, patient_id: str, note_id: str | None, section: str | None):
    """The access an upload needs: a section's writers, or the author of the note it
    belongs to, or anyone who may post to the timeline."""
    if note_id is not None and section is not None:
        raise invalid({"section": ["Attach to a note or to a section, not both."]})
    if section is not None:
        if section not in SECTIONS:
            raise invalid({"section": ["No such section."]})
        return patient_access(actor, patient_id, authz.WRITE, section)
    access = patient_access(actor, patient_id, authz.POST)
    if note_id is not None:
        note = db.session.get(Note, note_id)
        if note is None or note.patient_id != access.patient.id:
            raise invalid({"note_id": ["No such note on this patient's timeline."]})
        if note.created_by != actor.id:
            raise Problem(403, "Only the note's author attaches files to it.")
    return access


def create(
    actor: User, patient_id: str, spool: frames.Spool, *, note_id=None, section=None, caption=None, series=None
) -> dict:
    _where_it_goes(actor, patient_id, note_id, section)
    # Decoding a photo takes a second or more: no transaction (nor SQLite's write lock)
    # is held meanwhile, and none is begun until the rows are written.
    db.session.commit()
    kind = images.kind_of(spool.head())
    thumb = width = height = None
    if kind == "pdf":
        content_type, size, body = images.PDF, spool.size, spool.chunks()
    else:  # a photo is decoded whole anyway: its pixels are in memory, bounded by the size limit
        data, content_type, width, height, thumb = images.reencode(spool.read_all(), kind)
        size, body = len(data), iter((data,))
    patient = _where_it_goes(actor, patient_id, note_id, section).patient  # still so, now that it is written
    _within_quota(patient.id, size)

    a = Attachment(
        id=new_id(),
        patient_id=patient.id,
        note_id=note_id,
        section=section,
        content_type=content_type,
        size=size,
        frames=0,
        width=width,
        height=height,
        created_by=actor.id,
        created_at=utcnow(),
    )
    key = crypto.new_data_key()
    a.wrapped_key = crypto.seal(vault.patient_key(patient), key, _key_aad(a))
    if caption:
        a.caption_ct = crypto.seal(vault.patient_key(patient), caption.encode(), _field_aad(a, "caption"))
    name = file_name(spool.filename)
    if name:
        a.name_ct = crypto.seal(vault.patient_key(patient), name.encode(), _field_aad(a, "name"))
    if series:
        a.series_ct = crypto.seal(vault.patient_key(patient), series.strip().encode(), _field_aad(a, "series"))
        a.series_index = series_index(patient.id, series)
    db.session.add(a)
    db.session.flush()  # the row before its frames (foreign key)
    a.frames = put_frames(a.id, FILE, frames.seal_frames(key, _frame_aad(a.patient_id, a.id, FILE), body))
    if thumb is not None:
        a.thumb_frames = put_frames(
            a.id, THUMB, frames.seal_frames(key, _frame_aad(a.patient_id, a.id, THUMB), [thumb])
        )
    work.describe(detail="attachment=" + a.id)
    events.queue(
        "attachment.created",
        patient.id,
        {"attachment_id": a.id, "note_id": note_id, "section": section, "actor_id": actor.id},
    )
    return attachment_out(patient, a, {actor.id: actor.display_name})


def _within_quota(patient_id: str, adding: int):
    """413 past the patient's total (the files as stored; thumbnails, a few KB, are not
    counted). The patient's row is locked first, so two uploads at once are counted one
    after the other (the lock ends with the request's commit)."""
    _, quota = _limits()
    db.session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update()).first()
    used = db.session.execute(
        select(func.coalesce(func.sum(Attachment.size), 0)).where(
            Attachment.patient_id == patient_id, Attachment.deleted_at.is_(None)
        )
    ).scalar()
    if used + adding > quota:
        raise Problem(
            413,
            f"The patient's attachments would exceed their limit of {quota} bytes.",
            type_="/problems/attachment-quota",
        )


# --- reading ------------------------------------------------------------------------


def attachment_out(patient: Patient, a: Attachment, names: dict) -> dict:
    key = vault.patient_key(patient)
    return {
        "id": a.id,
        "patient_id": a.patient_id,
        "content_type": a.content_type,
        "size": a.size,
        "width": a.width,
        "height": a.height,
        "created_at": a.created_at,
        "created_by": a.created_by,
        "created_by_name": names.get(a.created_by),
        "note_id": a.note_id,
        "section": a.section,
        "caption": crypto.unseal(key, a.caption_ct, _field_aad(a, "caption")).decode() if a.caption_ct else None,
        "series": crypto.unseal(key, a.series_ct, _field_aad(a, "series")).decode() if a.series_ct else None,
        "thumbnail": a.thumb_frames is not None,
        "name": crypto.unseal(key, a.name_ct, _field_aad(a, "name")).decode() if a.name_ct else None,
    }


def file_name(chosen: str | None) -> str | None:
    """The name a file was chosen under, as a download may use it: its last path part
    (Windows sends C:\\…), NFC, without control characters, at most 200 characters."""
    if not chosen:
        return None
    name = unicodedata.normalize("NFC", chosen.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:200] or None


def listing(
    actor: User,
    patient_id: str,
    limit: int = 50,
    cursor: str | None = None,
    note_id: str | None = None,
    section: str | None = None,
    series: str | None = None,
) -> dict:
    """The patient's attachments, newest first, a page at a time; filtered by note,
    section or series."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    stmt = select(Attachment).where(Attachment.patient_id == patient.id, Attachment.deleted_at.is_(None))
    if note_id is not None:
        stmt = stmt.where(Attachment.note_id == note_id)
    if section is not None:
        stmt = stmt.where(Attachment.section == section)
    if series is not None:
        stmt = stmt.where(Attachment.series_index == series_index(patient.id, series))
    page, next_cursor = paging.page(stmt, Attachment.created_at, Attachment.id, cursor=cursor, limit=limit)
    names = (
        dict(
            db.session.execute(
                select(User.id, User.display_name).where(User.id.in_({a.created_by for a in page}))
            ).all()
        )
        if page
        else {}
    )
    return {
        "items": [attachment_out(patient, a, names) for a in page],
        "next_cursor": next_cursor,
    }


def of_notes(actor: User, patient_id: str, note_ids: list[str]) -> dict[str, list[dict]]:
    """The attachments of these notes, oldest first per note (the timeline's thumbnails)."""
    if not note_ids:
        return {}
    return _grouped(actor, patient_id, Attachment.note_id, Attachment.note_id.in_(note_ids))


def of_sections(actor: User, patient_id: str, section: str | None = None) -> dict[str, list[dict]]:
    """The attachments of each section (or of one), oldest first."""
    where = Attachment.section == section if section else Attachment.section.is_not(None)
    return _grouped(actor, patient_id, Attachment.section, where)


def _grouped(actor: User, patient_id: str, by, where) -> dict[str, list[dict]]:
    patient = patient_access(actor, patient_id, authz.READ).patient
    rows = (
        db.session.execute(
            select(Attachment)
            .where(Attachment.patient_id == patient.id, Attachment.deleted_at.is_(None), where)
            .order_by(Attachment.created_at, Attachment.id)
        )
        .scalars()
        .all()
    )
    out: dict[str, list[dict]] = {}
    for a in rows:
        out.setdefault(getattr(a, by.key), []).append(attachment_out(patient, a, {}))
    return out


def _find(patient: Patient, attachment_id: str) -> Attachment:
    a = db.session.get(Attachment, attachment_id) if isinstance(attachment_id, str) else None
    if a is None or a.patient_id != patient.id or a.deleted_at is not None:
        raise not_found()
    return a


def open_part(actor: User, patient_id: str, attachment_id: str, part: str = FILE) -> tuple[dict, Iterator[bytes]]:
    """What a download needs to know, and its bytes a frame at a time. The first frame
    is opened here, so a key that is gone or a tampered start fails before any byte is
    sent; frames are read in batches, memory flat in the file's size."""
    access = patient_access(actor, patient_id, authz.READ)
    a = _find(access.patient, attachment_id)
    count = a.frames if part == FILE else a.thumb_frames
    if not count:
        raise not_found()
    work.describe(detail=f"attachment={a.id}" + (" thumbnail" if part == THUMB else ""))
    key = crypto.unseal(vault.patient_key(access.patient), a.wrapped_key, _key_aad(a))
    db.session.commit()  # the session's connection goes back: the frames are read on one of their own
    sealed = get_frames(db.session.get_bind(), a.id, part, count)
    plain = frames.open_frames(key, _frame_aad(a.patient_id, a.id, part), sealed, count)
    first = next(plain)
    meta = {
        "id": a.id,
        "content_type": a.content_type if part == FILE else "image/jpeg",
        "size": a.size if part == FILE else None,
        "name": (
            crypto.unseal(vault.patient_key(access.patient), a.name_ct, _field_aad(a, "name")).decode()
            if a.name_ct and part == FILE
            else None
        ),
    }

    def body():
        yield first
        yield from plain

    return meta, body()


# --- deleting -----------------------------------------------------------------------


def remove(actor: User, patient_id: str, attachment_id: str):
    """Delete: the author or the patient's care manager. The key is shredded and the
    frames dropped; the row stays (who attached what when) and so does the access-log entry."""
    access = patient_access(actor, patient_id, authz.POST)
    a = _find(access.patient, attachment_id)
    if a.created_by != actor.id and access.role != "care_manager":
        raise Problem(403, "Only the person who attached it or the care manager deletes an attachment.")
    work.describe(detail="attachment=" + a.id)
    _shred([a.id])
    events.queue("attachment.deleted", access.patient.id, {"attachment_id": a.id, "actor_id": actor.id})


def _shred(ids: list[str]):
    if not ids:
        return
    db.session.execute(
        update(Attachment)
        .where(Attachment.id.in_(ids))
        .values(wrapped_key=None, caption_ct=None, series_ct=None, series_index=None, deleted_at=utcnow())
    )
    drop_frames(ids)


def shred_patient(patient_id: str):
    """With the patient's key gone the attachments' keys are unreadable already; their
    frames go too, so the space is freed (and overwritten: renkei/common/db.py)."""
    _shred(
        list(
            db.session.execute(
                select(Attachment.id).where(Attachment.patient_id == patient_id, Attachment.deleted_at.is_(None))
            ).scalars()
        )
    )


# --- where the frames live ------------------------------------------------------------
# The database's `attachment_frames` table: transactions, backups, restore and shredding
# cover attachments with no second system. These three functions are the whole storage
# interface; docs/ARCHITECTURE.md, "Attachments", says what an object store would change.


def put_frames(attachment_id: str, part: str, sealed: Iterator[bytes]) -> int:
    """Store sealed frames in the request's transaction, a batch at a time; their count."""
    rows, count = [], 0
    for blob in sealed:
        rows.append({"attachment_id": attachment_id, "part": part, "index": count, "data": blob})
        count += 1
        if len(rows) == _BATCH:
            db.session.execute(_INSERT_FRAME, rows)
            rows = []
    if rows:
        db.session.execute(_INSERT_FRAME, rows)
    return count


def get_frames(engine, attachment_id: str, part: str, count: int) -> Iterator[bytes]:
    """Sealed frames in order, a batch at a time on a pooled connection of their own with
    no transaction: nothing is held (no transaction, nor SQLite's write lock, which the
    request's own work may hold) while a slow client reads, and the response can go on
    after the request's unit of work has ended."""
    for start in range(0, count, _BATCH):
        sql = str(
            select(AttachmentFrame.data)
            .where(
                AttachmentFrame.attachment_id == attachment_id,
                AttachmentFrame.part == part,
                AttachmentFrame.index >= start,
                AttachmentFrame.index < start + _BATCH,
            )
            .order_by(AttachmentFrame.index)
            .compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        )
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.execute(sql)
            rows = [bytes(data) for (data,) in cursor.fetchall()]
        except engine.dialect.loaded_dbapi.Error as exc:  # a lost database is a 503, as anywhere
            raise DBAPIError.instance(sql, None, exc, engine.dialect.loaded_dbapi.Error) from exc
        finally:
            raw.close()
        yield from rows
        if len(rows) < _BATCH:
            return


def drop_frames(ids: list[str]):
    db.session.execute(sql_delete(AttachmentFrame).where(AttachmentFrame.attachment_id.in_(ids)))
