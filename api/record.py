"""The shared record: ten versioned 表3 sections, optimistic concurrency by If-Match."""
from flask import request
from flask_login import current_user
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api import endpoint
from api.schemas import RecordOut, SectionIn, SectionOut, SectionVersions
from api.patients import mark_viewed
from api.sections import clean_content
from models import Patient, SectionRevision, User, utcnow
from renkei import authz, crypto, db, notify, vault
from renkei.authz import SECTIONS, patient_access
from renkei.problems import Problem, invalid, not_found


def section_out(patient: Patient, key: bytes, section: str, rev: SectionRevision | None,
                names: dict) -> dict:
    if rev is None:  # never written: version 0, empty content (SPEC §2)
        return {"section": section, "version": 0, "content": {}, "updated_at": None,
                "updated_by": None, "updated_by_name": None}
    return {"section": section, "version": rev.version,
            "content": crypto.unseal_json(key, rev.content_ct, vault.section_aad(patient.id, section, rev.version)),
            "updated_at": rev.created_at, "updated_by": rev.created_by,
            "updated_by_name": names.get(rev.created_by)}


def _names(user_ids) -> dict:
    ids = {u for u in user_ids if u}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


def latest_revisions(patient_id: str) -> tuple[dict[str, SectionRevision], dict[str, str]]:
    """The newest revision of each written section, and its authors' names (one query)."""
    newest = (select(SectionRevision.section, func.max(SectionRevision.version).label("v"))
              .where(SectionRevision.patient_id == patient_id)
              .group_by(SectionRevision.section).subquery())
    rows = db.session.execute(select(SectionRevision, User.display_name).join(
        newest, (SectionRevision.section == newest.c.section) & (SectionRevision.version == newest.c.v))
        .join(User, User.id == SectionRevision.created_by)
        .where(SectionRevision.patient_id == patient_id)).all()
    return {r.section: r for r, _ in rows}, {r.created_by: name for r, name in rows}


def current_section(patient: Patient, section: str) -> dict:
    rev = db.session.execute(select(SectionRevision).where(
        SectionRevision.patient_id == patient.id, SectionRevision.section == section)
        .order_by(SectionRevision.version.desc()).limit(1)).scalar_one_or_none()
    return section_out(patient, vault.patient_key(patient), section, rev,
                       _names([rev.created_by] if rev else []))


def _known(section: str):
    if section not in SECTIONS:
        raise not_found()




@endpoint("GET", "/patients/<patient_id>/record", summary="All ten sections of the record",
          tag="record", action="record.read", response=RecordOut, errors=(403, 404))
def get_record(patient_id):
    access = patient_access(current_user, patient_id, authz.READ)
    patient, key = access.patient, vault.patient_key(access.patient)
    revs, names = latest_revisions(patient.id)
    mark_viewed(access.member)
    return {"patient_id": patient.id,
            "sections": {s: section_out(patient, key, s, revs.get(s), names) for s in SECTIONS},
            "writable": [] if access.breakglass else authz.writable_sections(access.role)}


@endpoint("GET", "/patients/<patient_id>/record/<section>", summary="One section, with its ETag",
          tag="record", action="record.read", response=SectionOut, errors=(403, 404))
def get_section(patient_id, section):
    patient = patient_access(current_user, patient_id, authz.READ).patient
    _known(section)
    out = current_section(patient, section)
    return out, 200, {"ETag": f'"{out["version"]}"'}


def _if_match() -> int:
    header = request.headers.get("If-Match")
    if header is None:
        raise Problem(428, "Send If-Match with the version you edited (\"0\" for a new section).")
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise Problem(400, 'If-Match must be a quoted version number, like "3".')
    return int(value)


@endpoint("PUT", "/patients/<patient_id>/record/<section>",
          summary="Write a new revision of a section (If-Match required)", tag="record",
          action="record.write", body=SectionIn, response=SectionOut,
          errors=(403, 404, 412, 422, 428))
def put_section(patient_id, section, body):
    patient = patient_access(current_user, patient_id, authz.WRITE, section=section).patient \
        if section in SECTIONS else _unknown_section(patient_id)
    expected = _if_match()
    try:
        content = clean_content(section, body["content"])
    except ValidationError as err:
        raise invalid({"content": err.messages_dict})
    current = current_section(patient, section)
    if current["version"] != expected:
        raise _stale(current)
    version = expected + 1
    rev = SectionRevision(patient_id=patient.id, section=section, version=version,
                          created_by=current_user.id, created_at=utcnow(),
                          content_ct=crypto.seal_json(vault.patient_key(patient), content,
                                                      vault.section_aad(patient.id, section, version)))
    try:
        with db.session.begin_nested():
            db.session.add(rev)
    except IntegrityError:  # another writer took this version first
        raise _stale(current_section(patient, section))
    notify.queue("record.updated", patient.id,
                 {"section": section, "version": version, "actor_id": current_user.id})
    out = section_out(patient, vault.patient_key(patient), section, rev,
                      {current_user.id: current_user.display_name})
    return out, 200, {"ETag": f'"{version}"'}


def _unknown_section(patient_id):
    patient_access(current_user, patient_id, authz.READ)  # 404 for an invisible patient first
    raise not_found()


def _stale(current: dict) -> Problem:
    return Problem(412, "The section changed since you read it; merge with the current version and retry.",
                   type_="/problems/stale-version", headers={"ETag": f'"{current["version"]}"'},
                   current=SectionOut().dump(current), **SectionOut().dump(current))


@endpoint("GET", "/patients/<patient_id>/record/<section>/versions",
          summary="Every revision of a section, newest first", tag="record",
          action="record.history", response=SectionVersions, errors=(403, 404))
def section_versions(patient_id, section):
    patient = patient_access(current_user, patient_id, authz.READ).patient
    _known(section)
    revs = list(db.session.execute(select(SectionRevision).where(
        SectionRevision.patient_id == patient.id, SectionRevision.section == section)
        .order_by(SectionRevision.version.desc())).scalars())
    key, names = vault.patient_key(patient), _names(r.created_by for r in revs)
    return {"items": [section_out(patient, key, section, r, names) for r in revs]}
