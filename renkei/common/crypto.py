"""Envelope encryption (docs/ARCHITECTURE.md, "Encryption at rest").

Each patient has a random 256-bit data key (DEK). Values are sealed with
AES-256-GCM under that DEK, with associated data naming exactly where the value
belongs (patient, field or section and revision), so ciphertext copied to another
row does not decrypt. DEKs are stored only wrapped by the master key, which lives
outside the database; the wrapping records the master key's id so the master key
can be rotated by rewrapping DEKs alone. Destroying a DEK crypto-shreds a patient.
"""

import hashlib
import hmac
import json
import os
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class DecryptionError(Exception):
    """Ciphertext failed authentication: wrong key, wrong place, or tampered."""


def key_id(master_key: bytes) -> str:
    """A public fingerprint of a master key (never the key itself)."""
    return hashlib.sha256(b"renkei key id|" + master_key).hexdigest()[:16]


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, aad: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode())


def unseal(key: bytes, blob: bytes, aad: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError(aad.split("|")[0]) from exc


def opener(key: bytes):
    """unseal_json for many values under one key (a chart's readings): the cipher is
    set up once, not per value."""
    cipher = AESGCM(key)

    def open_json(blob: bytes, aad: str):
        try:
            return json.loads(cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode()))
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError(aad.split("|")[0]) from exc

    return open_json


def seal_json(key: bytes, value, aad: str) -> bytes:
    return seal(key, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), aad)


def unseal_json(key: bytes, blob: bytes, aad: str):
    return json.loads(unseal(key, blob, aad))


class Keyring:
    """The master key (and previous ones during a rotation) that wrap data keys."""

    def __init__(self, current: bytes, previous: list[bytes] = ()):
        self.current_id = key_id(current)
        self._keys = {key_id(k): k for k in (current, *previous)}

    def wrap(self, data_key: bytes, owner: str) -> tuple[str, bytes]:
        return self.current_id, seal(self._keys[self.current_id], data_key, f"dek|{owner}")

    def derive(self, info: str) -> list[tuple[str, bytes]]:
        """A 256-bit key for `info` from each master key, the current one first (HKDF):
        keys handed out (a device's outbox key) that need no storage and still open
        what was sealed under a previous master key during a rotation."""
        out = []
        for master in self._keys.values():
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(master)
            out.append((hashlib.sha256(b"renkei derived key id|" + key).hexdigest()[:16], key))
        return out  # the current master key was put first

    def unwrap(self, kid: str, wrapped: bytes, owner: str) -> bytes:
        if kid not in self._keys:
            raise DecryptionError(f"master key {kid} is not configured")
        return unseal(self._keys[kid], wrapped, f"dek|{owner}")


def normalize_name(text: str) -> str:
    """Spelling-insensitive form of a name for the blind index: NFKC, no spaces,
    hiragana folded to katakana (so やまだ and ヤマダ match)."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch for ch in text if not ch.isspace())
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text).lower()


def blind_index(index_key: bytes, text: str) -> str:
    """Keyed hash for exact-match search without storing the plaintext."""
    return hmac.new(index_key, normalize_name(text).encode(), hashlib.sha256).hexdigest()


# Family-name prefix search (docs/ARCHITECTURE.md, "What the name index reveals"): each
# patient has PREFIX_TOKENS keyed hashes, one per prefix of up to FAMILY_PREFIX_MAX
# characters of the family name in kanji and in kana, and padding to that count. The
# prefixes are hashed under a key of their own, derived from the index key, so a
# prefix token never equals a full-name value. A longer query is looked up by its first
# FAMILY_PREFIX_MAX characters and confirmed against the decrypted name.
FAMILY_PREFIX_MAX = 5
PREFIX_TOKENS = 2 * FAMILY_PREFIX_MAX


def family_name(text: str) -> str:
    """The first word of a name as written (山田 花子 → 山田); the whole name if it has no space."""
    words = unicodedata.normalize("NFKC", text or "").split()
    return normalize_name(words[0]) if words else ""


def _prefix_key(index_key: bytes) -> bytes:
    return hmac.new(index_key, b"renkei family-name prefix key", hashlib.sha256).digest()


def prefix_token(index_key: bytes, text: str) -> str:
    """The keyed hash of a typed prefix (its first FAMILY_PREFIX_MAX characters)."""
    typed = normalize_name(text)[:FAMILY_PREFIX_MAX]
    return hmac.new(_prefix_key(index_key), b"prefix|" + typed.encode(), hashlib.sha256).hexdigest()


def prefix_tokens(index_key: bytes, patient_id: str, name: str, kana: str) -> list[str]:
    """The patient's prefix tokens. The padding is derived from the patient id, so
    indexing the same name again writes the same set (nothing tells padding from
    prefixes by what changes)."""
    real = {
        prefix_token(index_key, family[:n])
        for family in (family_name(name), family_name(kana))
        for n in range(1, min(len(family), FAMILY_PREFIX_MAX) + 1)
    }
    padding = (
        hmac.new(_prefix_key(index_key), f"padding|{patient_id}|{i}".encode(), hashlib.sha256).hexdigest()
        for i in range(PREFIX_TOKENS)
    )
    return sorted(real | set(list(padding)[: PREFIX_TOKENS - len(real)]))


def name_matches(typed: str, name: str, kana: str) -> bool:
    """The full name or kana, or a prefix of the family name in either (spelling-insensitive)."""
    q = normalize_name(typed)
    return bool(q) and (
        q in (normalize_name(name), normalize_name(kana))
        or family_name(name).startswith(q)
        or family_name(kana).startswith(q)
    )
