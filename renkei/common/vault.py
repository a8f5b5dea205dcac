"""Where data keys are created, unwrapped, rotated and destroyed. Every encryption
label (the associated data that binds a sealed value to its place) is built here, so
what ties a value to its row is in one spot: patient id, then field / section+revision /
note / observation / thresholds / consent / break-glass grant; and the labels of the service-wide keys' values."""

import base64
import hashlib
import hmac
import unicodedata

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from models import Patient, PatientSearchToken, SystemKey
from renkei.common import crypto, db


def keyring() -> crypto.Keyring:
    return current_app.extensions["renkei.keyring"]


def aad(patient_id: str, *where) -> str:
    return "|".join((_patient_owner(patient_id), *map(str, where)))


def demographics_aad(patient_id: str) -> str:
    return aad(patient_id, "demographics")


def _moment(at) -> str:
    return at.isoformat(timespec="microseconds")


def revision_aad(rev) -> str:
    """A section revision's content is bound to its place and to who wrote it when: a
    database writer cannot re-attribute or re-date it without breaking decryption."""
    return aad(
        rev.patient_id,
        "section=" + rev.section,
        f"version={rev.version}",
        "by=" + rev.created_by,
        "at=" + _moment(rev.created_at),
    )


def note_aad(note) -> str:
    """A note's body is bound to its author, time, category and urgency likewise."""
    return aad(
        note.patient_id,
        "note=" + note.id,
        "by=" + note.created_by,
        "at=" + _moment(note.created_at),
        "category=" + note.category,
        f"urgent={int(bool(note.urgent))}",
    )


def observation_aad(obs) -> str:
    """A reading is bound to its kind, measurement time and author: a database writer
    cannot move a value to another kind, day or person without breaking decryption."""
    # aad(patient, "observation=…", …) written out: a chart opens a thousand of these (bench/vitals.py)
    return (
        f"patient={obs.patient_id}|observation={obs.id}|kind={obs.kind}|at={_moment(obs.measured_at)}"
        f"|by={obs.recorded_by}|recorded={_moment(obs.recorded_at)}|source={obs.source}"
    )


def threshold_aad(rev) -> str:
    """A version of a patient's alert thresholds, bound like a section revision."""
    return aad(
        rev.patient_id, "thresholds", f"version={rev.version}", "by=" + rev.created_by, "at=" + _moment(rev.created_at)
    )


def consent_aad(patient_id: str, consent_id: str) -> str:
    return aad(patient_id, "consent=" + consent_id)


def breakglass_aad(patient_id: str, grant_id: str) -> str:
    return aad(patient_id, "breakglass=" + grant_id)


def answer_aad(patient_id: str | None, user_id: str, key_digest: str) -> str:
    """An answer kept for an Idempotency-Key retry, bound to the person and the key."""
    where = ("answer", "user=" + user_id, "key=" + key_digest)
    return aad(patient_id, *where) if patient_id else "|".join((_system_owner("idempotent_answers"), *where))


def totp_aad(user_id: str) -> str:
    return f"totp|user={user_id}"


def archive_frame_aad(index: int) -> str:
    """A frame of an access-log archive file, bound to its position in the file."""
    return f"audit-archive|{index}"


def _patient_owner(patient_id: str) -> str:
    return "patient=" + patient_id


def _system_owner(name: str) -> str:
    return "system=" + name


def new_patient_key(patient: Patient) -> bytes:
    data_key = crypto.new_data_key()
    patient.kek_id, patient.wrapped_key = keyring().wrap(data_key, _patient_owner(patient.id))
    return data_key


def patient_key(patient: Patient) -> bytes:
    if patient.wrapped_key is None:
        raise crypto.DecryptionError("patient data key destroyed")
    return keyring().unwrap(patient.kek_id, patient.wrapped_key, _patient_owner(patient.id))


def shred(patient: Patient):
    """Crypto-shredding: without the data key every ciphertext of the patient is noise."""
    patient.wrapped_key = None
    patient.kek_id = None
    patient.demographics_ct = None
    patient.name_index = patient.kana_index = patient.sheet_code_index = None
    db.session.execute(delete(PatientSearchToken).where(PatientSearchToken.patient_id == patient.id))


