"""Retrying a creating request safely (docs/API.md, "Retrying safely: Idempotency-Key").

A client that did not hear the answer to a POST sends it again with the same
`Idempotency-Key`. The first request *claims* the key in a short transaction of its own
before it runs; its answer is *kept* in the same transaction as the change it made, so
either both commit or neither does. A repeat from the same person within 24 hours then
gets the kept answer and creates nothing; a repeat with a different body is 422; a
repeat while the first still runs is 409. Answers that are not kept: 4xx (the failed
request changed nothing, so running it again is safe) and 5xx. Kept answers can hold
clinical text, so they are sealed under the patient's key and re-checked against the
person's access when replayed (api/pipeline.py)."""

import json
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from models import IdempotentRequest, Patient, utcnow
from renkei.common import crypto, db, vault
from renkei.common.problems import Problem

HEADER = "Idempotency-Key"
LIFETIME = timedelta(hours=24)
# A claim whose request never finished (its process was killed, or the database went
# away before the claim could be freed) may be taken over after this. A request still
# running when that happens is fenced off: its answer is not kept and its change rolls
# back (`keep`), so two requests never both create. Requests wait at most 10 s for a
# connection and 2 s for a lock (renkei/common/db.py), so 15 s is far beyond a live one.
ABANDONED = timedelta(seconds=15)
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')  # an RFC 8941 string, quoted or not
KEPT_HEADERS = ("Content-Type", "ETag", "Location")


@dataclass
class Kept:
    """The answer kept for a repeat; the door re-checks the person's access to its patient
    before it opens the answer (`answer`)."""

    row: IdempotentRequest

    @property
    def patient_id(self) -> str | None:
        return self.row.patient_id

    @property
    def status(self) -> int:
        return self.row.status

    def answer(self) -> dict:
        row = self.row
        return crypto.unseal_json(
            _key(row.patient_id), row.answer_ct, vault.answer_aad(row.patient_id, row.user_id, row.key_digest)
        )


@dataclass
class Claim:
    user_id: str
    key_digest: str
    claimed_at: object


def key_from(headers) -> str | None:
    value = headers.get(HEADER)
    if value is None:
        return None
    found = _KEY.match(value.strip())
    if not found:
        raise Problem(
            400,
            f"{HEADER} must be 1 to 255 visible ASCII characters.",
            errors={HEADER: ["1 to 255 visible ASCII characters, without quotes inside."]},
        )
    return found.group(1)


def claim(user, key: str, method: str, path: str, body: dict) -> Claim | Kept:
    """Claim `key` for this request (committed at once), or answer a repeat: the kept
    answer, 409 while the first still runs, 422 for a different request."""
    digest = vault.keyed_digest("idempotency", key)
    fingerprint = vault.keyed_digest("idempotency", json.dumps([method, path, body], sort_keys=True, default=str))
    now = utcnow()
    _expire(now)
    db.session.add(IdempotentRequest(user_id=user.id, key_digest=digest, fingerprint=fingerprint, claimed_at=now))
    try:
        db.session.commit()
        return Claim(user.id, digest, now)
    except IntegrityError:
        db.session.rollback()
    row = db.session.execute(
        select(IdempotentRequest).where(IdempotentRequest.user_id == user.id, IdempotentRequest.key_digest == digest)
    ).scalar_one_or_none()
    if row is None:  # it expired between our insert and this read
        raise _still_running()
    if row.fingerprint != fingerprint:
        raise Problem(
            422,
            f"This {HEADER} was used for a different request.",
            errors={HEADER: ["Already used for a different request; send a new key."]},
        )
    if row.status is not None:
        return Kept(row)
    if row.claimed_at > now - ABANDONED:
        raise _still_running()
    taken = db.session.execute(
        update(IdempotentRequest)
        .where(
            IdempotentRequest.user_id == user.id,
            IdempotentRequest.key_digest == digest,
            IdempotentRequest.claimed_at == row.claimed_at,
            IdempotentRequest.status.is_(None),
        )
        .values(claimed_at=now)
    ).rowcount
    db.session.commit()
    if not taken:
        raise _still_running()
    return Claim(user.id, digest, now)


def keep(held: Claim, status: int, headers: dict, body: str, patient_id: str | None):
    """Keep a successful answer (its KEPT_HEADERS and body), in the transaction of the
    change it reports — unless a retry took the claim over meanwhile: then nothing of
    this request may commit."""
    answer = {"headers": headers, "body": body}
    sealed = crypto.seal_json(_key(patient_id), answer, vault.answer_aad(patient_id, held.user_id, held.key_digest))
    kept = db.session.execute(
        update(IdempotentRequest).where(*_mine(held)).values(status=status, patient_id=patient_id, answer_ct=sealed)
    ).rowcount
    if not kept:
        raise Problem(
            409,
            "This request took too long and a retry took its place; nothing was changed.",
            headers={"Retry-After": "1"},
        )


def release(held: Claim):
    """Free the key of a request whose answer is not kept, so a retry runs again."""
    try:
        db.session.execute(delete(IdempotentRequest).where(*_mine(held)))
        db.session.commit()
    except Exception:  # the database is away: the claim is free again after ABANDONED
        db.session.rollback()


def _still_running() -> Problem:
    return Problem(409, "The first request with this key is still running; try again.", headers={"Retry-After": "1"})


def forget(patient_id: str):
    """A deleted (crypto-shredded) patient's kept answers and request fingerprints."""
    db.session.execute(delete(IdempotentRequest).where(IdempotentRequest.patient_id == patient_id))


def _expire(now):
    """Delete a small batch of rows older than 24 h: each claim does a little, so no claim
    ever sweeps a long backlog (and other claims skip rows one is already deleting)."""
    old = (
        select(IdempotentRequest.user_id, IdempotentRequest.key_digest)
        .where(IdempotentRequest.claimed_at < now - LIFETIME)
        .limit(20)
        .with_for_update(skip_locked=True)
    )
    db.session.execute(
        delete(IdempotentRequest).where(tuple_(IdempotentRequest.user_id, IdempotentRequest.key_digest).in_(old))
    )


def _mine(held: Claim) -> tuple:
    """The claim row as this request made it (not one a retry has taken over since)."""
    return (
        IdempotentRequest.user_id == held.user_id,
        IdempotentRequest.key_digest == held.key_digest,
        IdempotentRequest.claimed_at == held.claimed_at,
        IdempotentRequest.status.is_(None),
    )


def _key(patient_id: str | None) -> bytes:
    if patient_id is None:
        return vault.system_key("idempotent_answers")
    return vault.patient_key(db.session.get(Patient, patient_id))
