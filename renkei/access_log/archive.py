"""Keeping the access log over years (docs/ARCHITECTURE.md, "The access log").

`archive` moves sealed entries older than the retention period into a sealed file and
removes them from the database; their places in the tree stay (the stored tiles keep
their hashes, so proofs still work). A signed anchor (table audit_anchors) says how far
the archive goes and what the tree's root was there: the live log continues the tree
from it, and nobody without the audit key can cut more off the beginning. The file
verifies on its own, against that anchor and the signed heads in the sinks."""

import base64
import os
import struct
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select

from models import AuditAnchor, AuditEntry, utcnow
from renkei.access_log import entries, keyring, merkle, sealer, signed_note, tree, verification
from renkei.common import crypto, db, vault, work
from renkei.common.backup import file_key

ARCHIVE_MAGIC = b"RENKEI-AUDIT-ARCHIVE-2\n"
FRAME_ENTRIES = 5000
ENTRY_FIELDS = ("seq",) + entries.LEAF_FIELDS + ("mac",)  # everything the leaf needs


class ArchiveError(Exception):
    pass


# --- retention -----------------------------------------------------------------


def _entry_dict(e: AuditEntry) -> dict:
    return {f: e.at.isoformat(timespec="microseconds") if f == "at" else getattr(e, f) for f in ENTRY_FIELDS}


def _write_frame(out, key: bytes, index: int, value: dict):
    sealed = crypto.seal_json(key, value, vault.archive_frame_aad(index))
    out.write(struct.pack(">I", len(sealed)) + sealed)


def archive(before: datetime, out: Path, master: bytes) -> dict:
    """Move the sealed entries written before `before` (naive UTC) into a sealed archive
    file, then remove them from the log, in one transaction, leaving a signed anchor.
    The newest sealed entry always stays."""
    if out.exists():  # an earlier archive's entries are gone from the database: never overwrite it
        raise ArchiveError(f"{out} exists; archive into a new file")
    sealer.catch_up()  # entries before the cutoff that still wait for their place
    check = verification.verify()
    if not check["ok"]:
        raise ArchiveError(
            f"the access log does not verify (first bad entry {check.get('first_bad')}: "
            f"{check.get('reason')}); nothing was archived"
        )
    db.no_idle_timeout()
    start = verification.live_start(verification.heads().anchors)
    sealed, _ = sealer.head()
    first_kept = db.session.execute(select(func.min(AuditEntry.seq)).where(AuditEntry.at >= before)).scalar()
    through = min(sealed - 1, (first_kept or sealed + 1) - 1)  # a prefix: nothing newer goes
    if through <= start.size:
        return {"archived": 0, "through_seq": start.size}
    root = tree.Tiles().root(through)
    anchor = keyring.keys().anchor(through, root)
    frontier = merkle.Frontier(start.size, start.hashes)  # the entries as written must give that root

    key, count, index, frame = file_key(master, "audit archive"), 0, 0, []
    rows = db.session.execute(
        select(AuditEntry)
        .where(AuditEntry.seq > start.size, AuditEntry.seq <= through)
        .order_by(AuditEntry.seq)
        .execution_options(yield_per=FRAME_ENTRIES)
    ).scalars()
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(ARCHIVE_MAGIC)
        for e in rows:
            frame.append(_entry_dict(e))
            frontier.append(entries.leaf_hash_of(e))
            if len(frame) == FRAME_ENTRIES:
                _write_frame(f, key, index, {"entries": frame})
                index, count, frame = index + 1, count + len(frame), []
        if frame:
            _write_frame(f, key, index, {"entries": frame})
            index, count = index + 1, count + len(frame)
        _write_frame(
            f,
            key,
            index,
            {
                "end": {
                    "from_seq": start.size + 1,
                    "through_seq": through,
                    "frontier": [entries.b64(h) for h in start.hashes],
                    "anchor": anchor,
                }
            },
        )
        f.flush()
        os.fsync(f.fileno())
    if frontier.size != through or frontier.root() != root:  # an entry changed since the check above
        tmp.unlink()
        raise ArchiveError("the entries changed while they were archived; nothing was archived")
    os.replace(tmp, out)  # the file is complete on disk before a single entry is deleted
    sealer.publish(anchor)  # kept outside too: a leaked old key alone cannot move the anchor

    db.session.execute(delete(AuditEntry).where(AuditEntry.seq <= through))
    db.session.add(AuditAnchor(seq=through, note=anchor, entries=count, archived_at=utcnow()))
    unit = work.current()
    unit.add_entry("audit.archive", "ok", detail=f"through={through};entries={count}")
    unit.commit()
    return {"archived": count, "through_seq": through, "file": str(out)}


