"""The access log (docs/ARCHITECTURE.md, "The access log"): one entry per request that
touches patient data, credentials, teams, consent, exports or the log itself,
allowed or not. Entries are queued on the request's unit of work (renkei/work.py)
and written here, in the same transaction as the change they describe.

Entries form a hash chain: each entry's hash covers its fields and the previous
entry's hash, and seq has no gaps, so editing, deleting or reordering an entry is
found by `verify`. The chain's head can be signed (a checkpoint an auditor keeps
outside the system); after an archival (renkei/audit_archive.py) the live chain
begins at a signed anchor. No clinical content is ever written here."""
import csv
import hashlib
import io
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from models import AuditAnchor, AuditEntry, Patient, utcnow
from renkei import db, vault
from renkei.sections import SECTIONS
from renkei.timefmt import iso

GENESIS = "0" * 64
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REQUEST_ID = re.compile(r"^[0-9A-Fa-f-]{8,64}$")  # a UUID or hex: no room for words
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP: cells a spreadsheet would evaluate
CSV_COLUMNS = ("seq", "at", "actor_id", "actor_org_id", "action", "patient_id", "section",
               "outcome", "client_addr", "request_id", "detail", "hash")


@dataclass
class Pending:
    action: str
    outcome: str
    actor_id: str | None = None
    actor_org_id: str | None = None
    patient_id: str | None = None
    section: str | None = None
    detail: str | None = None
    client_addr: str | None = None
    request_id: str | None = None
    at: object = field(default_factory=utcnow)


# --- only validated values enter the log -------------------------------------------
# A column holds what it says (a real patient id, a known section, an address) or
# nothing. Anything a caller typed — a malformed id, a name in an id's place — enters
# only as a keyed digest in `detail`, so repeated probes can be matched but the text
# itself is never stored.

def typed(kind: str, value) -> str:
    return f"{kind}~{vault.keyed_digest('audit_typed', str(value))}"


def ref(kind: str, value, known: bool) -> str:
    """`kind=value` for an id that exists, else the digest of what was typed."""
    return f"{kind}={value}" if known else typed(kind, value)


def place(patient_id, section) -> tuple[str | None, str | None, list[str]]:
    """(patient id, section, notes for detail): the columns only where they are real."""
    notes = []
    if patient_id is not None and not (isinstance(patient_id, str) and UUID.match(patient_id)
                                       and db.session.get(Patient, patient_id) is not None):
        notes.append(typed("patient", patient_id))
        patient_id = None
    if section is not None and section not in SECTIONS:
        notes.append(typed("section", section))
        section = None
    return patient_id, section, notes


def address(value) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def safe_cell(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def entry_hash(prev_hash: str, seq: int, e) -> str:
    fields = [seq, e.at.isoformat(timespec="microseconds"), e.actor_id, e.actor_org_id,
              e.action, e.patient_id, e.section, e.outcome, e.client_addr, e.request_id,
              e.detail, prev_hash]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def write(pending: list[Pending]):
    """Append entries to the chain (the caller commits)."""
    if not pending:
        return
    db.lock_audit_head()
    head = db.session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    for e in pending:
        seq += 1
        digest = entry_hash(prev, seq, e)
        db.session.add(AuditEntry(seq=seq, at=e.at, actor_id=e.actor_id,
                                  actor_org_id=e.actor_org_id, action=e.action,
                                  patient_id=e.patient_id, section=e.section,
                                  outcome=e.outcome, client_addr=e.client_addr,
                                  request_id=e.request_id, detail=e.detail,
                                  prev_hash=prev, hash=digest))
        prev = digest


def verify(batch: int = 5000) -> dict:
    """Walk the chain in seq order; report the first entry that does not fit.
    After an archival the chain begins at the signed anchor (renkei/audit_archive.py)."""
    start_seq, prev, genuine = live_start()
    if not genuine:
        return {"ok": False, "entries": 0, "first_bad": start_seq + 1}
    expected_seq, count = start_seq + 1, 0
    rows = db.session.execute(select(AuditEntry).where(AuditEntry.seq > start_seq).order_by(AuditEntry.seq)
                              .execution_options(yield_per=batch)).scalars()
    for e in rows:
        if e.seq != expected_seq or e.prev_hash != prev or entry_hash(prev, e.seq, e) != e.hash:
            return {"ok": False, "entries": count, "first_bad": min(e.seq, expected_seq)}
        prev, expected_seq, count = e.hash, e.seq + 1, count + 1
    return {"ok": True, "entries": count, "first_bad": None}


def outcome_for(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict",
            412: "conflict", 428: "invalid", 400: "invalid", 422: "invalid",
            429: "throttled"}.get(status, "failed")


def csv_lines(entries):
    """The CSV export of entries (AuditEntry rows or archived dicts), in chunks of text."""
    def rows():
        for e in entries:
            row = e if isinstance(e, dict) else {c: getattr(e, c) for c in CSV_COLUMNS}
            at = datetime.fromisoformat(row["at"]) if isinstance(row["at"], str) else row["at"]
            yield [iso(at) if c == "at" else row[c] for c in CSV_COLUMNS]
    return csv_chunks(CSV_COLUMNS, rows())


def csv_chunks(header, rows, start: str = "", chunk: int = 65536):
    """CSV text in chunks of about `chunk` characters (memory flat however many rows),
    every cell made safe for a spreadsheet; `start` opens the first chunk (a BOM)."""
    buf = io.StringIO()
    buf.write(start)
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        if buf.tell() > chunk:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


# --- signatures: checkpoints and archive anchors ------------------------------------
# Signatures carry their purpose ("checkpoint" or "anchor"), so a checkpoint handed to
# an auditor can never be planted as an anchor.

def _signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(vault.system_key("audit_checkpoint"))


def public_key_hex() -> str:
    return _signing_key().public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw).hex()


