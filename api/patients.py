"""Patients, consent and teams."""

from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import (
    ConsentIn,
    ConsentList,
    ConsentOut,
    PatientIn,
    PatientList,
    PatientOut,
    PatientQuery,
    PatientSearch,
    TeamIn,
    TeamList,
    TeamMemberOut,
)
from renkei import erasure
from renkei.patients import consent, registry, teams


@endpoint(
    "POST",
    "/patients",
    summary="Register a patient; the caller joins the team",
    tag="patients",
    action="patient.create",
    body=PatientIn,
    response=PatientOut,
    idempotent=True,
    status=201,
    errors=(403,),
)
def create_patient(body):
    out = registry.register(current_user, body)
    return out, 201, {"Location": f"/api/v1/patients/{out['id']}"}


@endpoint(
    "GET",
    "/patients",
    summary="The caller's patients (team member or break-glass)",
    tag="patients",
    action="patient.list",
    query=PatientQuery,
    response=PatientList,
)
def list_patients(query):
    return {"items": registry.care_list(current_user)}


@endpoint(
    "POST",
    "/patients/search",
    summary="The caller's patients with this name, kana or family-name prefix",
    tag="patients",
    action="patient.search",
    body=PatientSearch,
    response=PatientList,
)
def search_patients(body):
    # POST: the name travels in the body, never in a URL that logs would keep.
    return {"items": registry.care_list(current_user, body["name"])}


@endpoint(
    "GET",
    "/patients/<patient_id>",
    summary="A patient's demographics (decrypted)",
    tag="patients",
    action="patient.read",
    response=PatientOut,
    errors=(403, 404),
)
def get_patient(patient_id):
    return registry.read(current_user, patient_id)


@endpoint(
    "DELETE",
    "/patients/<patient_id>",
    summary="Delete a patient by destroying its data key",
    tag="patients",
    action="patient.delete",
    status=204,
    errors=(403, 404),
)
def delete_patient(patient_id):
    erasure.delete(current_user, patient_id)


# --- consent ----------------------------------------------------------------------


@endpoint(
    "POST",
    "/patients/<patient_id>/consents",
    summary="Record the patient's consent to share",
    tag="consent",
    action="consent.create",
    body=ConsentIn,
    response=ConsentOut,
    idempotent=True,
    status=201,
    errors=(403, 404),
)
def create_consent(patient_id, body):
    return consent.record_consent(current_user, patient_id, body["obtained_on"], body["obtained_by"], body["scope"])


@endpoint(
    "GET",
    "/patients/<patient_id>/consents",
    summary="Consents recorded for the patient",
    tag="consent",
    action="consent.list",
    response=ConsentList,
    errors=(404,),
)
def list_consents(patient_id):
    return {"items": consent.consents(current_user, patient_id)}


@endpoint(
    "DELETE",
    "/patients/<patient_id>/consents/<consent_id>",
    summary="Record that the patient withdrew a consent",
    tag="consent",
    action="consent.withdraw",
    status=204,
    errors=(403, 404),
)
def withdraw_consent(patient_id, consent_id):
    consent.withdraw_consent(current_user, patient_id, consent_id)


# --- team -------------------------------------------------------------------------


@endpoint(
    "GET",
    "/patients/<patient_id>/team",
    summary="The patient's current team",
    tag="team",
    action="team.read",
    response=TeamList,
    errors=(404,),
)
def get_team(patient_id):
    return teams.team(current_user, patient_id)


@endpoint(
    "POST",
    "/patients/<patient_id>/team",
    summary="Add a member with a role that fits their profession",
    tag="team",
    action="team.add",
    body=TeamIn,
    response=TeamMemberOut,
    idempotent=True,
    status=201,
    errors=(403, 404, 409),
)
def add_member(patient_id, body):
    added = teams.add_member(current_user, patient_id, body["user_id"], body["role"])
    return added, 202 if added.get("status") == "pending" else 201


@endpoint(
    "POST",
    "/patients/<patient_id>/team/<user_id>/confirm",
    summary="Confirm an administrator's pending appointment (the second person)",
    tag="team",
    action="team.confirm",
    auth="admin",
    response=TeamMemberOut,
    errors=(404, 409),
)
def confirm_appointment(patient_id, user_id):
    return teams.confirm_appointment(current_user, patient_id, user_id)


@endpoint(
    "DELETE",
    "/patients/<patient_id>/team/<user_id>",
    summary="Remove a member",
    tag="team",
    action="team.remove",
    status=204,
    errors=(403, 404),
)
def remove_member(patient_id, user_id):
    teams.remove_member(current_user, patient_id, user_id)
