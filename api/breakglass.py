"""Break-glass (緊急時アクセス): time-limited, read-only, audited, announced."""

from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import BreakGlassFind, BreakGlassIn, BreakGlassList, BreakGlassOut
from renkei.patients import breakglass


@endpoint(
    "POST",
    "/patients/<patient_id>/breakglass",
    summary="Open a patient's record in an emergency (physicians and nurses off the team)",
    tag="breakglass",
    action="breakglass.open",
    body=BreakGlassIn,
    response=BreakGlassOut,
    idempotent=True,
    status=201,
    errors=(401, 403, 404, 409),
)
def open_breakglass(patient_id, body):
    return breakglass.open_grant(current_user, patient_id, body["reason"], body.get("otp"), body.get("passkey"))


@endpoint(
    "POST",
    "/breakglass",
    summary="Find a patient by the sheet's code, or name and birth date, and open the record in an emergency",
    tag="breakglass",
    action="breakglass.open",
    body=BreakGlassFind,
    response=BreakGlassOut,
    idempotent=True,
    status=201,
    errors=(401, 403, 404, 409, 429),
)
def find_and_open_breakglass(body):
    return breakglass.open_found(
        current_user,
        body["reason"],
        body.get("otp"),
        code=body.get("code"),
        name=body.get("name"),
        birth_date=body.get("birth_date"),
        passkey=body.get("passkey"),
    )


@endpoint(
    "GET",
    "/patients/<patient_id>/breakglass",
    summary="Emergency accesses to this patient, with their reasons",
    tag="breakglass",
    action="breakglass.list",
    response=BreakGlassList,
    errors=(403, 404),
)
def list_breakglass(patient_id):
    return {"items": breakglass.grants(current_user, patient_id)}


@endpoint(
    "GET",
    "/audit/breakglass",
    summary="Every emergency access with its reason (auditors)",
    tag="audit",
    action="audit.breakglass",
    auth="audit",
    response=BreakGlassList,
)
def audit_breakglass():
    return {"items": breakglass.all_grants(current_user)}