def _message(body: dict, purpose: str) -> bytes:
    fields = {k: body[k] for k in ("seq", "hash", "at")}
    return purpose.encode() + b"|" + json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()


def sign(body: dict, purpose: str) -> dict:
    signature = _signing_key().sign(_message(body, purpose)).hex()
    return {"seq": body["seq"], "hash": body["hash"], "at": body["at"],
            "public_key": public_key_hex(), "signature": signature}


def signature_ok(signed: dict, purpose: str) -> bool:
    """Signed by this service's key, for this purpose, and unaltered."""
    try:
        _signing_key().public_key().verify(bytes.fromhex(signed["signature"]), _message(signed, purpose))
        return True
    except Exception:
        return False


def live_start() -> tuple[int, str, bool]:
    """(seq, hash) the first live entry must follow, and whether the anchor is genuine."""
    anchor = db.session.execute(select(AuditAnchor).order_by(AuditAnchor.seq.desc()).limit(1)).scalar()
    if anchor is None:
        return 0, GENESIS, True
    signed = {"seq": anchor.seq, "hash": anchor.hash, "at": anchor.at, "signature": anchor.signature}
    return anchor.seq, anchor.hash, signature_ok(signed, "anchor")


def checkpoint() -> dict:
    """The chain's head, signed: keep it outside the system (paper, another office)."""
    head = db.session.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).scalar_one_or_none()
    return sign({"seq": head.seq if head else 0, "hash": head.hash if head else GENESIS,
                 "at": iso(utcnow())}, "checkpoint")


def verify_checkpoint(cp: dict) -> dict:
    """Is the signature ours, and does the log still hold that entry with that hash
    (and everything before it, unaltered)? A truncated log fails here."""
    if cp.get("public_key") != public_key_hex():
        return {"ok": False, "reason": "signed by another key"}
    if not signature_ok(cp, "checkpoint"):
        return {"ok": False, "reason": "signature"}
    chain = verify()
    if not chain["ok"]:
        return {"ok": False, "reason": "chain", "first_bad": chain["first_bad"]}
    start_seq, start_hash, _ = live_start()
    if 0 < cp["seq"] <= start_seq and (cp["seq"], cp["hash"]) != (start_seq, start_hash):
        return {"ok": False, "reason": "archived: verify it against the archive file", "entries": chain["entries"]}
    if cp["seq"] > start_seq:
        entry = db.session.get(AuditEntry, cp["seq"])
        if entry is None or entry.hash != cp["hash"]:
            return {"ok": False, "reason": "truncated or rewritten", "entries": chain["entries"]}
    return {"ok": True, "entries": chain["entries"]}
