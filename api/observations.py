"""Vital signs and other observations, and each patient's alert thresholds."""

from flask import jsonify
from flask_login import current_user

from api.pipeline import endpoint, if_match_version
from api.schemas import (
    ImportIn,
    ImportOut,
    ObservationIn,
    ObservationList,
    ObservationOut,
    ObservationQuery,
    ThresholdsIn,
    ThresholdsOut,
)
from renkei.observations import csv_import, readings, thresholds
from renkei.record.versioned import Stale


def _etag(out: dict) -> dict:
    return {"ETag": f'"{out["version"]}"'}


@endpoint(
    "POST",
    "/patients/<patient_id>/observations",
    summary="Record a reading, or several under items (answered as {items: [...]})",
    tag="observations",
    action="observation.create",
    body=ObservationIn,
    response=ObservationOut,
    status=201,
    idempotent=True,
    errors=(403, 404),
)
def record_observations(patient_id, body):
    many = "items" in body
    saved = readings.record(current_user, patient_id, body["items"] if many else [body], many=many)
    if not many:
        return saved[0]
    resp = jsonify(ObservationList(only=("items",)).dump({"items": saved}))
    resp.status_code = 201
    return resp


@endpoint(
    "GET",
    "/patients/<patient_id>/observations",
    summary="Readings, oldest first, paginated (kind, since, until)",
    tag="observations",
    action="observation.list",
    query=ObservationQuery,
    response=ObservationList,
    errors=(403, 404),
)
def list_observations(patient_id, query):
    return readings.series(
        current_user,
        patient_id,
        query.get("kind"),
        query.get("since"),
        query.get("until"),
        query["limit"],
        query.get("cursor"),
    )


@endpoint(
    "POST",
    "/patients/<patient_id>/observations/import/preview",
    summary="What importing a device's CSV would save: each row, duplicates and refusals (saves nothing)",
    tag="observations",
    action="observation.import_preview",
    body=ImportIn,
    response=ImportOut,
    errors=(403, 404, 413),
)
def preview_import(patient_id, body):
    return csv_import.import_csv(current_user, patient_id, body["csv"], save=False)


@endpoint(
    "POST",
    "/patients/<patient_id>/observations/import",
    summary="Import a device's CSV: new readings saved, duplicates skipped, any refused row refuses all",
    tag="observations",
    action="observation.import",
    body=ImportIn,
    response=ImportOut,
    status=201,
    idempotent=True,
    errors=(403, 404, 413),
)
def import_observations(patient_id, body):
    return csv_import.import_csv(current_user, patient_id, body["csv"], save=True)


@endpoint(
    "POST",
    "/patients/<patient_id>/observations/<observation_id>/entered-in-error",
    summary="Mark a reading 誤入力 (its author, a physician or a nurse): kept, left out of charts and alerts",
    tag="observations",
    action="observation.error",
    response=ObservationOut,
    errors=(403, 404),
)
def mark_entered_in_error(patient_id, observation_id):
    return readings.mark_error(current_user, patient_id, observation_id)


@endpoint(
    "GET",
    "/patients/<patient_id>/observations/thresholds",
    summary="The patient's alert thresholds, with their ETag",
    tag="observations",
    action="thresholds.read",
    response=ThresholdsOut,
    errors=(403, 404),
)
def get_thresholds(patient_id):
    out = thresholds.thresholds(current_user, patient_id)
    return out, 200, _etag(out)


@endpoint(
    "PUT",
    "/patients/<patient_id>/observations/thresholds",
    summary="Set the alert thresholds (physicians and nurses; If-Match required)",
    tag="observations",
    action="thresholds.update",
    body=ThresholdsIn,
    response=ThresholdsOut,
    errors=(403, 404, 412, 422, 428),
)
def put_thresholds(patient_id, body):
    try:
        out = thresholds.set_thresholds(current_user, patient_id, body["thresholds"], if_match_version())
    except Stale as stale:
        current = ThresholdsOut().dump(stale.current)
        stale.extra = {"current": current, **current}
        raise
    return out, 200, _etag(out)
