"""Break-glass (緊急時アクセス): a physician or nurse off the team opens a record for a
limited time, read-only, with a reason; audited and announced to the team and the
administrators at once."""
from datetime import timedelta

from flask import current_app

from models import BreakGlass, User, new_id, utcnow
from renkei import auth, authz, crypto, db, notify, vault
from renkei.problems import Problem, not_found


def open_grant(actor: User, patient_id: str, reason: str, otp: str | None) -> dict:
    # Checked before the patient is looked up, so the answer says nothing about it.
    if actor.profession not in authz.BREAKGLASS_PROFESSIONS:
        raise Problem(403, "Only physicians and nurses may use break-glass access.")
    patient = authz.live_patient(patient_id)
    if patient is None:
        raise not_found()
    if authz.current_membership(patient.id, actor.id) is not None:
        raise Problem(409, "You are on this patient's team already.")
    if auth.second_factor_required(actor) and not auth.check_totp(actor, otp):
        raise Problem(401, "Confirm with a one-time code from your authenticator app.",
                      type_="/problems/otp-required", otp_required=True)
    seconds = current_app.config["RENKEI"].breakglass_seconds
    grant = BreakGlass(id=new_id(), patient_id=patient.id, user_id=actor.id,
                       opened_at=utcnow(), expires_at=utcnow() + timedelta(seconds=seconds))
    grant.reason_ct = crypto.seal(vault.patient_key(patient), reason.encode(),
                                  vault.breakglass_aad(patient.id, grant.id))
    db.session.add(grant)
    db.session.flush()
    notify.queue("breakglass.opened", patient.id, {"actor_id": actor.id, "reason_given": True},
                 also_to=notify.admin_user_ids())
    return {"id": grant.id, "patient_id": patient.id, "expires_at": grant.expires_at}
