"""The access log's Merkle tree as stored: tiles of hashes (models/audit.py AuditTile,
the layout of c2sp.org/tlog-tiles), from which any node, root or proof is a few reads.
The sealer extends it (renkei/access_log/sealer.py); proofs and verification read it."""

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from models import AuditTile
from renkei.access_log import merkle
from renkei.common import db

WIDTH = 256  # hashes per tile
HEIGHT = 8  # tree levels per tile level (2 ** 8 = 256)
HASH = 32


class TreeError(Exception):
    """The stored tiles lack a hash they should hold (a size beyond the tree)."""


class Tiles:
    """Reads (and the sealer writes) tiles through a cache that lives for one operation."""

    def __init__(self):
        self._cache: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            self._cache[key] = (
                db.session.execute(
                    select(AuditTile.hashes).where(AuditTile.level == level, AuditTile.index == index)
                ).scalar()
                or b""
            )
        return self._cache[key]

    def node(self, level: int, index: int) -> bytes:
        """The root of the perfect subtree of 2 ** level leaves numbered `index`."""
        tile_level, rest = divmod(level, HEIGHT)
        first, count = index << rest, 1 << rest
        tile, offset = divmod(first, WIDTH)
        data = self.tile(tile_level, tile)
        if len(data) < (offset + count) * HASH:
            raise TreeError(f"no node at level {level}, index {index}")
        return merkle.perfect_root([data[i * HASH : (i + 1) * HASH] for i in range(offset, offset + count)])

    def subtree(self, start: int, end: int) -> bytes:
        return merkle.range_hash(start, end, self.node)

    def frontier(self, size: int) -> merkle.Frontier:
        return merkle.Frontier(size, [self.node(level, index) for level, index in merkle.subtrees(size)])

    def root(self, size: int) -> bytes:
        return self.frontier(size).root()

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_path(index, size, self.subtree)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return merkle.consistency_proof(first, second, self.subtree)

    def extend(self, size: int, leaves: list[bytes]):
        """Append leaf hashes to a tree of `size` leaves, rewriting the tiles they touch
        and adding the roots of tiles they fill to the level above."""
        level, start, hashes = 0, size, leaves
        while hashes:
            first = start // WIDTH
            data = (self.tile(level, first) if start % WIDTH else b"") + b"".join(hashes)
            if len(data) != (start % WIDTH + len(hashes)) * HASH:
                raise TreeError(f"tile {level}/{first} does not end where the tree does")
            full = []
            for n, at in enumerate(range(0, len(data), WIDTH * HASH)):
                chunk = data[at : at + WIDTH * HASH]
                self._store(level, first + n, chunk)
                if len(chunk) == WIDTH * HASH:
                    full.append(merkle.perfect_root([chunk[i : i + HASH] for i in range(0, len(chunk), HASH)]))
            level, start, hashes = level + 1, start // WIDTH, full

    def _store(self, level: int, index: int, hashes: bytes):
        self._cache[(level, index)] = hashes
        dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(AuditTile).values(level=level, index=index, hashes=hashes)
        db.session.execute(stmt.on_conflict_do_update(index_elements=["level", "index"], set_={"hashes": hashes}))
