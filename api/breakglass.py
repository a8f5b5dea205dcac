"""Break-glass (緊急時アクセス): time-limited, read-only, audited, announced."""
from datetime import timedelta

from flask import current_app
from flask_login import current_user

from api import endpoint
from api.schemas import BreakGlassIn, BreakGlassOut
from models import BreakGlass, new_id, utcnow
from renkei import auth, authz, crypto, db, notify, vault
from renkei.problems import Problem, not_found


@endpoint("POST", "/patients/<patient_id>/breakglass",
          summary="Open a patient's record in an emergency (physicians and nurses off the team)",
          tag="breakglass", action="breakglass.open", body=BreakGlassIn, response=BreakGlassOut,
          status=201, errors=(401, 403, 404, 409))
def open_breakglass(patient_id, body):
    # Checked before the patient is looked up, so the answer says nothing about it.
    if current_user.profession not in authz.BREAKGLASS_PROFESSIONS:
        raise Problem(403, "Only physicians and nurses may use break-glass access.")
    patient = authz.live_patient(patient_id)
    if patient is None:
        raise not_found()
    if authz.current_membership(patient.id, current_user.id) is not None:
        raise Problem(409, "You are on this patient's team already.")
    if auth.second_factor_required(current_user) and not auth.check_totp(current_user, body.get("otp")):
        raise Problem(401, "Confirm with a one-time code from your authenticator app.",
                      type_="/problems/otp-required", otp_required=True)
    seconds = current_app.config["RENKEI"].breakglass_seconds
    grant = BreakGlass(id=new_id(), patient_id=patient.id, user_id=current_user.id,
                       opened_at=utcnow(), expires_at=utcnow() + timedelta(seconds=seconds))
    grant.reason_ct = crypto.seal(vault.patient_key(patient), body["reason"].encode(),
                                  vault.aad(patient.id, "breakglass=" + grant.id))
    db.session.add(grant)
    db.session.flush()
    notify.queue("breakglass.opened", patient.id,
                 {"actor_id": current_user.id, "reason_given": True},
                 also_to=notify.admin_user_ids())
    return {"id": grant.id, "patient_id": patient.id, "expires_at": grant.expires_at}
