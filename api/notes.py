"""The 連絡帳 timeline: short posts, urgent flags, acknowledgements (既読)."""
from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import ListQuery, NoteIn, NoteList, NoteOut
from renkei import notes


@endpoint("POST", "/patients/<patient_id>/notes", summary="Post to the timeline",
          tag="timeline", action="note.create", body=NoteIn, response=NoteOut, status=201, idempotent=True,
          errors=(403, 404))
def create_note(patient_id, body):
    return notes.post(current_user, patient_id, body["body"], body["category"], body["urgent"])


@endpoint("GET", "/patients/<patient_id>/notes", summary="The timeline, newest first, paginated",
          tag="timeline", action="note.list", query=ListQuery, response=NoteList,
          errors=(403, 404))
def list_notes(patient_id, query):
    return notes.timeline(current_user, patient_id, query["limit"], query.get("cursor"))


@endpoint("POST", "/patients/<patient_id>/notes/<note_id>/ack",
          summary="Acknowledge (既読) a note", tag="timeline", action="note.ack", status=204, idempotent=True,
          errors=(403, 404))
def ack_note(patient_id, note_id):
    notes.acknowledge(current_user, patient_id, note_id)
