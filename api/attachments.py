"""Photos and documents (renkei/attachments/attachments.py): upload as multipart/form-data, list,
download a frame at a time, thumbnails, delete."""

from flask import Response
from flask_login import current_user

from api.pipeline import endpoint
from api.schemas import AttachmentIn, AttachmentList, AttachmentOut, AttachmentQuery
from renkei.attachments import attachments

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "application/pdf": "pdf"}


@endpoint(
    "POST",
    "/patients/<patient_id>/attachments",
    summary="Attach a photo or a PDF (multipart/form-data)",
    tag="attachments",
    action="attachment.create",
    body=AttachmentIn,
    upload=attachments.upload_limit,
    response=AttachmentOut,
    status=201,
    idempotent=True,
    errors=(403, 404, 413, 415),
)
def create_attachment(patient_id, body, upload):
    return attachments.create(current_user, patient_id, upload, **body)


@endpoint(
    "GET",
    "/patients/<patient_id>/attachments",
    summary="Attachments, newest first, paginated",
    tag="attachments",
    action="attachment.list",
    query=AttachmentQuery,
    response=AttachmentList,
    errors=(403, 404),
)
def list_attachments(patient_id, query):
    return attachments.listing(current_user, patient_id, **query)


@endpoint(
    "GET",
    "/patients/<patient_id>/attachments/<attachment_id>",
    summary="The attachment's bytes (photos inline, PDFs as a download)",
    tag="attachments",
    action="attachment.read",
    errors=(403, 404),
)
def get_attachment(patient_id, attachment_id):
    meta, body = attachments.open_part(current_user, patient_id, attachment_id)
    return _bytes(meta, body)


@endpoint(
    "GET",
    "/patients/<patient_id>/attachments/<attachment_id>/thumbnail",
    summary="A small JPEG of a photo",
    tag="attachments",
    action="attachment.thumbnail",
    errors=(403, 404),
)
def get_thumbnail(patient_id, attachment_id):
    meta, body = attachments.open_part(current_user, patient_id, attachment_id, attachments.THUMB)
    return _bytes(meta, body)


@endpoint(
    "DELETE",
    "/patients/<patient_id>/attachments/<attachment_id>",
    summary="Delete an attachment (its author or the care manager); its key is shredded",
    tag="attachments",
    action="attachment.delete",
    status=204,
    errors=(403, 404),
)
def delete_attachment(patient_id, attachment_id):
    attachments.remove(current_user, patient_id, attachment_id)


def _bytes(meta: dict, body) -> Response:
    # Only re-encoded images are shown in the page; a PDF is always saved, never rendered
    # by the browser at our origin. nosniff, no-store and the CSP come with every answer.
    inline = meta["content_type"].startswith("image/")
    name = f"{meta['id']}.{_EXTENSIONS[meta['content_type']]}"
    headers = {
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"',
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }  # opened on its own: inert
    if meta["size"] is not None:
        headers["Content-Length"] = str(meta["size"])
    return Response(body, mimetype=meta["content_type"], headers=headers, direct_passthrough=True)
