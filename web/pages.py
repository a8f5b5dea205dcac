"""The pages: care list, patient record, timeline, summaries, sheets, team, account,
administration. Every patient read goes through renkei.authz.patient_access."""
from datetime import date, timedelta

import pyotp
import segno
from flask import render_template, request
from flask_login import current_user
from sqlalchemy import func, select

from api import set_audit
from api.audit_log import filtered
from api.notes import notes_out
from api.patients import activity_since, care_list, consent_out, demographics, mark_viewed, team_rows
from api.record import current_section, latest_revisions, section_out, _names
from api.schemas import AuditQuery
from marshmallow import ValidationError
from models import (AuditAnchor, AuditEntry, Consent, Note, Organization, SectionRevision, TeamMember, User,
                    utcnow)
from renkei import audit, auth, authz, vault
from renkei import db
from renkei.authz import SECTIONS, patient_access
from renkei.problems import Problem, not_found
from web import page
from web.forms import LAYOUT, diff


def _record(access):
    patient, key = access.patient, vault.patient_key(access.patient)
    revs, names = latest_revisions(patient.id)
    return {s: section_out(patient, key, s, revs.get(s), names) for s in SECTIONS}


def _timeline(patient, limit=30):
    notes = list(db.session.execute(select(Note).where(Note.patient_id == patient.id)
                                    .order_by(Note.created_at.desc()).limit(limit)).scalars())
    return notes_out(patient, notes)


@page("/", action="patient.list")
def patients():
    return render_template("patients.html", items=care_list(current_user), q=request.args.get("q", ""))


@page("/patients/<patient_id>", action="record.read")
def patient(patient_id):
    access = patient_access(current_user, patient_id, authz.READ)
    member = access.member
    changed = activity_since(patient_id, member)["changed_since_my_last_view"] if member else []
    mark_viewed(member)
    writable = [] if access.breakglass else authz.writable_sections(access.role)
    grant = authz.active_breakglass(patient_id, current_user.id) if access.breakglass else None
    return render_template("patient.html", p=access.patient, demo=demographics(access.patient),
                           access=access, sections=_record(access), writable=writable,
                           changed=changed, notes=_timeline(access.patient), grant=grant,
                           team=[(m, u) for m, u in team_rows(patient_id)])


@page("/patients/<patient_id>/sections/<section>", action="record.read")
def section_fragment(patient_id, section):
    access = patient_access(current_user, patient_id, authz.READ)
    if section not in SECTIONS:
        raise not_found()
    writable = [] if access.breakglass else authz.writable_sections(access.role)
    return render_template("_section.html", p=access.patient, key=section,
                           s=current_section(access.patient, section), writable=writable)


@page("/patients/<patient_id>/sections/<section>/history", action="record.history")
def section_history(patient_id, section):
    access = patient_access(current_user, patient_id, authz.READ)
    if section not in SECTIONS:
        raise not_found()
    revs = list(db.session.execute(select(SectionRevision).where(
        SectionRevision.patient_id == patient_id, SectionRevision.section == section)
        .order_by(SectionRevision.version.desc())).scalars())
    key, names = vault.patient_key(access.patient), _names(r.created_by for r in revs)
    versions = [section_out(access.patient, key, section, r, names) for r in revs]
    for newer, older in zip(versions, versions[1:] + [{"content": {}}]):
        newer["changes"] = diff(LAYOUT[section], older["content"], newer["content"])
    return render_template("_history.html", key=section, versions=versions)


@page("/patients/<patient_id>/timeline", action="note.list")
def timeline_fragment(patient_id):
    access = patient_access(current_user, patient_id, authz.READ)
    return render_template("_timeline.html", p=access.patient, notes=_timeline(access.patient),
                           access=access)


@page("/patients/<patient_id>/sheet", action="record.read")
def emergency_sheet(patient_id):
    access = patient_access(current_user, patient_id, authz.READ)
    set_audit(detail="emergency_sheet")
    return render_template("sheet.html", p=access.patient, demo=demographics(access.patient),
                           sections=_record(access), team=team_rows(patient_id), now=utcnow())


@page("/summary")
def summary():
    """訪問前サマリー: every patient of mine, what changed since my last look, medicines,
    expected changes, wishes. One audit entry per patient shown."""
    rows = db.session.execute(select(TeamMember).where(
        TeamMember.user_id == current_user.id, TeamMember.removed_at.is_(None))
        .order_by(TeamMember.added_at)).scalars().all()
    items = []
    for member in rows:
        try:
            access = patient_access(current_user, member.patient_id, authz.READ)
        except Problem:
            continue  # no consent yet, or deleted: not on the summary
        record = _record(access)
        since = member.last_viewed_at or member.added_at
        changed = [s for s in SECTIONS if record[s]["updated_at"] and record[s]["updated_at"] > since
                   and record[s]["updated_by"] != current_user.id]
        urgent = [n for n in _timeline(access.patient, 10) if n["urgent"] and not n["acknowledged_by_me"]]
        items.append({"p": access.patient, "demo": demographics(access.patient), "record": record,
                      "changed": changed, "urgent": urgent, "since": since})
        audit.record("record.read", "ok", actor=current_user, patient_id=access.patient.id,
                     detail="visit_summary")
    return render_template("summary.html", items=items, now=utcnow())


