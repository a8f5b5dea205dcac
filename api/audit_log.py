"""The access log for administrators and auditors. Reading it is audited too."""
from flask import Response, stream_with_context
from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import (AuditList, AuditPatientList, AuditQuery, AuditVerify, Checkpoint, CheckpointResult,
                         PatientSearch)
from renkei import access_log


@endpoint("GET", "/audit", summary="Search the access log, newest first", tag="audit",
          action="audit.read", auth="audit", query=AuditQuery, response=AuditList)
def search(query):
    return access_log.search(current_user, query)  # entries are dumped once, by the response schema


@endpoint("POST", "/audit/patients", summary="Find a patient by full name or kana, to filter the log by (auditors)",
          tag="audit", action="audit.patient_search", auth="audit", body=PatientSearch, response=AuditPatientList,
          errors=(403, 429))
def find_patients(body):
    # POST: the name travels in the body, never in a URL that logs would keep.
    return {"items": access_log.find_patients(current_user, body["name"])}


@endpoint("GET", "/audit/verify", summary="Verify the hash chain of the access log", tag="audit",
          action="audit.verify", auth="audit", response=AuditVerify)
def verify():
    return access_log.verify(current_user)


@endpoint("GET", "/audit/checkpoint", summary="A signed checkpoint of the log's head, to keep outside the system",
          tag="audit", action="audit.checkpoint", auth="audit", response=Checkpoint)
def get_checkpoint():
    return access_log.checkpoint(current_user)


@endpoint("POST", "/audit/checkpoint/verify", summary="Check the log against a saved checkpoint (detects truncation)",
          tag="audit", action="audit.verify", auth="audit", body=Checkpoint, response=CheckpointResult)
def verify_checkpoint(body):
    return access_log.verify_checkpoint(current_user, body)


@endpoint("GET", "/audit/export.csv", summary="Export the access log as CSV (same filters)",
          tag="audit", action="audit.export", auth="audit", query=AuditQuery)
def export(query):
    return Response(stream_with_context(access_log.export_csv(current_user, query)), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="renkei-audit.csv"'})
