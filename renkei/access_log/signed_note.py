"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, and the tree heads written in
them (c2sp.org/tlog-checkpoint): origin, tree size, base64 root hash, then after a blank
line one signature line per key: "— <key name> <base64(key id || signature)>"."""

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = b"\x01"  # the signature type byte of signed-note
DASH = "\u2014"


class NoteError(ValueError):
    pass


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: bytes) -> bytes:
    """SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def sign(text: str, name: str, key: Ed25519PrivateKey) -> str:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("a note's text ends with one newline and has no blank line")
    signature = key.sign(text.encode())
    blob = base64.b64encode(key_id(name, raw_public(key)) + signature).decode()
    return f"{text}\n{DASH} {name} {blob}\n"


def open_note(note: str, name: str, publics: list[bytes]) -> str:
    """The text of a note signed by `name` with one of `publics`; NoteError otherwise."""
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise NoteError("not a signed note")
    text += "\n"
    known = {key_id(name, p): p for p in publics}
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH or parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        public = known.get(blob[:4])
        if public is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode())
            return text
        except InvalidSignature:
            raise NoteError("the signature does not verify") from None
    raise NoteError("no signature by a known key")


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) of a checkpoint's text."""
    lines = text.split("\n")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError):
        raise NoteError("not a checkpoint") from None
    if size < 0 or len(root) != 32 or not lines[1].isdigit():
        raise NoteError("not a checkpoint")
    return origin, size, root
