"""Deleting a patient (docs/API.md, "Deleting a patient"): the one act that reaches every
domain, so it lives above them all. Crypto-shredding: the patient's data key is
destroyed, which leaves every sealed row unreadable; the attachments' frames, the
kept answers of idempotent requests, escalations and queued pushes and mails go too,
and the freed space is overwritten after the commit."""

from models import User, utcnow
from renkei.attachments import attachments
from renkei.common import idempotency, vault, work
from renkei.patients import authz, escalation
from renkei.patients.authz import patient_access


def delete(actor: User, patient_id: str):
    access = patient_access(actor, patient_id, authz.DELETE)
    vault.shred(access.patient)
    attachments.shred_patient(access.patient.id)
    idempotency.forget(access.patient.id)  # kept answers and request fingerprints go too
    escalation.end_for_patient(access.patient.id)  # and escalations, queued pushes and mails
    access.patient.deleted_at = utcnow()
    work.current().freed_space = True  # overwritten once the commit has gone through
