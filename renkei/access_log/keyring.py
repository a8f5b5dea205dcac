"""The access log's own keys (platform/KEYS.md, "The audit key"). Not derived from the
master key, which rotates, and never stored in the database, so that whoever can write
the database still cannot sign a tree head or forge an entry's MAC.

The key file (RENKEI_AUDIT_KEY_FILE) holds one base64 Ed25519 seed per line; the last
line is the current key, earlier lines are retired keys kept so that old heads and old
entries still verify after a rotation. From each seed come the Ed25519 key that signs
tree heads and the MAC key that seals each entry (docs/ARCHITECTURE.md, "The access
log"); a MAC names its key by the signing key's 4-byte id."""

import base64
import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app

from renkei.access_log import signed_note

MAC_BYTES = 16


class AuditKeys:
    def __init__(self, seeds: list[bytes], origin: str):
        if not seeds:
            raise ValueError("no audit key")
        self.origin = origin  # also the key name in signature lines
        self._signers = [Ed25519PrivateKey.from_private_bytes(s) for s in seeds]
        self.publics = [signed_note.raw_public(k) for k in self._signers]
        ids = [signed_note.key_id(origin, p).hex() for p in self.publics]
        self._mac_keys = {kid: hmac.digest(seed, b"renkei audit leaf mac", "sha256") for kid, seed in zip(ids, seeds)}
        self.current_id = ids[-1]

    @property
    def public_key(self) -> str:
        """The current key as the API publishes it: base64 of the raw 32 bytes."""
        return base64.b64encode(self.publics[-1]).decode()

    def mac(self, text: str) -> str:
        """ "<key id hex><mac hex>" of an entry's text, with the current key."""
        digest = hmac.digest(self._mac_keys[self.current_id], text.encode(), "sha256")[:MAC_BYTES]
        return self.current_id + digest.hex()

    def mac_ok(self, text: str, mac: str | None) -> bool:
        key = self._mac_keys.get((mac or "")[:8])
        return (
            key is not None
            and hmac.compare_digest(  # as bytes: a forged non-ASCII MAC is just wrong
                mac[8:].encode(), hmac.digest(key, text.encode(), "sha256")[:MAC_BYTES].hex().encode()
            )
        )

    def sign(self, text: str) -> str:
        return signed_note.sign(text, self.origin, self._signers[-1])

    def open(self, note: str) -> str:
        return signed_note.open_note(note, self.origin, self.publics)

    def checkpoint(self, size: int, root: bytes) -> str:
        return self.sign(signed_note.checkpoint_text(self.origin, size, root))

    def read_checkpoint(self, note: str, origin: str | None = None) -> tuple[int, bytes]:
        """(size, root) of a checkpoint of `origin` (this log's heads by default) signed
        by one of our keys; NoteError otherwise."""
        found, size, root = signed_note.parse_checkpoint(self.open(note))
        if found != (origin or self.origin):
            raise signed_note.NoteError("another log's checkpoint")
        return size, root

    # An archive anchor (renkei/access_log/archive.py) is a checkpoint of another origin, so
    # a tree head handed to an auditor can never be planted as an anchor.
    @property
    def anchor_origin(self) -> str:
        return self.origin + " archive anchor"

    def anchor(self, size: int, root: bytes) -> str:
        return self.sign(signed_note.checkpoint_text(self.anchor_origin, size, root))

    def read_anchor(self, note: str) -> tuple[int, bytes]:
        return self.read_checkpoint(note, self.anchor_origin)


def keys() -> AuditKeys:
    return current_app.extensions["renkei.audit_keys"]
