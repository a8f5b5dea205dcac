"""The shared record: ten versioned sections (renkei/sections/catalogue.py). A write creates a
new immutable revision, sealed under the patient's key and bound to its section and
version; a write based on an old version is refused (412) so nobody's edit is lost."""

from marshmallow import ValidationError
from sqlalchemy import bindparam, func, select

from models import Patient, SectionRevision, User, utcnow
from renkei.common import crypto, db, vault
from renkei.common.problems import invalid, not_found
from renkei.outreach import events
from renkei.patients import authz
from renkei.patients.authz import patient_access
from renkei.patients.registry import mark_viewed
from renkei.record import versioned
from renkei.sections import rows
from renkei.sections.catalogue import SECTIONS, clean_content


def section_out(patient: Patient, key: bytes, section: str, rev: SectionRevision | None, names: dict) -> dict:
    if rev is None:  # never written: version 0, empty content (docs/API.md, "The record")
        return {
            "section": section,
            "version": 0,
            "content": {},
            "updated_at": None,
            "updated_by": None,
            "updated_by_name": None,
        }
    return {
        "section": section,
        "version": rev.version,
        "content": rows.as_stored(
            section, crypto.unseal_json(key, rev.content_ct, vault.revision_aad(rev)), f"{rev.patient_id}/{rev.version}"
        ),
        "updated_at": rev.created_at,
        "updated_by": rev.created_by,
        "updated_by_name": names.get(rev.created_by),
    }


def display_names(user_ids) -> dict:
    ids = {u for u in user_ids if u}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


_NEWEST = (
    select(SectionRevision.section, func.max(SectionRevision.version).label("v"))
    .where(SectionRevision.patient_id == bindparam("patient_id"))
    .group_by(SectionRevision.section)
    .subquery()
)
_LATEST = (
    select(*SectionRevision.__table__.c, User.display_name)  # built once: every record read runs it
    .join(_NEWEST, (SectionRevision.section == _NEWEST.c.section) & (SectionRevision.version == _NEWEST.c.v))
    .join(User, User.id == SectionRevision.created_by)
    .where(SectionRevision.patient_id == bindparam("patient_id"))
)


def latest_revisions(patient_id: str) -> tuple[dict[str, SectionRevision], dict[str, str]]:
    """The newest revision of each written section, and its authors' names (one query)."""
    found = db.session.connection().execute(_LATEST, {"patient_id": patient_id}).all()
    return {r.section: r for r in found}, {r.created_by: r.display_name for r in found}


def current_section(patient: Patient, section: str) -> dict:
    rev = db.session.execute(
        select(SectionRevision)
        .where(SectionRevision.patient_id == patient.id, SectionRevision.section == section)
        .order_by(SectionRevision.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    return section_out(
        patient, vault.patient_key(patient), section, rev, display_names([rev.created_by] if rev else [])
    )


def _known(section: str):
    if section not in SECTIONS:
        raise not_found()


def read(actor: User, patient_id: str, look: bool = True) -> dict:
    """All ten sections and which of them the caller may write. A look restarts "what
    changed since my last look"; a glance (look=False: summary, sheet) does not."""
    access = patient_access(actor, patient_id, authz.READ)
    patient, key = access.patient, vault.patient_key(access.patient)
    revs, names = latest_revisions(patient.id)
    if look:
        mark_viewed(access.member)
    return {
        "patient_id": patient.id,
        "sections": {s: section_out(patient, key, s, revs.get(s), names) for s in SECTIONS},
        "writable": [] if access.breakglass else authz.writable_sections(access.role),
    }


def read_section(actor: User, patient_id: str, section: str) -> dict:
    """One section; `writable` says whether the caller may write it."""
    access = patient_access(actor, patient_id, authz.READ)
    _known(section)
    out = current_section(access.patient, section)
    out["writable"] = not access.breakglass and authz.may_write(access.role, section)
    return out


def since_last_look(actor: User, patient_id: str) -> dict:
    """The caller's last look (`since`) and, for each section someone else changed
    after it, its content as it was then (`before`) and is now (`after`), with every
    revision since, oldest first, with who and when — the physician's
    「前回確認後の変更」. Not a look itself."""
    access = patient_access(actor, patient_id, authz.READ)
    if access.member is None:  # break-glass: no earlier look to compare with
        return {"since": None, "sections": {}}
    since = access.member.last_viewed_at or access.member.added_at
    revs = list(
        db.session.execute(
            select(SectionRevision)
            .where(SectionRevision.patient_id == access.patient.id)
            .order_by(SectionRevision.section, SectionRevision.version)
        ).scalars()
    )
    key, names = vault.patient_key(access.patient), display_names(r.created_by for r in revs)
    out = {}
    for section in SECTIONS:
        mine = [r for r in revs if r.section == section]
        new = [r for r in mine if r.created_at > since]
        if not any(r.created_by != actor.id for r in new):
            continue
        old = [r for r in mine if r.created_at <= since]
        out[section] = {
            "before": section_out(access.patient, key, section, old[-1] if old else None, names)["content"],
            "after": section_out(access.patient, key, section, new[-1], names)["content"],
            "revisions": [{"version": r.version, "by": names.get(r.created_by), "at": r.created_at} for r in new],
        }
    return {"since": since, "sections": out}


def versions(actor: User, patient_id: str, section: str) -> list[dict]:
    """Every revision of a section, newest first."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    _known(section)
    revs = list(
        db.session.execute(
            select(SectionRevision)
            .where(SectionRevision.patient_id == patient.id, SectionRevision.section == section)
            .order_by(SectionRevision.version.desc())
        ).scalars()
    )
    key, names = vault.patient_key(patient), display_names(r.created_by for r in revs)
    return [section_out(patient, key, section, r, names) for r in revs]


def write_section(actor: User, patient_id: str, section: str, content: dict, based_on: int | None) -> dict:
    """Write a new revision of a section, based on version `based_on` (412 if the
    section has moved on since; the problem carries the current section to merge with).
    Content equal to the current content writes nothing and answers the current version,
    whatever `based_on` says: the same edit sent twice, or a save that changed nothing,
    must not show the team an 「更新」 (docs/API.md, "The record")."""
    if section not in SECTIONS:
        patient_access(actor, patient_id, authz.READ)  # 404 for an invisible patient first
        raise not_found()
    patient = patient_access(actor, patient_id, authz.WRITE, section=section).patient
    expected = versioned.edited_version(based_on)
    try:
        content = clean_content(section, content)
    except ValidationError as err:
        raise invalid({"content": err.messages_dict})
    current = current_section(patient, section)
    content = rows.keep_ids(section, content, current["content"])
    written = []

    def add(version: int):
        rev = SectionRevision(
            patient_id=patient.id, section=section, version=version, created_by=actor.id, created_at=utcnow()
        )
        rev.content_ct = crypto.seal_json(vault.patient_key(patient), content, vault.revision_aad(rev))
        db.session.add(rev)
        written.append(rev)

    version = versioned.write(
        current, content != current["content"], expected, add, lambda: current_section(patient, section), "section"
    )
    if version is None:
        return current
    rev = written[0]
    events.queue("record.updated", patient.id, {"section": section, "version": version, "actor_id": actor.id})
    return section_out(patient, vault.patient_key(patient), section, rev, {actor.id: actor.display_name})
