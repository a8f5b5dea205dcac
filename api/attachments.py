"""Photos and documents (renkei/attachments/attachments.py): upload as multipart/form-data, list,
download a frame at a time, thumbnails, delete."""

from urllib.parse import quote

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


def _named_as(meta: dict) -> str:
    """The chosen name with the extension of what is served (紹介状.png that is a PDF is
    saved as 紹介状.pdf; a HEIC photo, stored as JPEG, as .jpg)."""
    stem, dot, suffix = meta["name"].rpartition(".")
    right = _EXTENSIONS[meta["content_type"]]
    if dot and suffix.lower() in (right, "jpeg" if right == "jpg" else right):
        return meta["name"]
    return f"{stem if dot and stem else meta['name']}.{right}"


def _bytes(meta: dict, body) -> Response:
    # Only re-encoded images are shown in the page; a PDF is always saved, never rendered
    # by the browser at our origin. nosniff, no-store and the CSP come with every answer.
    inline = meta["content_type"].startswith("image/")
    fallback = f"{meta['id']}.{_EXTENSIONS[meta['content_type']]}"
    # RFC 6266 / 5987: an ASCII name for old clients, the chosen one (訪問看護報告書.pdf) for the rest
    chosen = f"; filename*=UTF-8''{quote(_named_as(meta), safe='')}" if meta.get("name") else ""
    headers = {
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{fallback}"{chosen}',
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }  # opened on its own: inert
    if meta["size"] is not None:
        headers["Content-Length"] = str(meta["size"])
    return Response(body, mimetype=meta["content_type"], headers=headers, direct_passthrough=True)
