"""Attachments (issue 15), in process against PostgreSQL with normal durability:

  * upload and download of a 10 MB photo-sized file (a PDF: stored as sent) and of a
    12-megapixel photo, against writing and reading the same bytes as a plain file in
    the same run;
  * Python's memory peak (tracemalloc) while 20 MB and 100 MB PDFs are uploaded and
    downloaded, the size limit raised for the run (goal: independent of the file size);
  * the time to re-encode a 12-megapixel JPEG and HEIC with its thumbnail, against only
    decoding it.

The body reaches the app as a WSGI server would hand it over (a stream read in pieces),
so the client's own copy of the file is not counted.
Usage:  python bench/attachments.py"""

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import data
from common import ROOT, app_context, environment, postgres_and_redis, save

MB = 1024 * 1024
BOUNDARY = "renkeibench"


def multipart_file(payload: bytes | None, size: int, name: str, mimetype: str) -> str:
    """A multipart/form-data body on disk: one `file` part of `payload` (or a PDF of `size`)."""
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".body")
    f.write(
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {mimetype}\r\n\r\n"
        ).encode()
    )
    if payload is not None:
        f.write(payload)
    else:
        f.write(b"%PDF-1.7\n")
        block = os.urandom(MB)
        for _ in range(size // MB):
            f.write(block)
    f.write(f"\r\n--{BOUNDARY}--\r\n".encode())
    f.close()
    return f.name


def call(app, method, path, token, body_file=None):
    """(status, bytes received) — the body streamed in from a file, the answer counted
    as it streams out."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, method=method, headers={"Authorization": "Bearer " + token}).get_environ()
    stream = open(body_file, "rb") if body_file else None
    if stream:
        environ.update(
            {
                "wsgi.input": stream,
                "CONTENT_LENGTH": str(os.path.getsize(body_file)),
                "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
            }
        )
    status, received, answer = [], 0, b""
    out = app(environ, lambda s, headers, exc_info=None: status.append(s))
    for chunk in out:
        received += len(chunk)
        if received < 4096:
            answer += chunk
    if hasattr(out, "close"):
        out.close()
    if stream:
        stream.close()
    return status[0], received, answer


def timed(fn, rounds=3):
    best, result = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def plain_copy(payload_file: str) -> tuple[float, float]:
    """Seconds to write the bytes to a new file (fsync) and to read them back."""
    with open(payload_file, "rb") as f:
        payload = f.read()
    target = tempfile.NamedTemporaryFile(delete=False).name

    def write():
        with open(target, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())

    def read():
        with open(target, "rb") as f:
            while f.read(MB):
                pass

    w, _ = timed(write)
    r, _ = timed(read)
    os.unlink(target)
    return w, r


def photo_12mp(fmt: str) -> bytes:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    noise = Image.frombytes("RGB", (4000, 3000), os.urandom(4000 * 3000 * 3)).resize((1000, 750)).resize((4000, 3000))
    out = io.BytesIO()
    noise.save(out, fmt, quality=95)
    return out.getvalue()


def main():
    results = {}
    os.environ["RENKEI_PG_DURABLE"] = "1"
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(db_url, folder, RENKEI_REDIS_URL=redis_url, RENKEI_ATTACHMENT_MAX_BYTES=110 * MB)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        who = data.people(app, fillers=1)
        pid = data.patients(app, who, 1, mine=1)[0]
        token = who["tokens"]["reader"]
        base = f"/api/v1/patients/{pid}/attachments"

        from renkei.attachments import images

        jpeg, heic = photo_12mp("JPEG"), photo_12mp("HEIF")
        for name, payload, size, mimetype in (
            ("10 MB file (PDF, stored as sent)", None, 10 * MB, "application/pdf"),
            ("12-megapixel photo (JPEG, re-encoded)", jpeg, len(jpeg), "image/jpeg"),
        ):
            body = multipart_file(payload, size, "x", mimetype)
            up, (status, _, answer) = timed(lambda: call(app, "POST", base, token, body))
            assert status.startswith("201"), answer
            aid = json.loads(answer)["id"]
            down, (status, received, _) = timed(lambda: call(app, "GET", f"{base}/{aid}", token))
            assert status.startswith("200")
            w, r = plain_copy(body)
            mb = os.path.getsize(body) / MB
            results[name] = {
                "bytes_sent": os.path.getsize(body),
                "bytes_served": received,
                "upload_s": up,
                "download_s": down,
                "plain_write_s": w,
                "plain_read_s": r,
                "upload_MB_per_s": mb / up,
                "download_MB_per_s": received / MB / down,
                "upload / plain write": up / w,
                "download / plain read": down / r,
            }
            os.unlink(body)
            print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in results[name].items()}, flush=True)

        peaks = {}
        for size in (20, 100):
            body = multipart_file(None, size * MB, "big.pdf", "application/pdf")
            tracemalloc.start()
            status, _, answer = call(app, "POST", base, token, body)
            _, up_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert status.startswith("201"), answer
            aid = json.loads(answer)["id"]
            tracemalloc.start()
            status, received, _ = call(app, "GET", f"{base}/{aid}", token)
            _, down_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            peaks[f"{size} MB"] = {"upload_peak_MB": up_peak / MB, "download_peak_MB": down_peak / MB}
            os.unlink(body)
        peaks["peak at 100 MB / at 20 MB (upload, download)"] = [
            peaks["100 MB"]["upload_peak_MB"] / peaks["20 MB"]["upload_peak_MB"],
            peaks["100 MB"]["download_peak_MB"] / peaks["20 MB"]["download_peak_MB"],
        ]
        results["memory"] = peaks
        print("memory", peaks, flush=True)

        from PIL import Image

        def decode(b):
            with Image.open(io.BytesIO(b)) as img:
                img.load()

        for name, payload, kind in (("12 MP JPEG", jpeg, "jpeg"), ("12 MP HEIC", heic, "heif")):
            only_decode, _ = timed(lambda: decode(payload))
            full, _ = timed(lambda: images.reencode(payload, kind))
            results[f"re-encode + thumbnail, {name}"] = {
                "bytes": len(payload),
                "seconds": full,
                "decode only, seconds": only_decode,
                "ratio to decoding": full / only_decode,
            }
            print(name, results[f"re-encode + thumbnail, {name}"], flush=True)
    save("attachments", results)


if __name__ == "__main__":
    main()
