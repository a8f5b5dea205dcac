"""Authorisation: the one path every access to a patient goes through
(docs/ARCHITECTURE.md, "Authorisation").

`patient_access(user, patient_id, need, section)` returns the patient or raises:
404 when the caller may not see the patient at all (same as a patient that does
not exist), 403 when they may see it but not do this; an account not yet confirmed
reaches nothing (renkei/people/staff.py, which also holds the administrator and auditor
checks). This module and the `writers` of each section in renkei/sections/catalogue.py
are the whole policy: who may write a section is decided in `may_write`, from that
declaration."""

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from models import AuditEntry, BreakGlass, Consent, Patient, TeamMember, User, utcnow
from renkei.common import db, work
from renkei.common.problems import Problem, not_found
from renkei.outreach import events
from renkei.people import staff
from renkei.sections.catalogue import SECTIONS

ROLES = (
    "primary_physician",
    "backup_physician",
    "nurse",
    "care_manager",
    "disability_support_worker",
    "pharmacist",
    "therapist",
)

# Which team roles a profession may hold; the first is what a registrant becomes.
PROFESSION_ROLES = {
    "physician": ("primary_physician", "backup_physician"),
    "nurse": ("nurse",),
    "care_manager": ("care_manager",),
    "disability_support_worker": ("disability_support_worker",),
    "pharmacist": ("pharmacist",),
    "therapist": ("therapist",),
    "other": (),
}
TEAM_MANAGERS = frozenset({"care_manager", "primary_physician", "backup_physician"})
CLINICIANS = frozenset({"primary_physician", "backup_physician", "nurse"})  # set alert thresholds
BREAKGLASS_PROFESSIONS = frozenset({"physician", "nurse"})

# What a caller wants to do with a patient.
READ = "read"  # demographics, record, revisions, timeline
WRITE = "write"  # a section (needs `section`)
POST = "post"  # timeline notes and acknowledgements
OBSERVE = "observe"  # record a vital sign or other observation (any team member)
THRESHOLDS = "thresholds"  # set the patient's alert thresholds (CLINICIANS)
TEAM_VIEW = "team.view"
TEAM_MANAGE = "team.manage"
CONSENT = "consent"
DELETE = "delete"
_READ_ONLY = {READ, TEAM_VIEW}
_NEEDS_CONSENT = {READ, WRITE, POST, OBSERVE, THRESHOLDS}


@dataclass
class Access:
    patient: Patient
    member: TeamMember | None  # the caller's current membership, None if not a member
    breakglass: bool = False

    @property
    def role(self) -> str | None:
        return self.member.role if self.member else None


def current_membership(patient_id: str, user_id: str) -> TeamMember | None:
    return db.session.execute(
        select(TeamMember).where(
            TeamMember.patient_id == patient_id, TeamMember.user_id == user_id, TeamMember.removed_at.is_(None)
        )
    ).scalar_one_or_none()


