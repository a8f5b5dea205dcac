"""Consent to share the patient's information (docs/API.md, "Consent"): recorded with
who obtained it and its scope (sealed under the patient's key), listed, withdrawn.
Without a consent in force the team reads and writes nothing clinical
(renkei/patients/authz.py). A consent is not dated in the future, in Japan time."""

from datetime import date

from sqlalchemy import select

from models import Consent, Patient, User, new_id, utcnow
from renkei.common import crypto, db, vault, work
from renkei.common.problems import invalid, not_found
from renkei.common.timefmt import japan_today
from renkei.patients import authz
from renkei.patients.authz import patient_access


def plausible_date(obtained_on: date) -> bool:
    """The API's schema and every other door ask here."""
    return obtained_on <= japan_today()


def consent_out(patient: Patient, c: Consent) -> dict:
    details = crypto.unseal_json(vault.patient_key(patient), c.details_ct, vault.consent_aad(patient.id, c.id))
    return {
        "id": c.id,
        "obtained_on": c.obtained_on.isoformat(),
        **details,
        "recorded_by": c.recorded_by,
        "recorded_at": c.recorded_at,
        "withdrawn_at": c.withdrawn_at,
        "active": c.withdrawn_at is None,
    }


def record_consent(actor: User, patient_id: str, obtained_on: date, obtained_by: str, scope: str) -> dict:
    patient = patient_access(actor, patient_id, authz.CONSENT).patient
    if not plausible_date(obtained_on):
        raise invalid({"obtained_on": ["Consent cannot be dated in the future."]})
    consent = Consent(id=new_id(), patient_id=patient.id, obtained_on=obtained_on, recorded_by=actor.id)
    consent.details_ct = crypto.seal_json(
        vault.patient_key(patient),
        {"obtained_by": obtained_by, "scope": scope},
        vault.consent_aad(patient.id, consent.id),
    )
    db.session.add(consent)
    db.session.flush()
    return consent_out(patient, consent)


def consents(actor: User, patient_id: str) -> list[dict]:
    """The patient's consents. Administrators see that consent exists and its dates, not
    who gave it or its scope (sealed text they have no need to read)."""
    patient = patient_access(actor, patient_id, authz.TEAM_VIEW).patient
    rows = db.session.execute(
        select(Consent).where(Consent.patient_id == patient.id).order_by(Consent.recorded_at.desc())
    ).scalars()
    if actor.is_admin:
        return [
            {
                "id": c.id,
                "obtained_on": c.obtained_on.isoformat(),
                "recorded_at": c.recorded_at,
                "withdrawn_at": c.withdrawn_at,
                "active": c.withdrawn_at is None,
            }
            for c in rows
        ]
    return [consent_out(patient, c) for c in rows]


def withdraw_consent(actor: User, patient_id: str, consent_id: str):
    patient = patient_access(actor, patient_id, authz.CONSENT).patient
    consent = db.session.get(Consent, consent_id)
    if consent is None or consent.patient_id != patient.id or consent.withdrawn_at:
        raise not_found()
    consent.withdrawn_at = utcnow()
    work.describe(detail="consent=" + consent.id)
