"""The access log for administrators and auditors. Reading it is audited too."""

from flask import Response, stream_with_context
from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import (
    AuditList,
    AuditPatientList,
    AuditQuery,
    AuditVerify,
    Checkpoint,
    CheckpointIn,
    CheckpointResult,
    ConsistencyProof,
    ConsistencyQuery,
    InclusionProof,
    InclusionQuery,
    PatientSearch,
)
from renkei.oversight import reading


@endpoint(
    "GET",
    "/audit",
    summary="Search the access log, newest first",
    tag="audit",
    action="audit.read",
    auth="audit",
    query=AuditQuery,
    response=AuditList,
)
def search(query):
    return reading.search(current_user, query)  # entries are dumped once, by the response schema


@endpoint(
    "POST",
    "/audit/patients",
    summary="Find a patient by full name or kana, to filter the log by (auditors)",
    tag="audit",
    action="audit.patient_search",
    auth="audit",
    body=PatientSearch,
    response=AuditPatientList,
    errors=(403, 429),
)
def find_patients(body):
    # POST: the name travels in the body, never in a URL that logs would keep.
    return {"items": reading.find_patients(current_user, body["name"])}


@endpoint(
    "GET",
    "/audit/verify",
    summary="Recompute the access log's Merkle tree and check it against every signed head outside the database",
    tag="audit",
    action="audit.verify",
    auth="audit",
    response=AuditVerify,
)
def verify():
    return reading.verify(current_user)


@endpoint(
    "GET",
    "/audit/checkpoint",
    summary="The newest signed tree head (a C2SP signed note) and its public key",
    tag="audit",
    action="audit.checkpoint",
    auth="audit",
    response=Checkpoint,
)
def get_checkpoint():
    return reading.checkpoint(current_user)


@endpoint(
    "POST",
    "/audit/checkpoint/verify",
    summary="Check the log against a signed tree head kept elsewhere",
    tag="audit",
    action="audit.verify",
    auth="audit",
    body=CheckpointIn,
    response=CheckpointResult,
)
def verify_checkpoint(body):
    return reading.verify_checkpoint(current_user, body["checkpoint"])


@endpoint(
    "GET",
    "/audit/proof/inclusion",
    summary="RFC 9162 inclusion proof of the entry `seq` in the tree of `tree_size` entries",
    tag="audit",
    action="audit.proof",
    auth="audit",
    query=InclusionQuery,
    response=InclusionProof,
)
def inclusion_proof(query):
    return reading.inclusion_proof(current_user, query["seq"], query["tree_size"])


@endpoint(
    "GET",
    "/audit/proof/consistency",
    summary="RFC 9162 consistency proof between two tree sizes",
    tag="audit",
    action="audit.proof",
    auth="audit",
    query=ConsistencyQuery,
    response=ConsistencyProof,
)
def consistency_proof(query):
    return reading.consistency_proof(current_user, query["first"], query["second"])


@endpoint(
    "GET",
    "/audit/export.csv",
    summary="Export the access log as CSV (same filters)",
    tag="audit",
    action="audit.export",
    auth="audit",
    query=AuditQuery,
)
def export(query):
    return Response(
        stream_with_context(reading.export_csv(current_user, query)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="renkei-audit.csv"'},
    )