def system_key(name: str) -> bytes:
    """A service-wide key (blind index, TOTP secrets), created on first use."""
    row = db.session.get(SystemKey, name)
    if row is None:
        key = crypto.new_data_key()
        kek_id, wrapped = keyring().wrap(key, _system_owner(name))
        try:
            with db.session.begin_nested():
                db.session.add(SystemKey(name=name, kek_id=kek_id, wrapped_key=wrapped))
            return key
        except IntegrityError:  # a concurrent request created it first: use theirs
            row = db.session.execute(select(SystemKey).where(SystemKey.name == name)).scalar_one()
    return keyring().unwrap(row.kek_id, row.wrapped_key, _system_owner(name))


def name_index(text: str) -> str:
    return crypto.blind_index(system_key("blind_index"), text)


def prefix_token(text: str) -> str:
    return crypto.prefix_token(system_key("blind_index"), text)


def index_name(patient: Patient, name: str, kana: str):
    """The patient's blind-index values: full name, full kana, family-name prefixes."""
    key = system_key("blind_index")
    patient.name_index, patient.kana_index = crypto.blind_index(key, name), crypto.blind_index(key, kana)
    db.session.execute(delete(PatientSearchToken).where(PatientSearchToken.patient_id == patient.id))
    db.session.add_all(
        PatientSearchToken(patient_id=patient.id, token=t) for t in crypto.prefix_tokens(key, patient.id, name, kana)
    )


def sheet_code(patient_id: str) -> str:
    """The short code printed on a patient's emergency sheet (XXXXX-XXXXX, 50 bits):
    derived from the id under a service key, so neither can be worked out from the other."""
    code = base64.b32encode(hmac.new(system_key("sheet_code"), patient_id.encode(), hashlib.sha256).digest())
    return f"{code[:5].decode()}-{code[5:10].decode()}"


def _typed_code(typed: str) -> str:
    """A sheet code as someone typed it, made canonical: spaces, hyphens, lower case,
    full-width, and 0/1/8 for O/I/B forgiven."""
    code = unicodedata.normalize("NFKC", typed).upper().translate(_CODE_CONFUSABLES)
    return "".join(ch for ch in code if ch.isalnum())


def sheet_code_index(typed: str) -> str:
    """The keyed hash the patient is found by."""
    return hmac.new(system_key("blind_index"), b"sheet-code|" + _typed_code(typed).encode(), hashlib.sha256).hexdigest()


def sheet_code_digest(typed: str) -> str:
    """What the access log keeps of a typed or scanned code: one digest per code however
    it was typed (so an auditor can link probes of one code), never the code."""
    return keyed_digest("sheet_code_typed", _typed_code(typed))


_CODE_CONFUSABLES = str.maketrans({"0": "O", "1": "I", "8": "B"})  # not in the base32 alphabet


def keyed_digest(purpose: str, text: str) -> str:
    """A keyed hash of something a person typed, for the access log: equal inputs can
    be matched, the text itself cannot be read back (no plaintext in the log)."""
    return hmac.new(system_key(purpose), text.encode(), hashlib.sha256).hexdigest()[:32]


def rotate_master_key() -> int:
    """Rewrap every data key under the current master key. Data is not re-encrypted;
    the service keeps running with the old key listed in RENKEI_MASTER_KEY_PREVIOUS."""
    ring, count = keyring(), 0
    for row in db.session.execute(select(SystemKey)).scalars():
        if row.kek_id != ring.current_id:
            key = ring.unwrap(row.kek_id, row.wrapped_key, _system_owner(row.name))
            row.kek_id, row.wrapped_key = ring.wrap(key, _system_owner(row.name))
            count += 1
    stale = select(Patient).where(Patient.wrapped_key.is_not(None), Patient.kek_id != ring.current_id)
    for patient in db.session.execute(stale).scalars():
        key = patient_key(patient)
        patient.kek_id, patient.wrapped_key = ring.wrap(key, _patient_owner(patient.id))
        count += 1
    db.session.commit()
    return count
