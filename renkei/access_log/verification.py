"""Checking the access log against its signed heads (docs/ARCHITECTURE.md, "The access
log"): recompute the tree from the entries and compare its root at the size of every
head in the sinks. A head proves everything under it; the first bad entry under a head
that does not match is named by the entries' MACs. Entries sealed after the newest head
are checked by MAC; entries not yet sealed are counted, with the age of the oldest."""

import hashlib
import queue
import threading
import time

from flask import current_app
from sqlalchemy import String, case, cast, func, literal, literal_column, or_, select

from models import AuditAnchor, AuditEntry, utcnow
from renkei.access_log import entries, keyring, merkle, signed_note, sinks, tree
from renkei.common import db, offload

BATCH = 10000
STALLED_SECONDS = 60  # an entry waiting longer for its place means the sealer is not running
SQLITE_TIME = (
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)
FETCHERS = 2  # PostgreSQL connections building leaves at once while one thread hashes


# What went wrong, as a code beside the English `reason`: the page explains each in the
# reader's language (web/forms.py VERIFY_PROBLEMS).
PROBLEMS = ("altered", "truncated", "forked", "anchor", "stalled", "signature", "archived")


class VerifyError(Exception):
    def __init__(self, reason: str, problem: str):
        super().__init__(reason)
        self.problem = problem


class Heads:
    """The heads in the sinks, read but not yet trusted. An Ed25519 check costs about
    0.14 ms and a busy log writes a head a second (12 s of checking per day of history),
    so a signature is checked only where it decides something: a head whose root agrees
    with the recomputed tree needs none (whoever wrote it, it says what the tree says);
    one that disagrees, that names entries the log no longer holds, or that differs from
    another head of its size counts only if our key signed it. Every signed head is
    therefore still checked against the tree. Notes that turn out unsigned are counted
    in `foreign` and ignored: anyone who can write to a sink could add noise."""

    TRUSTED = None  # the note of a head given by the caller, already checked

    def __init__(self):
        self.keys = keyring.keys()
        self.roots: dict[int, dict[bytes, str | None]] = {}  # size → root → note
        self.anchors: set[str] = set()  # archive anchors (checked by live_start)
        self.foreign = 0

    def add(self, note: str | None, origin: str, size: int, root: bytes):
        if origin == self.keys.anchor_origin:
            self.anchors.add(note)
        elif origin != self.keys.origin:
            self.foreign += 1
        else:
            self.roots.setdefault(size, {}).setdefault(root, note)

    def signed(self, note: str | None) -> bool:
        if note is self.TRUSTED:
            return True
        try:
            self.keys.open(note)
            return True
        except signed_note.NoteError:
            return False

    def _keep_signed(self, size: int):
        """Drop the unsigned notes of a size; its roots left are all signed."""
        for root, note in list(self.roots[size].items()):
            if not self.signed(note):
                del self.roots[size][root]
                self.foreign += 1
        if not self.roots[size]:
            del self.roots[size]

    def settle_forks(self):
        for size in [s for s, roots in self.roots.items() if len(roots) > 1]:
            self._keep_signed(size)
            if len(self.roots.get(size, ())) > 1:
                raise VerifyError(f"two signed heads of size {size} differ: the log was forked", "forked")

    def agrees(self, size: int, root: bytes) -> bool | None:
        """True if a head of this size names this root; False if a signed one names
        another; None if only unsigned notes did (ignored)."""
        if root in self.roots[size]:
            return True
        self._keep_signed(size)
        return False if size in self.roots else None

    def newest_signed_beyond(self, size: int, through: int | None) -> int | None:
        """The largest size above `size` (and at most `through`) with a signed head."""
        for s in sorted((s for s in self.roots if s > size and (through is None or s <= through)), reverse=True):
            self._keep_signed(s)
            if s in self.roots:
                return s
        return None


def heads() -> Heads:
    """Every note in the sinks (renkei/access_log/sinks.py), parsed, signatures not checked yet."""
    # Files read and parsed on a real thread (a year of heads is tens of seconds), which
    # has no app context: the keys and the sinks are looked up here.
    found = Heads()
    offload.run(_read_heads, found, sinks.sinks(current_app.config["RENKEI"]))
    return found


