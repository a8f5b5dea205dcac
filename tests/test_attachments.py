"""Photos and documents in the record (issue 15): what a team member uploads is kept
without its location, encrypted frame by frame, shown only to the patient's team, and
never written to a disk in plaintext."""

import io
import os
import re
import tempfile
import threading
import tracemalloc
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from models import Attachment, AttachmentFrame
from renkei.common import crypto, db, frames
from renkei.outreach import events
from renkei.patients import authz
from tests.helpers import Api, build_app, team

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def photo(size=(40, 20), orientation=None, gps=True, fmt="JPEG") -> bytes:
    """A photo as a phone would send it: EXIF with the place it was taken."""
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 2, size[1] // 2))  # a corner to see rotation by
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if orientation:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (35.0, 41.0, 22.5), 3: "E", 4: (139.0, 41.0, 30.1)}
    out = io.BytesIO()
    img.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


def pdf(size: int, canary: bytes = b"CANARY-7f3a") -> bytes:
    body = b"%PDF-1.4\n% " + (canary + b" ") * (size // (len(canary) + 1))
    return body[: size - 6] + b"\n%%EOF"


def upload(api, who, pid, data: bytes, filename="photo.jpg", mimetype="image/jpeg", headers=None, **fields):
    h = {"Authorization": "Bearer " + api.tokens[who]} | (headers or {})
    return api.client.post(
        f"/api/v1/patients/{pid}/attachments",
        headers=h,
        data={"file": (io.BytesIO(data), filename, mimetype), **fields},
        content_type="multipart/form-data",
    )


def has_exif(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        return bool(img.getexif()) or "exif" in img.info or b"Exif\x00\x00" in data


def test_a_photo_is_kept_upright_and_without_its_location(api):
    pid = team(api)
    original = photo(size=(40, 20), orientation=6)  # taken with the tablet turned: shown rotated
    assert has_exif(original) and Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    r = upload(api, "doc", pid, original, caption="仙骨部 2cm", series="仙骨部褥瘡")
    assert r.status_code == 201, r.json
    a = r.json
    assert (a["content_type"], a["width"], a["height"]) == ("image/jpeg", 20, 40)  # upright
    assert (a["caption"], a["series"], a["created_by_name"], a["thumbnail"]) == (
        "仙骨部 2cm",
        "仙骨部褥瘡",
        "DOC",
        True,
    )

    served = api.call("pharm", "GET", f"/api/v1/patients/{pid}/attachments/{a['id']}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.headers["Content-Disposition"].startswith("inline")
    assert served.headers["X-Content-Type-Options"] == "nosniff" and served.headers["Cache-Control"] == "no-store"
    assert len(served.data) == a["size"] and served.data != original
    assert not has_exif(served.data)
    with Image.open(io.BytesIO(served.data)) as img:
        assert img.size == (20, 40)
        assert not img.info.get("icc_profile") and not img.info.get("comment")
    thumb = api.call("cm", "GET", f"/api/v1/patients/{pid}/attachments/{a['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg" and not has_exif(thumb.data)

    # The team hears of it with identifiers only.
    with api.app.app_context():
        heard = [p for name, p in events.events_since(api.users["pharm"]["id"], 0) if name == "attachment.created"]
    assert heard and set(heard[0]) == {"patient_id", "attachment_id", "note_id", "section", "actor_id", "at", "seq"}
    assert heard[0]["attachment_id"] == a["id"]

    # What the database holds is ciphertext: not the photo, not its EXIF, not the caption.
    with api.app.app_context():
        stored = b"".join(db.session.execute(select(AttachmentFrame.data)).scalars())
        row = db.session.get(Attachment, a["id"])
        assert b"Exif" not in stored and b"PhoneMaker" not in stored and served.data[:64] not in stored
        assert "仙骨".encode() not in (row.caption_ct or b"") + (row.series_ct or b"")


@pytest.mark.parametrize("fmt, stored", [("PNG", "image/png"), ("WEBP", "image/webp"), ("HEIF", "image/jpeg")])
def test_png_webp_and_an_ipads_heic_are_stored_reencoded(sqlite_api, fmt, stored):
    api = sqlite_api
    pid = team(api)
    r = upload(api, "doc", pid, photo(fmt=fmt), filename="IMG_0001." + fmt.lower())
    assert r.status_code == 201, r.json
    assert (r.json["content_type"], r.json["width"], r.json["height"]) == (stored, 40, 20)
    served = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{r.json['id']}")
    assert served.mimetype == stored and not has_exif(served.data)


def test_the_type_is_decided_from_the_bytes(sqlite_api):
    api = sqlite_api
    pid = team(api)
    html = b"<!doctype html><script>alert(document.cookie)</script>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    for data, name in ((html, "photo.jpg"), (svg, "wound.jpg"), (b"GIF89a....", "x.gif"), (b"", "empty.jpg")):
        r = upload(api, "doc", pid, data, filename=name, mimetype="image/jpeg")
        assert r.status_code == 415 and r.mimetype == "application/problem+json", (name, r.status_code)
    broken = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10
    assert upload(api, "doc", pid, broken).status_code == 415
    bomb = io.BytesIO()  # 70 megapixels in a few kilobytes
    Image.new("1", (10_000, 7_000)).save(bomb, "PNG")
    r = upload(api, "doc", pid, bomb.getvalue(), filename="bomb.png")
    assert len(bomb.getvalue()) < 100_000 and r.status_code == 413 and r.json["type"] == "/problems/image-too-large"

    doc = upload(api, "doc", pid, pdf(10_000), filename="紹介状.png", mimetype="image/png")
    assert doc.status_code == 201 and doc.json["content_type"] == "application/pdf"
    assert doc.json["width"] is None and doc.json["thumbnail"] is False
    served = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{doc.json['id']}")
    assert served.mimetype == "application/pdf" and served.data == pdf(10_000)
    assert served.headers["Content-Disposition"] == (
        f"attachment; filename=\"{doc.json['id']}.pdf\"; filename*=UTF-8''{quote('紹介状.pdf')}"
    )  # saved as what it is, under the name it was chosen by
    assert api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{doc.json['id']}/thumbnail").status_code == 404
    listed = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments").json["items"]
    assert [x["id"] for x in listed] == [doc.json["id"]]  # nothing refused was kept


def test_only_the_team_sees_attachments_and_break_glass_only_looks(api):
    pid = team(api)
    aid = upload(api, "doc", pid, photo()).json["id"]
    api.user("outsider", "nurse")
    base = f"/api/v1/patients/{pid}/attachments"
    for method, path in (
        ("GET", base),
        ("GET", f"{base}/{aid}"),
        ("GET", f"{base}/{aid}/thumbnail"),
        ("DELETE", f"{base}/{aid}"),
    ):
        r = api.call("outsider", method, path)
        assert r.status_code == 404 and b"attachment" not in r.data.lower(), (method, path)
    assert upload(api, "outsider", pid, photo()).status_code == 404

    # Break-glass: an emergency physician may look, never add.
    api.user("er", "physician")
    r = api.call(
        "er", "POST", f"/api/v1/patients/{pid}/breakglass", {"reason": "夜間の急変で往診", "otp": api.otp("er")}
    )
    assert r.status_code == 201, r.json
    assert api.call("er", "GET", f"{base}/{aid}").status_code == 200
    assert api.call("er", "GET", base).json["items"][0]["id"] == aid
    assert upload(api, "er", pid, photo()).status_code == 403
    assert api.call("er", "DELETE", f"{base}/{aid}").status_code == 403


def test_a_section_takes_attachments_from_its_writers_only(sqlite_api):
    api = sqlite_api
    pid = team(api)
    assert authz.may_write("pharmacist", "diseases_medications") and not authz.may_write("pharmacist", "wishes")
    r = upload(api, "pharm", pid, photo(), section="diseases_medications", caption="お薬カレンダー")
    assert r.status_code == 201 and r.json["section"] == "diseases_medications"
    r = upload(api, "pharm", pid, photo(), section="wishes")
    assert r.status_code == 403 and r.json["type"] == "/problems/section-not-writable"
    r = upload(api, "pharm", pid, photo(), section="no_such_section")
    assert r.status_code == 422 and "section" in r.json["errors"]

    note = api.call("cm", "POST", f"/api/v1/patients/{pid}/notes", {"body": "褥瘡の写真です", "category": "other"}).json
    assert upload(api, "cm", pid, photo(), note_id=note["id"]).status_code == 201
    assert upload(api, "doc", pid, photo(), note_id=note["id"]).status_code == 403  # not the note's author
    r = upload(api, "cm", pid, photo(), note_id="no-such-note")
    assert r.status_code == 422 and "note_id" in r.json["errors"]
    r = upload(api, "cm", pid, photo(), note_id=note["id"], section="adl")
    assert r.status_code == 422 and "section" in r.json["errors"]
    r = upload(api, "cm", pid, photo(), note_id="", section="adl")  # found by the fuzzer: was a 500
    assert r.status_code == 422 and "note_id" in r.json["errors"]
    r = upload(api, "cm", pid, photo(), colour="red")
    assert r.status_code == 422 and "colour" in r.json["errors"]
    r = api.call("cm", "POST", f"/api/v1/patients/{pid}/attachments", {"file": "not a file"})
    assert r.status_code == 422 and "file" in r.json["errors"]

    items = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments?note_id={note['id']}").json["items"]
    assert len(items) == 1 and items[0]["note_id"] == note["id"]
    items = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments?section=diseases_medications").json["items"]
    assert [i["caption"] for i in items] == ["お薬カレンダー"]


def test_a_photo_series_groups_one_body_site_and_pages(sqlite_api):
    api = sqlite_api
    pid = team(api)
    ids = [
        upload(api, "doc", pid, photo(), series=s).json["id"]
        for s in ("仙骨部褥瘡", "仙骨部褥瘡 ", "踵", "ｾﾝｺﾂ", "センコツ")
    ]
    base = f"/api/v1/patients/{pid}/attachments"
    same = api.call("doc", "GET", base + "?series=仙骨部褥瘡").json["items"]
    assert {i["id"] for i in same} == set(ids[:2])
    assert {i["id"] for i in api.call("doc", "GET", base + "?series=センコツ").json["items"]} == set(ids[3:])
    seen, cursor = [], None
    while True:
        page = api.call("doc", "GET", base + "?limit=2" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


def test_deleting_shreds_the_key_and_only_the_author_or_care_manager_may(sqlite_api):
    api = sqlite_api
    pid = team(api)
    mine = upload(api, "doc", pid, photo()).json["id"]
    other = upload(api, "doc", pid, photo()).json["id"]
    base = f"/api/v1/patients/{pid}/attachments"
    assert api.call("pharm", "DELETE", f"{base}/{mine}").status_code == 403
    assert api.call("doc", "DELETE", f"{base}/{mine}").status_code == 204
    assert api.call("cm", "DELETE", f"{base}/{other}").status_code == 204  # the care manager tidies up
    for aid in (mine, other):
        assert api.call("doc", "GET", f"{base}/{aid}").status_code == 404
        assert api.call("doc", "DELETE", f"{base}/{aid}").status_code == 404
    assert api.call("doc", "GET", base).json["items"] == []
    with api.app.app_context():
        rows = db.session.execute(select(Attachment)).scalars().all()
        assert all(r.wrapped_key is None and r.deleted_at is not None for r in rows)
        assert db.session.execute(select(AttachmentFrame)).first() is None
    log = api.call("admin", "GET", f"/api/v1/audit?patient_id={pid}&action=attachment.delete").json["items"]
    assert sorted(e["outcome"] for e in log) == ["denied", "not_found", "not_found", "ok", "ok"]


def test_every_upload_view_and_download_leaves_one_audit_entry(sqlite_api):
    api = sqlite_api
    pid = team(api)
    aid = upload(api, "doc", pid, photo()).json["id"]
    base = f"/api/v1/patients/{pid}/attachments"
    api.call("cm", "GET", f"{base}/{aid}")
    api.call("cm", "GET", f"{base}/{aid}/thumbnail")
    api.call("cm", "GET", base)
    log = api.call("admin", "GET", f"/api/v1/audit?patient_id={pid}").json["items"]
    mine = [(e["action"], e["detail"]) for e in log if e["action"].startswith("attachment.")]
    assert sorted(mine) == sorted(
        [
            ("attachment.create", f"attachment={aid}"),
            ("attachment.read", f"attachment={aid}"),
            ("attachment.thumbnail", f"attachment={aid} thumbnail"),
            ("attachment.list", None),
        ]
    )


def test_crypto_shredding_the_patient_makes_its_attachments_unreadable(sqlite_api):
    api = sqlite_api
    pid = team(api)
    aid = upload(api, "doc", pid, pdf(200_000)).json["id"]
    with api.app.app_context():
        wrapped = db.session.get(Attachment, aid).wrapped_key
    assert api.call("admin", "DELETE", f"/api/v1/patients/{pid}").status_code == 204
    assert api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{aid}").status_code == 404
    with api.app.app_context():
        assert db.session.get(Attachment, aid).wrapped_key is None
        assert db.session.execute(select(AttachmentFrame)).first() is None
    assert wrapped is not None


def _frames_of(app, aid):
    with app.app_context():
        return db.session.execute(
            select(AttachmentFrame.index, AttachmentFrame.data)
            .where(AttachmentFrame.attachment_id == aid, AttachmentFrame.part == "file")
            .order_by(AttachmentFrame.index)
        ).all()


def _set_frame(app, aid, index, data):
    with app.app_context():
        db.session.execute(
            AttachmentFrame.__table__.update()
            .where(AttachmentFrame.attachment_id == aid, AttachmentFrame.part == "file", AttachmentFrame.index == index)
            .values(data=data)
        )
        db.session.commit()


def _download(api, pid, aid):
    """(status, bytes) — a frame found wrong mid-stream breaks the transfer off."""
    try:
        r = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{aid}")
        return r.status_code, r.data
    except crypto.DecryptionError:
        return "broken off", b""


def test_frames_cannot_be_swapped_reordered_moved_or_cut(sqlite_api):
    api = sqlite_api
    pid = team(api)
    content = pdf(5 * frames.FRAME + 1000)
    a = upload(api, "doc", pid, content).json["id"]
    b = upload(api, "doc", pid, content).json["id"]
    fa, fb = _frames_of(api.app, a), _frames_of(api.app, b)
    assert len(fa) == 6 and _download(api, pid, a) == (200, content)

    _set_frame(api.app, a, 0, fa[1].data)  # the second frame first
    _set_frame(api.app, a, 1, fa[0].data)
    assert _download(api, pid, a)[0] == 500  # before any byte is sent
    _set_frame(api.app, a, 0, fa[0].data)
    _set_frame(api.app, a, 1, fa[1].data)
    assert _download(api, pid, a) == (200, content)

    _set_frame(api.app, a, 3, fa[4].data)  # reordered in the middle
    assert _download(api, pid, a)[0] == "broken off"
    _set_frame(api.app, a, 3, fa[3].data)
    _set_frame(api.app, a, 2, fb[2].data)  # the same place in another attachment
    assert _download(api, pid, a)[0] == "broken off"
    _set_frame(api.app, a, 2, fa[2].data)

    with api.app.app_context():  # cut off the end, and the count with it
        db.session.execute(
            AttachmentFrame.__table__.delete().where(AttachmentFrame.attachment_id == a, AttachmentFrame.index == 5)
        )
        db.session.execute(Attachment.__table__.update().where(Attachment.id == a).values(frames=5))
        db.session.commit()
    assert _download(api, pid, a)[0] == "broken off"  # frame 4 was sealed as "more follows"
    assert _download(api, pid, b) == (200, content)


def test_an_upload_never_writes_plaintext_to_disk(sqlite_api, tmp_path, monkeypatch):
    """Werkzeug would spool a file part over 500 KB to a temporary file in plaintext."""
    api = sqlite_api
    pid = team(api)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    kept = []

    def visible_temporary_file(**kw):  # the spool's file, kept to be read afterwards
        f = tempfile.NamedTemporaryFile(dir=spool_dir, delete=False)
        kept.append(f.name)
        return f

    monkeypatch.setattr(frames.tempfile, "TemporaryFile", visible_temporary_file)
    canary = b"CANARY-9d41e2"
    content = pdf(2_000_000, canary)
    r = upload(
        api, "doc", pid, content, filename="退院サマリー.pdf", mimetype="application/pdf", caption="退院時サマリー"
    )
    assert r.status_code == 201
    assert kept, "the upload went through the sealed spool"
    written = [p for p in spool_dir.rglob("*") if p.is_file()]
    assert written and all(canary not in p.read_bytes() for p in written)
    assert sum(p.stat().st_size for p in written) > 2_000_000  # the whole file went through, sealed
    db_file = Path(api.app.config["RENKEI"].database_url.removeprefix("sqlite:///"))
    for path in (db_file, Path(str(db_file) + "-wal")):
        if path.exists():
            assert canary not in path.read_bytes() and "退院時".encode() not in path.read_bytes()
    assert api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{r.json['id']}").data == content


def test_an_oversized_upload_is_refused_without_reading_it_whole(sqlite_url, tmp_path):
    app = build_app(sqlite_url, attachment_max_bytes=256 * 1024, attachment_patient_quota_bytes=600 * 1024)
    api = Api(app)
    pid = team(api)
    r = upload(api, "doc", pid, pdf(300 * 1024))
    assert r.status_code == 413 and r.mimetype == "application/problem+json"

    # A client streaming 40 MB with no Content-Length is cut off at the limit: memory
    # stays flat, nothing is stored.
    boundary = "renkeiboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()

    class Endless(io.RawIOBase):
        sent = 0

        def readable(self):
            return True

        def readinto(self, b):
            chunk = head if self.sent == 0 else b"%PDF-" + b"x" * (len(b) - 5)
            n = min(len(b), len(chunk))
            b[:n] = chunk[:n]
            self.sent += n
            return n if self.sent < 40_000_000 else 0

    stream = Endless()
    environ = EnvironBuilder(
        path=f"/api/v1/patients/{pid}/attachments",
        method="POST",
        headers={
            "Authorization": "Bearer " + api.tokens["doc"],
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)  # chunked: the server says where the body ends
    environ.update(
        {
            "wsgi.input": stream,
            "wsgi.input_terminated": True,
            "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        }
    )
    status = []
    tracemalloc.start()
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert status[0].startswith("413") and b"larger than the limit of 262144 bytes" in body
    assert stream.sent < 2_000_000 and peak < 8_000_000, (stream.sent, peak)

    # The patient's total: two of 250 KB fit in 600 KB, a third does not.
    assert upload(api, "doc", pid, pdf(250 * 1024)).status_code == 201
    assert upload(api, "doc", pid, pdf(250 * 1024)).status_code == 201
    r = upload(api, "doc", pid, pdf(250 * 1024))
    assert r.status_code == 413 and r.json["type"] == "/problems/attachment-quota"
    assert len(api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments").json["items"]) == 2
    app.extensions["renkei.engine"].dispose()


def test_a_retried_upload_is_stored_once(sqlite_api):
    api = sqlite_api
    pid = team(api)
    data = photo()
    first = upload(api, "doc", pid, data, headers={"Idempotency-Key": "upload-1"}, caption="a")
    again = upload(api, "doc", pid, data, headers={"Idempotency-Key": "upload-1"}, caption="a")
    assert first.status_code == 201 and again.status_code == 201 and again.json["id"] == first.json["id"]
    other = upload(api, "doc", pid, photo(size=(30, 30)), headers={"Idempotency-Key": "upload-1"}, caption="a")
    assert other.status_code == 422  # the same key with another file
    assert len(api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments").json["items"]) == 1


def test_sealed_frames_round_trip_with_flat_memory():
    key = crypto.new_data_key()
    aad = lambda i, last: f"t|{i}|{last}"  # noqa: E731
    for size in (0, 1, frames.FRAME - 1, frames.FRAME, frames.FRAME + 1, 3 * frames.FRAME):
        data = os.urandom(size)
        sealed = list(frames.seal_frames(key, aad, [data[i : i + 1000] for i in range(0, size, 1000)] or [b""]))
        assert len(sealed) == max(1, -(-size // frames.FRAME))
        assert b"".join(frames.open_frames(key, aad, sealed, len(sealed))) == data
        with pytest.raises(crypto.DecryptionError):
            list(frames.open_frames(key, aad, sealed + sealed[-1:], len(sealed) + 1))

    def chunks():  # 50 MB, never all at once
        for _ in range(800):
            yield b"z" * 65536

    tracemalloc.start()
    total = sum(len(b) for b in frames.open_frames(key, aad, frames.seal_frames(key, aad, chunks()), 800))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 800 * 65536 and peak < 8_000_000  # a 50 MB stream, a few frames in memory


def test_the_timeline_shows_thumbnails_and_the_emergency_sheet_never_photos(sqlite_api):
    api = sqlite_api
    pid = team(api)
    note = api.call(
        "cm", "POST", f"/api/v1/patients/{pid}/notes", {"body": "右踵の発赤", "category": "observation"}
    ).json
    aid = upload(api, "cm", pid, photo(), note_id=note["id"], series="右踵").json["id"]
    doc = upload(api, "cm", pid, pdf(5000), note_id=note["id"], caption="紹介状").json["id"]
    page = api.web("doc").get(f"/patients/{pid}").get_data(as_text=True)
    assert f"/api/v1/patients/{pid}/attachments/{aid}/thumbnail" in page
    assert f'href="/api/v1/patients/{pid}/attachments/{doc}" download' in page
    photos_page = api.web("doc").get(f"/patients/{pid}/photos").get_data(as_text=True)
    assert "右踵" in photos_page and f"attachments/{aid}/thumbnail" in photos_page
    sheet = api.web("doc").get(f"/patients/{pid}/sheet").get_data(as_text=True)
    assert "/attachments/" not in sheet
    assert all(
        src.startswith("data:image/svg") for src in re.findall(r'<img[^>]*\bsrc="([^"]*)"', sheet)
    )  # the QR code only


def test_an_upload_holds_no_database_work_while_its_bytes_arrive(sqlite_api):
    """A slow tablet sending a photo must not stop the team: halfway through the upload
    another person's note is saved at once (SQLite allows one writer: an upload holding
    a transaction would make that note wait, then fail)."""
    api = sqlite_api
    pid = team(api)
    boundary = "slowtablet"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="scan.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + pdf(600_000)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    seen = {}

    class Slow(io.RawIOBase):
        sent = 0

        def readable(self):
            return True

        def readinto(self, b):
            if self.sent > 300_000 and not seen:  # halfway: someone else writes, from another thread

                def post():
                    seen["note"] = api.call(
                        "pharm",
                        "POST",
                        f"/api/v1/patients/{pid}/notes",
                        {"body": "残薬を確認しました", "category": "medication"},
                    ).status_code

                seen["thread"] = threading.Thread(target=post, daemon=True)
                seen["thread"].start()
                seen["thread"].join(10)
            n = min(len(b), 16384, len(body) - self.sent)
            b[:n] = body[self.sent : self.sent + n]
            self.sent += n
            return n

    environ = EnvironBuilder(
        path=f"/api/v1/patients/{pid}/attachments",
        method="POST",
        headers={
            "Authorization": "Bearer " + api.tokens["doc"],
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    ).get_environ()
    environ.update(
        {
            "wsgi.input": Slow(),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        }
    )
    status = []
    answer = b"".join(api.app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("201") and seen.get("note") == 201, (status, answer, seen)


def test_attachments_wait_for_the_patients_consent(sqlite_api):
    api = sqlite_api
    api.user("cm", "care_manager")
    api.user("ns", "nurse")
    pid = api.patient("cm", consent=False)
    api.join(pid, "ns", "nurse", by="cm")
    r = upload(api, "ns", pid, photo())
    assert r.status_code == 403 and r.json["type"] == "/problems/consent-missing"
    assert api.call("ns", "GET", f"/api/v1/patients/{pid}/attachments").status_code == 403


def test_a_browser_session_uploads_like_a_token_does(sqlite_api):
    """From the page (session cookie and CSRF header) the same limits hold: a 3 MB scan
    is taken (not refused by the 1 MB limit of JSON bodies), a forged request is not."""
    api = sqlite_api
    pid = team(api)
    browser = api.web("doc")
    page = browser.get(f"/patients/{pid}").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    scan = pdf(3_000_000)
    form = {"file": (io.BytesIO(scan), "scan.pdf", "application/pdf"), "caption": "退院サマリー"}
    r = browser.post(
        f"/api/v1/patients/{pid}/attachments",
        data=form,
        content_type="multipart/form-data",
        headers={"X-CSRFToken": token},
    )
    assert r.status_code == 201, r.json
    assert browser.get(f"/api/v1/patients/{pid}/attachments/{r.json['id']}").data == scan
    forged = browser.post(
        f"/api/v1/patients/{pid}/attachments",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(scan), "scan.pdf", "application/pdf")},
    )
    assert forged.status_code == 400 and "CSRF" in forged.json["detail"]


def test_file_parts_are_refused_where_no_file_is_expected(sqlite_api, tmp_path, monkeypatch):
    api = sqlite_api
    pid = team(api)
    opened = []
    real = tempfile.TemporaryFile
    monkeypatch.setattr(frames.tempfile, "TemporaryFile", lambda **kw: opened.append(1) or real(**kw))
    for path, status in ((f"/api/v1/patients/{pid}/notes", 400), ("/login", 415)):  # a JSON route never parses it
        many = {f"f{i}": (io.BytesIO(b"x"), f"{i}.jpg", "image/jpeg") for i in range(50)}
        r = api.client.post(
            path,
            data=many,
            content_type="multipart/form-data",
            headers={"Authorization": "Bearer " + api.tokens["doc"]},
        )
        assert r.status_code == status, (path, r.status_code)
    r = upload(api, "doc", pid, photo(), **{f"extra{i}": "x" for i in range(10)})
    assert r.status_code == 413  # an upload has a file and a few fields, not hundreds of parts
    assert opened == []  # no temporary file for any of it


def test_a_palette_png_keeps_its_transparency(sqlite_api):
    api = sqlite_api
    pid = team(api)
    img = Image.new("P", (20, 20), 0)
    img.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    img.paste(1, (5, 5, 15, 15))
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    r = upload(api, "doc", pid, out.getvalue(), filename="marker.png")
    assert r.status_code == 201 and r.json["content_type"] == "image/png"
    served = Image.open(io.BytesIO(api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{r.json['id']}").data))
    assert served.mode == "RGBA" and served.getpixel((0, 0))[3] == 0 and served.getpixel((10, 10)) == (200, 0, 0, 255)


def test_concurrent_uploads_cannot_pass_the_patients_quota(database_url):
    """Counted one after the other: two 200 KB uploads at once against 300 KB left."""
    app = build_app(database_url, attachment_patient_quota_bytes=300_000)
    api = Api(app)
    pid = team(api)
    answers = []

    def send():
        client = app.test_client()
        answers.append(
            client.post(
                f"/api/v1/patients/{pid}/attachments",
                content_type="multipart/form-data",
                headers={"Authorization": "Bearer " + api.tokens["doc"]},
                data={"file": (io.BytesIO(pdf(200_000)), "a.pdf", "application/pdf")},
            ).status_code
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(answers) == [201, 413]
    assert len(api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments").json["items"]) == 1
    app.extensions["renkei.engine"].dispose()


def test_a_download_needs_one_database_connection(database_url):
    """A gallery of thumbnails loads at once: each download holds at most one of the
    worker's pooled connections at a time (it gave 503s when it held two)."""
    app = build_app(database_url, db_pool_size=1, db_pool_timeout=2)
    api = Api(app)
    pid = team(api)
    aid = upload(api, "doc", pid, pdf(3 * frames.FRAME * 16)).json["id"]  # three batches of frames
    r = api.call("doc", "GET", f"/api/v1/patients/{pid}/attachments/{aid}")
    assert r.status_code == 200 and len(r.data) == 3 * frames.FRAME * 16
    app.extensions["renkei.engine"].dispose()


def test_a_pdf_keeps_its_name_sealed_and_downloads_under_it(api):
    """Issue 31: 訪問看護報告書.pdf showed as 「PDF」 and downloaded as a UUID."""
    from sqlalchemy import text

    from renkei.common import db

    pid = team(api)
    r = upload(api, "doc", pid, pdf(2000), filename="訪問看護報告書.pdf", mimetype="application/pdf")
    assert r.status_code == 201 and r.json["name"] == "訪問看護報告書.pdf"
    listed = api.call("pharm", "GET", f"/api/v1/patients/{pid}/attachments").json["items"][0]
    assert listed["name"] == "訪問看護報告書.pdf"
    served = api.call("pharm", "GET", f"/api/v1/patients/{pid}/attachments/{r.json['id']}")
    disposition = served.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{quote('訪問看護報告書.pdf')}" in disposition
    assert 'filename="' in disposition and disposition.isascii()  # an ASCII name for old clients too
    # a path from Windows and control characters are not part of a name
    r = upload(api, "doc", pid, pdf(2000), filename="C:\\Users\\ns\\報告\x07書.pdf", mimetype="application/pdf")
    assert r.json["name"] == "報告書.pdf"
    with api.app.app_context():  # and the name is not readable in the database
        stored = db.session.execute(text("SELECT name_ct FROM attachments")).scalars().all()
    assert stored and not any("報告".encode() in bytes(s) for s in stored if s)
