"""The access log (docs/ARCHITECTURE.md, "The access log"): one entry per request that
touches patient data, credentials, teams, consent, exports or the log itself,
allowed or not. Entries are queued on the request's unit of work (renkei/common/work.py)
and written here, in the same transaction as the change they describe.

A request only inserts its entries, with no lock and no position. The sealer
(renkei/access_log/sealer.py) later gives them their places in a Merkle tree and a MAC, and
signs the tree's head; renkei/access_log/verification.py checks the log against those heads. No
clinical content is ever written here."""

import base64
import hashlib
import ipaddress
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import insert

from models import AuditEntry, Patient, utcnow
from renkei.access_log import merkle
from renkei.common import csvfile, db, vault, work
from renkei.common.timefmt import iso
from renkei.sections.catalogue import SECTIONS

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CSV_COLUMNS = (
    "seq",
    "at",
    "actor_id",
    "actor_org_id",
    "action",
    "patient_id",
    "section",
    "outcome",
    "client_addr",
    "request_id",
    "detail",
    "leaf_hash",
)


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

DETAIL_LIMIT = 4000


def whole_or_digest(detail: str | None) -> str | None:
    """An entry's detail as it was, or past DETAIL_LIMIT its start and a digest of the
    whole: never silently cut (a call list of 7 people once read as 4)."""
    if detail is None or len(detail) <= DETAIL_LIMIT:
        return detail
    return f"{detail[: DETAIL_LIMIT - 80]};cut;sha256={hashlib.sha256(detail.encode()).hexdigest()}"


def typed(kind: str, value) -> str:
    return f"{kind}~{vault.keyed_digest('audit_typed', str(value))}"


def ref(kind: str, value, known: bool) -> str:
    """`kind=value` for an id that exists, else the digest of what was typed."""
    return f"{kind}={value}" if known else typed(kind, value)


def place(patient_id, section, found=frozenset()) -> tuple[str | None, str | None, list[str]]:
    """(patient id, section, notes for detail): the columns only where they are real.
    `found`: patient ids this request has already read from the database."""
    notes = []
    if (
        patient_id is not None
        and patient_id not in found
        and not (
            isinstance(patient_id, str) and UUID.match(patient_id) and db.session.get(Patient, patient_id) is not None
        )
    ):
        notes.append(typed("patient", patient_id))
        patient_id = None
    if section is not None and section not in SECTIONS:
        notes.append(typed("section", section))
        section = None
    return patient_id, section, notes


# --- an entry as a leaf of the tree ---------------------------------------------------
# The leaf is the entry's fields as text, separated by RS (0x1E), None as an empty
# field, then its MAC. The request writes the fields; the sealer adds seq and MAC. A
# field never holds an empty string or RS (`_clean`), so the text reads back one way.

SEP = "\x1e"
LEAF_FIELDS = (
    "at",
    "actor_id",
    "actor_org_id",
    "action",
    "patient_id",
    "section",
    "outcome",
    "client_addr",
    "request_id",
    "detail",
)


def _clean(value):
    return value.replace(SEP, " ") or None if isinstance(value, str) else value


def entry_text(seq: int, at, values) -> str:
    """What the MAC covers: seq, time to the microsecond, then the other fields in
    LEAF_FIELDS order (`values`)."""
    return SEP.join((str(seq), at.isoformat(timespec="microseconds"), *(v or "" for v in values)))


SEPARATORS = len(LEAF_FIELDS) + 1  # seq, the fields, the MAC


def leaf(text: str, mac: str) -> bytes:
    return (text + SEP + mac).encode()


def well_formed(values) -> bool:
    """The fields as read back could have been written by `write` (no empty string, no
    separator): otherwise two different rows could make the same leaf."""
    return "" not in values and not any(v and SEP in v for v in values)


def leaf_hash_of(e) -> bytes | None:
    """The leaf hash of a sealed AuditEntry (None before sealing), as the API shows it."""
    if e.seq is None or e.mac is None:
        return None
    values = [getattr(e, f) for f in LEAF_FIELDS[1:]]
    return merkle.leaf_hash(leaf(entry_text(e.seq, e.at, values), e.mac))