def active_breakglass(patient_id: str, user_id: str) -> BreakGlass | None:
    return db.session.execute(
        select(BreakGlass)
        .where(BreakGlass.patient_id == patient_id, BreakGlass.user_id == user_id, BreakGlass.expires_at > utcnow())
        .order_by(BreakGlass.expires_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def has_consent(patient_id: str) -> bool:
    return (
        db.session.execute(
            select(Consent.id).where(Consent.patient_id == patient_id, Consent.withdrawn_at.is_(None)).limit(1)
        ).first()
        is not None
    )


def live_patient(patient_id: str) -> Patient | None:
    patient = db.session.get(Patient, patient_id) if isinstance(patient_id, str) else None
    return None if patient is None or patient.deleted_at is not None else patient


# Patient, membership and consent in one query: this runs on every patient request, so
# the statement is built once (bench/read_path.py measured its construction).
_ACCESS = (
    select(
        Patient,
        TeamMember,
        select(Consent.id).where(Consent.patient_id == Patient.id, Consent.withdrawn_at.is_(None)).exists(),
        select(Consent.id).where(Consent.patient_id == Patient.id).exists(),
    )
    .outerjoin(
        TeamMember,
        (TeamMember.patient_id == Patient.id)
        & (TeamMember.user_id == bindparam("user_id"))
        & TeamMember.removed_at.is_(None),
    )
    .where(Patient.id == bindparam("patient_id"), Patient.deleted_at.is_(None))
)


def patient_access(user: User, patient_id: str, need: str, section: str | None = None) -> Access:
    staff.require_confirmed(user)
    found = db.session.execute(_ACCESS, {"user_id": user.id, "patient_id": str(patient_id)}).first()
    if found is None:
        raise not_found()
    patient, member, consent, ever_consented = found
    work.current().patients_found.add(patient.id)  # its access-log entry need not look it up again

    # Administrators see teams and delete records without reading clinical content; the
    # team manages itself — an administrator only appoints a manager to a team left with none.
    if user.is_admin and need in (TEAM_VIEW, DELETE):
        return Access(patient, member)
    if user.is_admin and need == TEAM_MANAGE:
        if team_has_manager(patient.id):
            raise Problem(403, "The team manages itself; administrators only appoint a manager to a team without one.")
        return Access(patient, member)
    if member is None:
        grant = active_breakglass(patient.id, user.id)
        if grant is None:
            raise not_found()
        work.current().mark("breakglass=" + grant.id)  # emergency reads stand out in the log
        if need not in _READ_ONLY:
            raise Problem(403, "Break-glass access is read-only.", type_="/problems/breakglass-read-only")
        return Access(patient, None, breakglass=True)

    # Consent: the registrant sets the record up before the first consent; once consent
    # has been withdrawn, nobody reads or writes clinical content until a new one.
    setting_up = user.id == patient.registered_by and not ever_consented
    if need in _NEEDS_CONSENT and not consent and not setting_up:
        raise Problem(
            403, "The patient's consent to share information has not been recorded.", type_="/problems/consent-missing"
        )
    if need == WRITE and not may_write(member.role, section):
        raise Problem(
            403, f"The role {member.role} may not write the section {section}.", type_="/problems/section-not-writable"
        )
    if need == THRESHOLDS and not sets_thresholds(member.role):
        raise Problem(
            403, "Only the physicians and nurses set alert thresholds.", type_="/problems/thresholds-not-writable"
        )
    if need in (TEAM_MANAGE, CONSENT) and not manages_team(user, patient, member):
        raise Problem(403, "Only the care manager, the physicians or the registrant may do this.")
    if need == DELETE:
        raise Problem(403, "Only administrators delete a patient's record.")
    if need in _NEEDS_CONSENT and user.watch_until is not None and utcnow() < user.watch_until:
        _watched_read(user, patient.id)
    return Access(patient, member)


def team_has_manager(patient_id: str) -> bool:
    """An active care manager or physician on the team (a disabled one manages nothing)."""
    return (
        db.session.execute(
            select(TeamMember.user_id)
            .join(User, User.id == TeamMember.user_id)
            .where(
                TeamMember.patient_id == patient_id,
                TeamMember.removed_at.is_(None),
                User.disabled.is_(False),
                TeamMember.role.in_(TEAM_MANAGERS),
            )
            .limit(1)
        ).first()
        is not None
    )


def _watched_read(user: User, patient_id: str):
    """Within a day of an access reset every clinical access is marked in the log, and
    the patient's team hears of the first one (whoever holds the new password may not
    be the person)."""
    work.current().mark("after_reset")
    earlier = db.session.execute(
        select(AuditEntry.seq)
        .where(
            AuditEntry.actor_id == user.id,
            AuditEntry.patient_id == patient_id,
            AuditEntry.at >= user.reset_at,
            AuditEntry.detail.like("%after_reset%"),
        )
        .limit(1)
    ).first()
    if earlier is None and not work.current().announced_reset(patient_id):
        events.queue("access.after_reset", patient_id, {"user_id": user.id})


def visible_patients(user: User, patient_ids: set[str]) -> set[str]:
    """Of these patients, the ones the user may see now: on the team or under break-glass."""
    if not patient_ids:
        return set()
    members = select(TeamMember.patient_id).where(
        TeamMember.user_id == user.id, TeamMember.removed_at.is_(None), TeamMember.patient_id.in_(patient_ids)
    )
    grants = select(BreakGlass.patient_id).where(
        BreakGlass.user_id == user.id, BreakGlass.expires_at > utcnow(), BreakGlass.patient_id.in_(patient_ids)
    )
    return set(db.session.execute(members.union(grants)).scalars())


def may_write(role: str | None, section: str) -> bool:
    """Whether a team role may write a section: the section's declared writers."""
    return section in SECTIONS and role in SECTIONS[section].writers


def sets_thresholds(role: str | None) -> bool:
    """Whether a team role sets a patient's alert thresholds (and marks anyone's reading 誤入力)."""
    return role in CLINICIANS


def writable_sections(role: str | None) -> list[str]:
    return [key for key in SECTIONS if may_write(role, key)]


def manages_team(user: User, patient: Patient, member: TeamMember | None) -> bool:
    """The care manager, the physicians and the registrant manage a team and its consent."""
    return (member is not None and member.role in TEAM_MANAGERS) or user.id == patient.registered_by
