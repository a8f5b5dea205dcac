"""Keeping the access log over years (docs/ARCHITECTURE.md, "The access log").

`archive` moves entries older than the retention period into a sealed file and
removes them from the database. The last archived entry becomes a signed anchor
(table audit_anchors) where the live chain now begins, so `audit.verify` still
proves the rest unaltered, and nobody without the signing key can cut the beginning
off. The archive file verifies on its own and links to that anchor. Checkpoints and
signatures live in renkei/audit.py."""
import os
import struct
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import delete, func, select

from models import AuditAnchor, AuditEntry, utcnow
from renkei import audit, crypto, db, vault, work
from renkei.backup import file_key
from renkei.timefmt import iso

ARCHIVE_MAGIC = b"RENKEI-AUDIT-ARCHIVE-1\n"
FRAME_ENTRIES = 5000
ENTRY_FIELDS = audit.CSV_COLUMNS + ("prev_hash",)  # everything the chain's hash needs


class ArchiveError(Exception):
    pass


# --- retention -----------------------------------------------------------------

def _entry_dict(e: AuditEntry) -> dict:
    # `at` exactly as the hash covers it, so the archive re-verifies on its own
    return {f: e.at.isoformat(timespec="microseconds") if f == "at" else getattr(e, f) for f in ENTRY_FIELDS}


def _write_frame(out, key: bytes, index: int, value: dict):
    sealed = crypto.seal_json(key, value, vault.archive_frame_aad(index))
    out.write(struct.pack(">I", len(sealed)) + sealed)


def archive(before: datetime, out: Path, master: bytes) -> dict:
    """Move the entries written before `before` (naive UTC) into a sealed archive file,
    then remove them from the log, in one transaction, leaving a signed anchor.
    The newest entry always stays, so the chain's head is never lost."""
    if out.exists():  # an earlier archive's entries are gone from the database: never overwrite it
        raise ArchiveError(f"{out} exists; archive into a new file")
    chain = audit.verify()
    if not chain["ok"]:
        raise ArchiveError(f"the access log does not verify (first bad entry {chain['first_bad']}); "
                           "nothing was archived")
    db.no_idle_timeout()
    db.lock_audit_head()
    start_seq, start_hash, _ = audit.live_start()
    head = db.session.execute(select(func.max(AuditEntry.seq))).scalar() or 0
    first_kept = db.session.execute(select(func.min(AuditEntry.seq)).where(AuditEntry.at >= before)).scalar()
    through = min(head - 1, (first_kept or head + 1) - 1)  # a prefix: nothing newer goes
    if through <= start_seq:
        return {"archived": 0, "through_seq": start_seq}
    last = db.session.get(AuditEntry, through)
    anchor = audit.sign({"seq": through, "hash": last.hash, "at": iso(last.at)}, "anchor")

    key, count, index, frame = file_key(master, "audit archive"), 0, 0, []
    rows = db.session.execute(select(AuditEntry).where(AuditEntry.seq > start_seq, AuditEntry.seq <= through)
                              .order_by(AuditEntry.seq).execution_options(yield_per=FRAME_ENTRIES)).scalars()
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(ARCHIVE_MAGIC)
        for e in rows:
            frame.append(_entry_dict(e))
            if len(frame) == FRAME_ENTRIES:
                _write_frame(f, key, index, {"entries": frame})
                index, count, frame = index + 1, count + len(frame), []
        if frame:
            _write_frame(f, key, index, {"entries": frame})
            index, count = index + 1, count + len(frame)
        _write_frame(f, key, index, {"end": {"from_seq": start_seq + 1, "prev_hash": start_hash,
                                             "entries": count, "anchor": anchor}})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)  # the file is complete on disk before a single entry is deleted

    db.session.execute(delete(AuditEntry).where(AuditEntry.seq <= through))
    db.session.add(AuditAnchor(seq=through, hash=anchor["hash"], at=anchor["at"], entries=count,
                               archived_at=utcnow(), signature=anchor["signature"]))
    unit = work.current()
    unit.record("audit.archive", "ok", detail=f"through={through};entries={count}")
    unit.commit()
    return {"archived": count, "through_seq": through, "file": str(out)}


def read_archive(src: Path, master: bytes):
    """Decrypt an archive: (its entries, its trailer). Raises ArchiveError if the file
    is not ours, was cut short, or frames were altered or reordered."""
    data = src.read_bytes()
    if not data.startswith(ARCHIVE_MAGIC):
        raise ArchiveError(f"{src} is not a Renkei audit archive")
    key, pos, index, entries, end = file_key(master, "audit archive"), len(ARCHIVE_MAGIC), 0, [], None
    while pos < len(data):
        if end is not None:
            raise ArchiveError("unexpected data after the end of the archive")
        if pos + 4 > len(data):
            raise ArchiveError("the archive was cut short (a partial frame)")
        (size,) = struct.unpack(">I", data[pos:pos + 4])
        if pos + 4 + size > len(data):
            raise ArchiveError("the archive was cut short (a partial frame)")
        try:
            frame = crypto.unseal_json(key, data[pos + 4:pos + 4 + size], vault.archive_frame_aad(index))
        except crypto.DecryptionError:
            raise ArchiveError(f"frame {index} does not decrypt: another key, altered or reordered") from None
        entries.extend(frame.get("entries", []))
        end = frame.get("end")
        pos, index = pos + 4 + size, index + 1
    if end is None:
        raise ArchiveError("the archive was cut short (no end frame)")
    return entries, end


def check_archive(entries: list, end: dict, cp: dict | None = None) -> dict:
    """The archive's own chain, its signed anchor, that the live log continues from it
    (or from a later archive), and optionally a checkpoint that falls inside it."""
    expected, prev = end["from_seq"], end["prev_hash"]
    for raw in entries:
        e = SimpleNamespace(**raw | {"at": datetime.fromisoformat(raw["at"])})
        if e.seq != expected or e.prev_hash != prev or audit.entry_hash(prev, e.seq, e) != e.hash:
            return {"ok": False, "reason": "chain", "first_bad": min(e.seq, expected)}
        prev, expected = e.hash, e.seq + 1
    anchor = end["anchor"]
    if not audit.signature_ok(anchor, "anchor") or (anchor["seq"], anchor["hash"]) != (expected - 1, prev):
        return {"ok": False, "reason": "anchor"}
    result = {"ok": True, "entries": len(entries), "from_seq": end["from_seq"], "through_seq": anchor["seq"]}
    live = db.session.get(AuditAnchor, anchor["seq"])
    if live is None or live.hash != anchor["hash"]:
        result |= {"ok": False, "reason": "the live log does not continue from this archive"}
    if cp is not None:
        held = audit.signature_ok(cp, "checkpoint") and next((r for r in entries if r["seq"] == cp["seq"]), None)
        if not held or held["hash"] != cp["hash"]:
            result |= {"ok": False, "reason": "checkpoint not in this archive"}
    return result
