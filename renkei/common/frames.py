"""Large values sealed a frame at a time (docs/ARCHITECTURE.md, "Attachments").

A byte stream is cut into frames of FRAME bytes, each sealed with AES-256-GCM under
one key, its associated data naming the frame's place — whose stream, which frame,
and whether it is the last — so frames cannot be swapped, reordered, moved to another
stream, or cut off at the end (the new last frame was sealed as "more follows").
Memory holds one frame, however long the stream.

Uploads arrive through `SpoolingRequest`: Werkzeug would write a file part over 500 KB
to a temporary file in plaintext; here every file part goes into a `Spool`, which
seals each frame under a key that lives only in memory before anything reaches the
disk, so a temporary file holds ciphertext only and is gone with the request."""

import hashlib
import tempfile
from typing import Callable, Iterable, Iterator

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from renkei.common import crypto

FRAME = 64 * 1024
SEALED_FRAME = crypto.NONCE_BYTES + FRAME + 16  # nonce, ciphertext, GCM tag

AadFor = Callable[[int, bool], str]  # (frame index, is last) -> associated data


def seal_frames(key: bytes, aad_for: AadFor, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Sealed frames of the bytes in `chunks` (any sizes); an empty stream is one empty
    final frame."""
    buf, index = bytearray(), 0
    for chunk in chunks:
        buf += chunk
        while len(buf) > FRAME:  # strictly more: the last frame is sealed only at the end
            yield crypto.seal(key, bytes(buf[:FRAME]), aad_for(index, False))
            del buf[:FRAME]
            index += 1
    yield crypto.seal(key, bytes(buf), aad_for(index, True))


def open_frames(key: bytes, aad_for: AadFor, sealed: Iterable[bytes], count: int) -> Iterator[bytes]:
    """The plaintext of `count` sealed frames, in order; DecryptionError at the first
    frame that is not the one expected there, or if frames are missing or extra."""
    index = -1
    for index, blob in enumerate(sealed):
        if index >= count:
            raise crypto.DecryptionError("frames beyond the last")
        yield crypto.unseal(key, blob, aad_for(index, index == count - 1))
    if index != count - 1:
        raise crypto.DecryptionError("frames missing")


def _spool_aad(index: int, last: bool) -> str:
    return f"upload-spool|frame={index}|{'last' if last else 'more'}"


class Spool:
    """Where a file part of a multipart upload goes while it arrives: sealed frame by
    frame into an anonymous temporary file under a key held only here. Counts the
    bytes (413 past `limit`) and hashes them (an Idempotency-Key's fingerprint)."""

    def __init__(self, limit: int, filename: str | None = None):
        self.limit, self.filename = limit, filename
        self.size, self.frames, self.closed = 0, 0, False
        self._key = crypto.new_data_key()
        self._file = None  # opened with the first frame: a small file never needs one
        self._buf = bytearray()
        self._sha256 = hashlib.sha256()

    # Werkzeug's form parser writes the part, then seeks to its start.
    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise RequestEntityTooLarge(f"The file is larger than the limit of {self.limit} bytes.")
        self._sha256.update(data)
        self._buf += data
        while len(self._buf) > FRAME:
            self._put(bytes(self._buf[:FRAME]), last=False)
            del self._buf[:FRAME]
        return len(data)

    def seek(self, *_args):
        if not self.closed:  # the part is complete: seal what is left as the last frame
            self._put(bytes(self._buf), last=True)
            self._buf, self.closed = bytearray(), True
        return 0

    def _put(self, plain: bytes, last: bool):
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="renkei-upload-")
        self._file.write(crypto.seal(self._key, plain, _spool_aad(self.frames, last)))
        self.frames += 1

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes again, a frame at a time."""
        self.seek()
        self._file.seek(0)
        sealed = iter(lambda: self._file.read(SEALED_FRAME), b"")
        return open_frames(self._key, _spool_aad, sealed, self.frames)

    def head(self, n: int = 64) -> bytes:
        return next(self.chunks(), b"")[:n]

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def close(self):
        if self._file is not None:
            self._file.close()

    def __getattr__(self, name):  # FileStorage asks its stream for attributes it lacks
        raise AttributeError(name)


class SpoolingRequest(Request):
    """A route that takes files sets `upload_limit` (bytes per file) before the form is
    read, and each file part is spooled sealed (`Spool`); any other route refuses file
    parts (415) rather than keep them anywhere."""

    upload_limit: int | None = None

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        if self.upload_limit is None:
            raise UnsupportedMediaType("This address takes no files.")
        return Spool(self.upload_limit, filename)