def _read_heads(found: Heads, sinks):
    for sink in sinks:
        for note in sink.notes():
            try:
                found.add(note, *signed_note.parse_checkpoint(note.partition("\n\n")[0] + "\n"))
            except signed_note.NoteError:
                found.foreign += 1


def live_start(anchors: set[str]) -> merkle.Frontier:
    """Where the live entries continue the tree: after the newest archive (its signed
    anchor says how far, and the stored tiles give that tree's edge), else from empty.
    The anchor must also be in the sink: a leaked old key alone cannot move it."""
    anchor = db.session.execute(select(AuditAnchor).order_by(AuditAnchor.seq.desc()).limit(1)).scalar()
    if anchor is None:
        return merkle.Frontier()
    if anchor.note not in anchors:
        raise VerifyError("the archive anchor is not among the notes kept outside the database", "anchor")
    try:
        size, root = keyring.keys().read_anchor(anchor.note)
    except signed_note.NoteError:
        raise VerifyError("the archive anchor is not signed by the audit key", "anchor") from None
    if size != anchor.seq:
        raise VerifyError("the archive anchor is not signed by the audit key", "anchor")
    try:
        frontier = tree.Tiles().frontier(size)
    except tree.TreeError:
        raise VerifyError("the tree's stored hashes end before the archive anchor", "anchor") from None
    if frontier.root() != root:
        raise VerifyError("the tree's stored hashes do not match the archive anchor", "anchor")
    return frontier