_INSERT = insert(AuditEntry.__table__).inline()  # Core, built once; inline: no RETURNING of the id
_INSERT_ALONE = _INSERT.execution_options(**{db.OWN_TRANSACTION: True})


class WriteEntries:
    """The commit step (renkei/common/work.py): the request's entries, each column
    checked (`place`), inserted last. A request that changed nothing else writes them
    in one statement, with no BEGIN/COMMIT."""

    def before_commit(self, unit: work.Work):
        wrote = db.session.new or db.session.dirty or db.session.deleted
        pending = [_placed(e, unit) for e in unit.entries]
        write(pending, alone=bool(pending) and not wrote and not db.in_transaction())

    def after_commit(self, unit: work.Work):
        pass


def _placed(entry: work.Entry, unit: work.Work) -> Pending:
    patient_id, section, notes = place(entry.patient_id, entry.section, unit.patients_found)
    detail = ";".join(([str(entry.detail)] if entry.detail else []) + notes) or None
    return Pending(
        action=entry.action,
        outcome=entry.outcome,
        actor_id=entry.actor_id,
        actor_org_id=entry.actor_org_id,
        patient_id=patient_id,
        section=section,
        detail=whole_or_digest(detail),
        client_addr=unit.client_addr,
        request_id=unit.request_id,
    )


def write(pending: list[Pending], alone: bool = False):
    """Add the request's entries to its transaction (the caller commits). No lock, no
    position: the sealer (renkei/access_log/sealer.py) places them in the tree later.
    alone: the request wrote nothing else, so the entries are one INSERT that commits on
    its own (PostgreSQL; renkei/common/db.py, "a transaction begins at the first write")."""
    rows = [{f: _clean(getattr(e, f)) for f in LEAF_FIELDS} for e in pending]
    if rows:  # one row as one execute: a list of one would go through executemany
        db.session.execute(_INSERT_ALONE if alone else _INSERT, rows[0] if len(rows) == 1 else rows)


# --- attempts counted, not written one by one -----------------------------------------
# A request refused before it touches the database (a sign-in shed by a full hashing
# queue, renkei/people/auth.py) must not write its own entry: in a burst that would be the very
# load being shed. It is counted here in memory, per action, address and minute, and the
# process's sealer thread writes one summary entry per finished minute (`write_counted`).

_counted: dict[tuple[str, str | None, datetime], int] = {}
_counted_lock = threading.Lock()


def count_outside(action: str, client_addr: str | None):
    """Count one (an IPv6 address as its /64: one subscriber holds a whole /64)."""
    minute = utcnow().replace(second=0, microsecond=0)
    where = work.address(client_addr)
    if where and ":" in where:
        where = str(ipaddress.ip_network(where + "/64", strict=False).network_address)
    with _counted_lock:
        key = (action, where, minute)
        _counted[key] = _counted.get(key, 0) + 1


def write_counted(everything: bool = False) -> int:
    """Write a summary entry for each finished minute's count (all of them: `everything`);
    the caller commits. Returns how many entries it wrote."""
    now = utcnow().replace(second=0, microsecond=0)
    with _counted_lock:
        done = [k for k in _counted if everything or k[2] < now]
        taken = [(k, _counted.pop(k)) for k in done]
    try:
        write(
            [
                Pending(
                    action=action,
                    outcome="throttled",
                    client_addr=addr,
                    at=minute,
                    detail=f"count={count};minute={iso(minute)}",
                )
                for (action, addr, minute), count in taken
            ]
        )
    except Exception:  # kept for the next pass
        with _counted_lock:
            for key, count in taken:
                _counted[key] = _counted.get(key, 0) + count
        raise
    return len(taken)


def b64(digest: bytes | None) -> str | None:
    return base64.b64encode(digest).decode() if digest is not None else None


def csv_lines(entries):
    """The CSV export of entries (AuditEntry rows or archived dicts), in chunks of text."""

    def rows():
        for e in entries:
            if isinstance(e, dict):
                e = SimpleNamespace(**e | {"at": datetime.fromisoformat(e["at"])})
            yield [
                iso(e.at) if c == "at" else b64(leaf_hash_of(e)) if c == "leaf_hash" else getattr(e, c)
                for c in CSV_COLUMNS
            ]

    return csvfile.chunks(CSV_COLUMNS, rows())
