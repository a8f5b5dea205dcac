"""Checking the access log against its signed heads (docs/ARCHITECTURE.md, "The access
log"): recompute the tree from the entries and compare its root at the size of every
head in the sinks. A head proves everything under it; the first bad entry under a head
that does not match is named by the entries' MACs. Entries sealed after the newest head
are checked by MAC; entries not yet sealed are counted, with the age of the oldest."""
from flask import current_app
from sqlalchemy import func, select

from models import AuditAnchor, AuditEntry, utcnow
from renkei import audit, audit_keys, audit_sink, audit_tree, db, merkle, signed_note

BATCH = 10000


class VerifyError(Exception):
    pass


def heads() -> tuple[dict[int, bytes], int]:
    """Sizes and roots of the signed heads in the sinks, and how many notes there did not
    verify with our keys (ignored: anyone who can write there could add noise)."""
    keys, found, foreign = audit_keys.keys(), {}, 0
    for sink in audit_sink.sinks(current_app.config["RENKEI"]):
        for note in sink.notes():
            try:
                size, root = keys.read_checkpoint(note)
            except signed_note.NoteError:
                foreign += 1
                continue
            if found.setdefault(size, root) != root:
                raise VerifyError(f"two signed heads of size {size} differ: the log was forked")
            found[size] = root
    return found, foreign


def anchor_text(size: int, root: bytes) -> str:
    """An archive anchor's note text: a checkpoint of another origin, so a tree head
    handed to an auditor can never be planted as an anchor."""
    return signed_note.checkpoint_text(audit_keys.keys().origin + " archive anchor", size, root)


def live_start() -> merkle.Frontier:
    """Where the live entries continue the tree: after the newest archive (its signed
    anchor says how far, and the stored tiles give that tree's edge), else from empty."""
    anchor = db.session.execute(select(AuditAnchor).order_by(AuditAnchor.seq.desc()).limit(1)).scalar()
    if anchor is None:
        return merkle.Frontier()
    keys = audit_keys.keys()
    try:
        origin, size, root = signed_note.parse_checkpoint(keys.open(anchor.note))
    except signed_note.NoteError:
        raise VerifyError("the archive anchor is not signed by the audit key") from None
    if origin != keys.origin + " archive anchor" or size != anchor.seq:
        raise VerifyError("the archive anchor is not signed by the audit key")
    try:
        frontier = audit_tree.Tiles().frontier(size)
    except audit_tree.TreeError:
        raise VerifyError("the tree's stored hashes end before the archive anchor") from None
    if frontier.root() != root:
        raise VerifyError("the tree's stored hashes do not match the archive anchor")
    return frontier


def _rows(after: int, through: int | None = None):
    cols = [AuditEntry.seq, *(getattr(AuditEntry, f) for f in audit.LEAF_FIELDS), AuditEntry.mac]
    stmt = select(*cols).where(AuditEntry.seq > after)
    if through is not None:
        stmt = stmt.where(AuditEntry.seq <= through)
    return db.session.execute(stmt.order_by(AuditEntry.seq).execution_options(yield_per=BATCH))


def first_bad_entry(after: int, through: int, keys) -> int | None:
    """The first entry in (after, through] that is missing, out of place, malformed or
    fails its MAC; None if each one looks right."""
    expected = after + 1
    for row in _rows(after, through):
        values = row[2:-1]
        if row[0] != expected or not audit.well_formed(values) or not keys.mac_ok(
                audit.entry_text(row[0], row[1], values), row[-1]):
            return expected
        expected += 1
    return expected if expected <= through else None


def verify(extra: dict[int, bytes] | None = None, entries=None, start: merkle.Frontier | None = None,
           through: int | None = None) -> dict:
    """Recompute the tree and check it against every signed head (and `extra` heads, e.g.
    one an auditor kept). `entries` from `start` through `through` verify an archive's
    entries instead of the live log. {"ok", "entries", "first_bad", "tree_size", ...}."""
    keys = audit_keys.keys()
    try:
        signed, foreign = heads()
        frontier = start or live_start()
    except VerifyError as exc:
        return {"ok": False, "entries": 0, "first_bad": None, "reason": str(exc)}
    signed.update(extra or {})
    begin = frontier.size
    if through is not None:
        signed = {s: r for s, r in signed.items() if s <= through}
    newest = max([s for s in signed if s > begin], default=begin)
    good, checked = begin, 0
    rows = entries if entries is not None else _rows(begin)
    for row in rows:
        seq, at, values, mac = row[0], row[1], row[2:-1], row[-1]
        if seq != frontier.size + 1 or not audit.well_formed(values):
            return _bad(frontier.size + 1, frontier.size - begin)
        text = audit.entry_text(seq, at, values)
        if seq > newest and not keys.mac_ok(text, mac):  # no head covers it yet
            return _bad(seq, frontier.size - begin)
        frontier.append(merkle.leaf_hash(audit.leaf(text, mac)))
        if seq in signed:
            checked += 1
            if frontier.root() != signed[seq]:
                # the MACs name the entry; if each looks right, the heads disagree from here
                bad = (first_bad_entry(good, seq, keys) if entries is None else None) or good + 1
                return _bad(bad, frontier.size - begin)
            good = seq
    size = frontier.size
    if newest > size:  # a head names entries the log no longer holds (or holds renumbered)
        bad = (first_bad_entry(good, size, keys) if entries is None else None) or size + 1
        return _bad(bad, size - begin, reason="truncated: signed heads cover entries that are gone")
    result = {"ok": True, "entries": size - begin, "first_bad": None, "tree_size": size, "heads": checked,
              "archived_through": begin, "unverifiable_heads": foreign}
    if entries is None:
        result |= unsealed()
    return result


def _bad(seq: int, entries: int, reason: str = "an entry was altered, removed or reordered") -> dict:
    return {"ok": False, "entries": entries, "first_bad": seq, "reason": reason}


def unsealed() -> dict:
    """Entries written but not yet in the tree: how many, and how old the oldest is."""
    count, oldest = db.session.execute(select(func.count(), func.min(AuditEntry.at))
                                       .where(AuditEntry.seq.is_(None))).one()
    age = round((utcnow() - oldest).total_seconds(), 1) if oldest else 0
    return {"unsealed": count, "unsealed_oldest_seconds": age}


def verify_checkpoint(note: str) -> dict:
    """Check the log against a signed head someone kept (an auditor's copy)."""
    try:
        size, root = audit_keys.keys().read_checkpoint(note)
    except signed_note.NoteError:
        return {"ok": False, "reason": "signature"}
    result = verify({size: root})
    if result["ok"] and size <= result["archived_through"] and size:
        return {"ok": False, "reason": "archived: verify it against the archive file", "entries": result["entries"]}
    return result
