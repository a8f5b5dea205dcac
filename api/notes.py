"""The 連絡帳 timeline: posts and replies, search, seen (既読) and 確認 (acknowledged)."""

from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import EscalationRuleIn, EscalationRuleOut, ListQuery, NoteIn, NoteList, NoteOut, NoteSearch
from renkei.notes import notes
from renkei.patients import escalation


@endpoint(
    "POST",
    "/patients/<patient_id>/notes",
    summary="Post to the timeline, or reply to a note",
    tag="timeline",
    action="note.create",
    body=NoteIn,
    response=NoteOut,
    status=201,
    idempotent=True,
    errors=(403, 404, 422),
)
def create_note(patient_id, body):
    return notes.post(
        current_user, patient_id, body["body"], body["category"], body["urgent"], reply_to=body.get("reply_to")
    )


@endpoint(
    "GET",
    "/patients/<patient_id>/notes",
    summary="The timeline, newest first, paginated",
    tag="timeline",
    action="note.list",
    query=ListQuery,
    response=NoteList,
    errors=(403, 404),
)
def list_notes(patient_id, query):
    return notes.timeline(current_user, patient_id, query["limit"], query.get("cursor"))


@endpoint(
    "POST",
    "/patients/<patient_id>/notes/search",
    summary="The notes whose body holds a word, newest first, paginated (the word is never logged)",
    tag="timeline",
    action="note.search",
    body=NoteSearch,
    response=NoteList,
    errors=(403, 404, 422),
)
def search_notes(patient_id, body):
    return notes.search(current_user, patient_id, body["text"], body["limit"], body.get("cursor"))


@endpoint(
    "POST",
    "/patients/<patient_id>/notes/<note_id>/seen",
    summary="The note was shown to me (既読, automatic)",
    tag="timeline",
    action="note.seen",
    status=204,
    errors=(404,),
)
def note_seen(patient_id, note_id):
    notes.seen(current_user, patient_id, note_id)


@endpoint(
    "POST",
    "/patients/<patient_id>/notes/<note_id>/ack",
    summary="Confirm (確認) a note: ends an urgent note's escalation; implies seen",
    tag="timeline",
    action="note.ack",
    status=204,
    idempotent=True,
    errors=(403, 404),
)
def ack_note(patient_id, note_id):
    notes.acknowledge(current_user, patient_id, note_id)


@endpoint(
    "GET",
    "/patients/<patient_id>/escalation",
    summary="How the team escalates urgent notes nobody acknowledged",
    tag="timeline",
    action="escalation.read",
    response=EscalationRuleOut,
    errors=(403, 404),
)
def escalation_rule(patient_id):
    return escalation.rule(current_user, patient_id)


@endpoint(
    "PUT",
    "/patients/<patient_id>/escalation",
    summary="Change the time and call list for escalating urgent notes (those who manage the team)",
    tag="timeline",
    action="escalation.update",
    body=EscalationRuleIn,
    response=EscalationRuleOut,
    errors=(403, 404, 422),
)
def set_escalation_rule(patient_id, body):
    return escalation.set_rule(current_user, patient_id, body)