@page("/patients/<patient_id>/team", action="team.read")
def team_page(patient_id):
    access = patient_access(current_user, patient_id, authz.TEAM_VIEW)
    patient = access.patient
    consents = [consent_out(patient, c) for c in db.session.execute(
        select(Consent).where(Consent.patient_id == patient.id).order_by(Consent.recorded_at.desc())).scalars()]
    people = db.session.execute(select(User).where(User.disabled.is_(False)).order_by(User.display_name)).scalars().all()
    can_manage = current_user.is_admin or access.role in authz.TEAM_MANAGERS \
        or patient.registered_by == current_user.id
    return render_template("team.html", p=patient, access=access, team=team_rows(patient.id),
                           consents=consents, people=people, can_manage=can_manage,
                           roles=authz.PROFESSION_ROLES)


@page("/account")
def account():
    return render_template("account.html", qr=None, secret=None)


@page("/account/totp", action="auth.totp_enrol", methods=("POST",))
def account_totp():
    user = current_user._get_current_object()
    if user.totp_enabled:
        return render_template("account.html", qr=None, secret=None)
    secret = auth.new_totp_secret(user)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.login, issuer_name="Renkei")
    qr = segno.make(uri, error="m").svg_data_uri(scale=5)
    return render_template("account.html", qr=qr, secret=secret)


@page("/admin", who="admin")
def admin():
    orgs = db.session.execute(select(Organization).order_by(Organization.name)).scalars().all()
    users = db.session.execute(select(User).order_by(User.display_name)).scalars().all()
    return render_template("admin.html", orgs=orgs, users=users)


@page("/admin/audit", action="audit.read", who="audit")
def audit_page():
    args = {k: v for k, v in request.args.items() if v and k != "verify"}
    for name in ("since", "until"):  # the page's date pickers give whole days (JST)
        if len(args.get(name, "")) == 10:
            day = args[name] + "T00:00:00+09:00"
            args[name] = day if name == "since" else (
                date.fromisoformat(args[name]) + timedelta(days=1)).isoformat() + "T00:00:00+09:00"
    try:
        query = AuditQuery().load(args)
    except ValidationError as err:
        query, errors = {"limit": 100}, err.messages_dict
    else:
        errors = {}
    stmt = filtered(query)
    if query.get("cursor"):
        stmt = stmt.where(AuditEntry.seq < query["cursor"])
    entries = db.session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(query["limit"])).scalars().all()
    names = dict(db.session.execute(select(User.id, User.display_name)).all())
    # Verifying re-hashes the whole log (minutes at millions of entries): the page asks the
    # API for it after loading; without JavaScript, ?verify=1 does it here.
    chain = audit.verify() if request.args.get("verify") else None
    anchor = db.session.execute(select(AuditAnchor).order_by(AuditAnchor.seq.desc()).limit(1)).scalar()
    return render_template("audit.html", entries=entries, names=names, args=request.args,
                           filters={k: v for k, v in request.args.items() if k != "verify"},
                           errors=errors, chain=chain, anchor=anchor,
                           users=db.session.execute(select(User).order_by(User.display_name)).scalars().all())


@page("/admin/usage", action="usage.read", who="audit")
def usage():
    """活用状況: organisations and people active, by profession, updates and notes per week."""
    now = utcnow()
    since = now - timedelta(days=30)
    active = select(AuditEntry.actor_id).where(AuditEntry.at >= since, AuditEntry.outcome == "ok",
                                               AuditEntry.patient_id.is_not(None)).distinct()
    by_profession = db.session.execute(select(User.profession, func.count(User.id))
                                       .where(User.id.in_(active)).group_by(User.profession)).all()
    orgs_active = db.session.execute(select(func.count(func.distinct(User.organization_id)))
                                     .where(User.id.in_(active))).scalar()
    weeks = []
    for i in range(7, -1, -1):
        start = (now - timedelta(days=now.weekday() + 7 * i)).replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=7)
        updates = db.session.execute(select(func.count(SectionRevision.id)).where(
            SectionRevision.created_at >= start, SectionRevision.created_at < end)).scalar()
        notes = db.session.execute(select(func.count(Note.id)).where(
            Note.created_at >= start, Note.created_at < end)).scalar()
        weeks.append({"start": start.date(), "updates": updates, "notes": notes})
    totals = {"organizations": db.session.execute(select(func.count(Organization.id))).scalar(),
              "users": db.session.execute(select(func.count(User.id)).where(User.disabled.is_(False))).scalar(),
              "orgs_active": orgs_active, "people_active": sum(n for _, n in by_profession)}
    return render_template("usage.html", totals=totals, by_profession=by_profession, weeks=weeks,
                           peak=max([1] + [max(w["updates"], w["notes"]) for w in weeks]))


@page("/breakglass")
def breakglass_page():
    """緊急時アクセス: physicians and nurses open a record they are not on the team of."""
    return render_template("breakglass.html", patient_id=request.args.get("patient_id", ""))