def _leaf_query(after: int, through: int | None, dialect, lines: bool = False):
    """The sealed entries after `after` in seq order: seq, the leaf's text exactly as
    the sealer makes it (entries.entry_text + SEP + MAC; tests check both agree), and
    `odd`: an empty string in a field, which `write` never stores (a separator inside a
    field shows as one too many in the text). With `lines`, only the text, empty for an
    odd row. The database joins the text faster than Python unpacks the columns."""
    at = (
        func.to_char(AuditEntry.at, 'YYYY-MM-DD"T"HH24:MI:SS.US')
        if dialect.name == "postgresql"
        else func.replace(AuditEntry.at, " ", "T")
    )  # SQLite holds "YYYY-MM-DD HH:MM:SS.ffffff"
    columns = [getattr(AuditEntry, f) for f in entries.LEAF_FIELDS[1:]] + [AuditEntry.mac]
    text = cast(AuditEntry.seq, String).op("||")(literal(entries.SEP)).op("||")(at)
    for column in columns:
        text = text.op("||")(literal(entries.SEP)).op("||")(func.coalesce(column, ""))
    odd = or_(*(c == "" for c in columns))
    if dialect.name == "postgresql":  # a time to_char cannot write as the sealer's isoformat does
        odd = or_(
            odd,
            AuditEntry.at < literal_column("TIMESTAMP '1000-01-01'"),
            AuditEntry.at > literal_column("TIMESTAMP '9999-12-31'"),
        )
    else:  # SQLite keeps any type in any column: only text as SQLAlchemy writes it reads back the same
        odd = or_(
            odd,
            *(func.typeof(c).not_in(["text", "null"]) for c in columns),
            func.typeof(AuditEntry.at) != "text",
            AuditEntry.at.op("NOT GLOB")(SQLITE_TIME),
        )
    stmt = select(case((odd, ""), else_=text)) if lines else select(AuditEntry.seq, text, odd)
    stmt = stmt.where(AuditEntry.seq > after)
    if through is not None:
        stmt = stmt.where(AuditEntry.seq <= through)
    return str(stmt.order_by(AuditEntry.seq).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def leaf_texts(after: int, through: int | None = None):
    """(seq, leaf text, odd) of the sealed entries after `after`, in seq order. On SQLite
    through a connection of its own with no transaction: a long read there holds no lock
    (WAL), where the session's BEGIN IMMEDIATE would stop every write for the scan."""
    engine = db.session.get_bind()
    sql = _leaf_query(after, through, engine.dialect)
    if engine.dialect.name == "postgresql":
        db.begin_now()  # a server-side cursor lives in a transaction
        cursor = db.session.connection().connection.driver_connection.cursor(name=f"audit_leaves_{after}_{through}")
        cursor.execute(sql)
        try:
            while batch := cursor.fetchmany(BATCH):
                yield from batch
        finally:
            cursor.close()
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.execute(sql)
        while batch := cursor.fetchmany(BATCH):
            yield from batch
    finally:
        raw.close()


def _leaf_lines(after: int, through: int | None):
    """(after, through, leaf texts) for consecutive ranges of seq; a text is empty for an
    odd row, and a range with a missing entry has fewer texts. On
    PostgreSQL FETCHERS connections build the next ranges, each read by a thread of its
    own, while this thread hashes: the database and Python each get a core."""
    engine = db.session.get_bind()
    if engine.dialect.name != "postgresql":  # the embedded database: rows as they come
        expected, lines = after + 1, []
        for seq, text, odd in leaf_texts(after, through):
            lines.append("" if odd or seq != expected else text)  # a gap: out of place here
            expected += 1
            if len(lines) == BATCH:
                yield expected - 1 - BATCH, expected - 1, lines
                lines = []
        if lines:
            yield expected - 1 - len(lines), expected - 1, lines
        return
    last = db.session.execute(select(func.max(AuditEntry.seq))).scalar() or 0
    db.session.commit()  # no transaction left idle (and ended by PostgreSQL) while the fetchers work
    last = min(last, through) if through is not None else last

    def ranges(k: int, step: int):  # lazily: a forged huge seq must not make a list of billions
        for lo in range(after + k * BATCH, last, step * BATCH):
            yield lo, min(lo + BATCH, last)

    slots, stop = [queue.Queue(maxsize=2) for _ in range(FETCHERS)], threading.Event()

    def fetch(i):
        try:
            # no transaction: a fetcher waiting for the reader must not look abandoned
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                raw = conn.connection.driver_connection
                for lo, hi in ranges(i, FETCHERS):
                    if stop.is_set():
                        break
                    rows = raw.execute(_leaf_query(lo, hi, engine.dialect, lines=True)).fetchall()
                    slots[i].put([text for (text,) in rows])
        except Exception as exc:  # handed to the reader, raised there
            slots[i].put(exc)

    fetchers = [
        threading.Thread(target=fetch, args=(i,), name="audit-verify-fetch", daemon=True) for i in range(FETCHERS)
    ]
    for t in fetchers:
        t.start()
    try:
        for k, (lo, hi) in enumerate(ranges(0, 1)):
            lines = slots[k % FETCHERS].get()
            if isinstance(lines, Exception):
                raise lines
            yield lo, hi, lines
    finally:  # also when the caller stops early: let the fetchers end before returning
        stop.set()
        while any(t.is_alive() for t in fetchers):
            for slot in slots:
                while not slot.empty():
                    slot.get_nowait()
            time.sleep(0.01)


def first_bad_entry(after: int, through: int, keys) -> int | None:
    """The first entry in (after, through] that is missing, out of place, malformed or
    fails its MAC; None if each one looks right."""
    expected = after + 1
    for seq, text, odd in leaf_texts(after, through):
        body, _, mac = text.rpartition(entries.SEP)
        if seq != expected or odd or text.count(entries.SEP) != entries.SEPARATORS or not keys.mac_ok(body, mac):
            return expected
        expected += 1
    return expected if expected <= through else None


def verify(
    extra: dict[int, bytes] | None = None,
    archived=None,
    start: merkle.Frontier | None = None,
    through: int | None = None,
) -> dict:
    """Recompute the tree and check it against every signed head (and `extra` heads, e.g.
    one an auditor kept). `archived` — batches as `_leaf_lines` gives them — from
    `start` through `through` verify an archive's entries instead of the live log.
    {"ok", "entries", "first_bad", "tree_size", ...}."""
    with _one_at_a_time:  # each verification holds three connections of the worker's pool
        return _verify(extra, archived, start, through)


_one_at_a_time = threading.Lock()


def _verify(extra, archived, start, through) -> dict:
    keys = keyring.keys()
    try:
        found = heads()
        frontier = start or live_start(found.anchors)
        for size, root in (extra or {}).items():
            found.add(Heads.TRUSTED, keys.origin, size, root)
        found.settle_forks()
    except VerifyError as exc:
        return {"ok": False, "entries": 0, "first_bad": None, "reason": str(exc), "problem": exc.problem}
    begin = frontier.size
    good, checked = begin, 0
    sizes, next_head = sorted(s for s in found.roots if s > begin and (through is None or s <= through)), 0
    batches = archived if archived is not None else _leaf_lines(begin, through)
    sha256, sep, separators = hashlib.sha256, entries.SEP, entries.SEPARATORS
    for lo, hi, lines in batches:  # the hot loop of a whole-log check: whole batches at C speed
        offload.pause()  # ~0.1 s a batch: the worker's other connections go on between them
        first = frontier.size + 1
        if (
            lo + 1 != first
            or len(lines) != hi - lo
            or "" in lines
            or any(line.count(sep) != separators for line in lines)
        ):
            return _bad(_first_misfit(lines, first), frontier.size - begin)
        leaves = [sha256(b"\x00" + line.encode()).digest() for line in lines]  # merkle.leaf_hash, inlined
        last = first + len(lines) - 1
        at = 0
        while next_head < len(sizes) and sizes[next_head] <= last:  # a head inside this batch: its root there
            head, next_head = sizes[next_head], next_head + 1
            frontier.extend(leaves[at : head - first + 1])
            at = head - first + 1
            agrees = found.agrees(head, frontier.root())
            if agrees is False:
                # the MACs name the entry; if each looks right, the heads disagree from here
                bad = (first_bad_entry(good, head, keys) if archived is None else None) or good + 1
                return _bad(bad, frontier.size - begin)
            if agrees:
                good, checked = head, checked + 1
        frontier.extend(leaves[at:])
    size = frontier.size
    if found.newest_signed_beyond(size, through) is not None:  # it names entries the log no longer holds
        bad = (first_bad_entry(good, size, keys) if archived is None else None) or size + 1
        return _bad(bad, size - begin, "truncated", "truncated: signed heads cover entries that are gone")
    if archived is None and size > good:  # sealed after the newest head: their MACs must hold
        bad = first_bad_entry(good, size, keys)
        if bad is not None:
            return _bad(bad, size - begin)
    result = {
        "ok": True,
        "entries": size - begin,
        "first_bad": None,
        "tree_size": size,
        "heads": checked,
        "archived_through": begin,
        "unverifiable_heads": found.foreign,
    }
    if archived is None:
        result |= unsealed()
        if result["unsealed_oldest_seconds"] > STALLED_SECONDS:  # those entries are unprotected meanwhile
            result |= {
                "ok": False,
                "problem": "stalled",
                "reason": f"entries have waited {result['unsealed_oldest_seconds']:.0f} s "
                "for their place: the sealer is not running",
            }
    return result


def _first_misfit(lines: list[str], first: int) -> int:
    """The seq of the first text that is out of place or cannot be read one way (or,
    if every text fits, the first one missing after them)."""
    sep = entries.SEP
    for expected, line in enumerate(lines, start=first):
        if not line or line.count(sep) != entries.SEPARATORS or line.split(sep, 1)[0] != str(expected):
            return expected
    return first + len(lines)


def _bad(
    seq: int, entries: int, problem: str = "altered", reason: str = "an entry was altered, removed or reordered"
) -> dict:
    return {"ok": False, "entries": entries, "first_bad": seq, "reason": reason, "problem": problem}


def unsealed() -> dict:
    """Entries written but not yet in the tree: how many, and how old the oldest is."""
    count, oldest = db.session.execute(
        select(func.count(), func.min(AuditEntry.at)).where(AuditEntry.seq.is_(None))
    ).one()
    age = round((utcnow() - oldest).total_seconds(), 1) if oldest else 0
    return {"unsealed": count, "unsealed_oldest_seconds": age}


def verify_checkpoint(note: str) -> dict:
    """Check the log against a signed head someone kept (an auditor's copy)."""
    try:
        size, root = keyring.keys().read_checkpoint(note)
    except signed_note.NoteError:
        return {"ok": False, "reason": "signature", "problem": "signature"}
    result = verify({size: root})
    if result["ok"] and size <= result["archived_through"] and size:
        return {
            "ok": False,
            "reason": "archived: verify it against the archive file",
            "problem": "archived",
            "entries": result["entries"],
        }
    return result