def read_archive(src: Path, master: bytes):
    """Decrypt an archive: (its entries, its trailer). Raises ArchiveError if the file
    is not ours, was cut short, or frames were altered or reordered."""
    data = src.read_bytes()
    if not data.startswith(ARCHIVE_MAGIC):
        raise ArchiveError(f"{src} is not a Renkei audit archive")
    key, pos, index, found, end = file_key(master, "audit archive"), len(ARCHIVE_MAGIC), 0, [], None
    while pos < len(data):
        if end is not None:
            raise ArchiveError("unexpected data after the end of the archive")
        if pos + 4 > len(data):
            raise ArchiveError("the archive was cut short (a partial frame)")
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        if pos + 4 + size > len(data):
            raise ArchiveError("the archive was cut short (a partial frame)")
        try:
            frame = crypto.unseal_json(key, data[pos + 4 : pos + 4 + size], vault.archive_frame_aad(index))
        except crypto.DecryptionError:
            raise ArchiveError(f"frame {index} does not decrypt: another key, altered or reordered") from None
        found.extend(frame.get("entries", []))
        end = frame.get("end")
        pos, index = pos + 4 + size, index + 1
    if end is None:
        raise ArchiveError("the archive was cut short (no end frame)")
    return found, end


def _leaf_lines(rows, after: int):
    """An archive's entries as verification._leaf_lines gives the live ones."""
    expected, lines = after + 1, []
    for e in rows:
        values = [e[f] for f in entries.LEAF_FIELDS[1:]]
        text = entries.entry_text(e["seq"], datetime.fromisoformat(e["at"]), values) + entries.SEP + (e["mac"] or "")
        lines.append(text if entries.well_formed(values) and e["seq"] == expected else "")
        expected += 1
    yield after, expected - 1, lines


def check_archive(entries: list, end: dict, note: str | None = None) -> dict:
    """The archive's entries against its signed anchor and the signed heads in the sinks,
    that the live log continues from it (or from a later archive), and optionally a
    signed head someone kept that falls inside it."""
    keys = keyring.keys()
    through = end["through_seq"]
    try:
        size, root = keys.read_anchor(end["anchor"])
    except signed_note.NoteError:
        return {"ok": False, "reason": "anchor"}
    if size != through:
        return {"ok": False, "reason": "anchor"}
    extra = {through: root}
    if note is not None:
        try:
            kept, kept_root = keys.read_checkpoint(note)
        except signed_note.NoteError:
            return {"ok": False, "reason": "checkpoint signature"}
        if not end["from_seq"] <= kept <= through:
            return {"ok": False, "reason": "checkpoint not in this archive"}
        extra[kept] = kept_root
    start = merkle.Frontier(end["from_seq"] - 1, [base64.b64decode(h) for h in end["frontier"]])
    result = verification.verify(extra, archived=_leaf_lines(entries, start.size), start=start, through=through)
    if not result["ok"]:
        return {"ok": False, "reason": "chain", "first_bad": result["first_bad"]}
    result = {"ok": True, "entries": result["entries"], "from_seq": end["from_seq"], "through_seq": through}
    live = db.session.get(AuditAnchor, through)
    if live is None or live.note != end["anchor"]:
        result |= {"ok": False, "reason": "the live log does not continue from this archive"}
    return result
