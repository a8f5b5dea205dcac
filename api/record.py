"""The shared record: ten versioned sections, optimistic concurrency by If-Match."""

from flask_login import current_user

from api.pipeline import endpoint, if_match_version
from api.schemas import RecordOut, SectionIn, SectionOut, SectionVersions
from renkei.record import revisions, versioned


def _etag(section: dict) -> dict:
    return {"ETag": f'"{section["version"]}"'}


@endpoint(
    "GET",
    "/patients/<patient_id>/record",
    summary="All ten sections of the record",
    tag="record",
    action="record.read",
    response=RecordOut,
    errors=(403, 404),
)
def get_record(patient_id):
    return revisions.read(current_user, patient_id)


@endpoint(
    "GET",
    "/patients/<patient_id>/record/<section>",
    summary="One section, with its ETag",
    tag="record",
    action="record.read",
    response=SectionOut,
    errors=(403, 404),
)
def get_section(patient_id, section):
    out = revisions.read_section(current_user, patient_id, section)
    return out, 200, _etag(out)


@endpoint(
    "PUT",
    "/patients/<patient_id>/record/<section>",
    summary="Write a new revision of a section (If-Match required)",
    tag="record",
    action="record.write",
    body=SectionIn,
    response=SectionOut,
    errors=(403, 404, 412, 422, 428),
)
def put_section(patient_id, section, body):
    try:
        out = revisions.write_section(current_user, patient_id, section, body["content"], if_match_version())
    except versioned.Stale as stale:
        # The current section, for the client to merge with: at the top level and under "current".
        current = SectionOut().dump(stale.current)
        stale.extra = {"current": current, **current}
        raise
    return out, 200, _etag(out)


@endpoint(
    "GET",
    "/patients/<patient_id>/record/<section>/versions",
    summary="Every revision of a section, newest first",
    tag="record",
    action="record.history",
    response=SectionVersions,
    errors=(403, 404),
)
def section_versions(patient_id, section):
    return {"items": revisions.versions(current_user, patient_id, section)}
