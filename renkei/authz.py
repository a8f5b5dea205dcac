"""Authorisation: the one path every access to a patient goes through
(docs/ARCHITECTURE.md, "Authorisation").

`patient_access(user, patient_id, need, section)` returns the patient or raises:
404 when the caller may not see the patient at all (same as a patient that does
not exist), 403 when they may see it but not do this. `require_staff` is the check
for administrator and auditor pages and routes. This module and the `writers` of
each section in renkei/sections.py are the whole policy: who may write a section is
decided in `may_write`, from that declaration."""
from dataclasses import dataclass

from sqlalchemy import select

from models import BreakGlass, Consent, Patient, TeamMember, User, utcnow
from renkei import db
from renkei.problems import Problem, not_found
from renkei.sections import SECTIONS

ROLES = ("primary_physician", "backup_physician", "nurse", "care_manager",
         "disability_support_worker", "pharmacist", "therapist")

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
BREAKGLASS_PROFESSIONS = frozenset({"physician", "nurse"})

# What a caller wants to do with a patient.
READ = "read"            # demographics, record, revisions, timeline
WRITE = "write"          # a section (needs `section`)
POST = "post"            # timeline notes and acknowledgements
TEAM_VIEW = "team.view"
TEAM_MANAGE = "team.manage"
CONSENT = "consent"
DELETE = "delete"
_READ_ONLY = {READ, TEAM_VIEW}
_NEEDS_CONSENT = {READ, WRITE, POST}


@dataclass
class Access:
    patient: Patient
    member: TeamMember | None  # the caller's current membership, None if not a member
    breakglass: bool = False

    @property
    def role(self) -> str | None:
        return self.member.role if self.member else None


def current_membership(patient_id: str, user_id: str) -> TeamMember | None:
    return db.session.execute(select(TeamMember).where(
        TeamMember.patient_id == patient_id, TeamMember.user_id == user_id,
        TeamMember.removed_at.is_(None))).scalar_one_or_none()


def active_breakglass(patient_id: str, user_id: str) -> BreakGlass | None:
    return db.session.execute(select(BreakGlass).where(
        BreakGlass.patient_id == patient_id, BreakGlass.user_id == user_id,
        BreakGlass.expires_at > utcnow()).order_by(BreakGlass.expires_at.desc()).limit(1)
    ).scalar_one_or_none()


def has_consent(patient_id: str) -> bool:
    return db.session.execute(select(Consent.id).where(
        Consent.patient_id == patient_id, Consent.withdrawn_at.is_(None)).limit(1)).first() is not None


def live_patient(patient_id: str) -> Patient | None:
    patient = db.session.get(Patient, patient_id) if isinstance(patient_id, str) else None
    return None if patient is None or patient.deleted_at is not None else patient


def patient_access(user: User, patient_id: str, need: str, section: str | None = None) -> Access:
    # Patient, membership and consent in one query: this runs on every patient request.
    consented = select(Consent.id).where(Consent.patient_id == Patient.id,
                                         Consent.withdrawn_at.is_(None)).exists()
    found = db.session.execute(
        select(Patient, TeamMember, consented).outerjoin(TeamMember, (TeamMember.patient_id == Patient.id)
                                                         & (TeamMember.user_id == user.id)
                                                         & TeamMember.removed_at.is_(None))
        .where(Patient.id == str(patient_id), Patient.deleted_at.is_(None))).first()
    if found is None:
        raise not_found()
    patient, member, consent = found

    # Administrators manage teams and delete records without reading clinical content.
    if user.is_admin and (need in (TEAM_VIEW, TEAM_MANAGE, DELETE)):
        return Access(patient, member)
    if member is None:
        if active_breakglass(patient.id, user.id) is None:
            raise not_found()
        if need not in _READ_ONLY:
            raise Problem(403, "Break-glass access is read-only.", type_="/problems/breakglass-read-only")
        return Access(patient, None, breakglass=True)

    if need in _NEEDS_CONSENT and user.id != patient.registered_by and not consent:
        raise Problem(403, "The patient's consent to share information has not been recorded.",
                      type_="/problems/consent-missing")
    if need == WRITE and not may_write(member.role, section):
        raise Problem(403, f"The role {member.role} may not write the section {section}.",
                      type_="/problems/section-not-writable")
    if need in (TEAM_MANAGE, CONSENT) and not manages_team(user, patient, member):
        raise Problem(403, "Only the care manager, the physicians or the registrant may do this.")
    if need == DELETE:
        raise Problem(403, "Only administrators delete a patient's record.")
    return Access(patient, member)


def visible_patients(user: User, patient_ids: set[str]) -> set[str]:
    """Of these patients, the ones the user may see now: on the team or under break-glass."""
    if not patient_ids:
        return set()
    members = select(TeamMember.patient_id).where(TeamMember.user_id == user.id, TeamMember.removed_at.is_(None),
                                                  TeamMember.patient_id.in_(patient_ids))
    grants = select(BreakGlass.patient_id).where(BreakGlass.user_id == user.id, BreakGlass.expires_at > utcnow(),
                                                 BreakGlass.patient_id.in_(patient_ids))
    return set(db.session.execute(members.union(grants)).scalars())


def may_write(role: str | None, section: str) -> bool:
    """Whether a team role may write a section: the section's declared writers."""
    return section in SECTIONS and role in SECTIONS[section].writers


def writable_sections(role: str | None) -> list[str]:
    return [key for key in SECTIONS if may_write(role, key)]


def manages_team(user: User, patient: Patient, member: TeamMember | None) -> bool:
    """The care manager, the physicians and the registrant manage a team and its consent."""
    return (member is not None and member.role in TEAM_MANAGERS) or user.id == patient.registered_by


def require_staff(user: User, who: str):
    """who: "admin" (administrators) or "audit" (administrators and auditors)."""
    if who == "admin" and not user.is_admin:
        raise Problem(403, "Administrators only.")
    if who == "audit" and not (user.is_admin or user.is_auditor):
        raise Problem(403, "Administrators and auditors only.")
