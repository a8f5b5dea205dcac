"""Keyset paging (docs/API.md, "Pages"): a list is read a page at a time after the last
row of the page before, named by an opaque cursor "<time>|<id>". Unlike OFFSET, a page
neither repeats nor skips rows when new ones arrive between two requests."""

from sqlalchemy import tuple_

from renkei.common import db
from renkei.common.problems import Problem
from renkei.common.timefmt import parse_iso


def page(stmt, at, id_, *, cursor: str | None, limit: int, newest_first: bool = True) -> tuple[list, str | None]:
    """(rows, next cursor or None) of `stmt` ordered by the columns `at` then `id_`."""
    key = tuple_(at, id_)
    after = _decode(cursor)
    if after:
        stmt = stmt.where(key < tuple_(*after) if newest_first else key > tuple_(*after))
    order = (at.desc(), id_.desc()) if newest_first else (at, id_)
    rows = list(db.session.execute(stmt.order_by(*order).limit(limit + 1)).scalars())
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], cursor_of(rows[limit - 1], at, id_)


def cursor_of(row, at, id_) -> str:
    """The cursor of the page that ends with `row`."""
    # Microseconds, as stored: a cursor cut to milliseconds would skip rows within it.
    return f"{getattr(row, at.key).isoformat(timespec='microseconds')}|{getattr(row, id_.key)}"


def _decode(text: str | None):
    if not text:
        return None
    at, _, row_id = text.partition("|")
    if db.has_nul(text):  # no cursor of ours holds one
        raise Problem(422, "Bad cursor.", errors={"cursor": ["Not a cursor from this API."]})
    try:
        return parse_iso(at), row_id
    except ValueError:
        raise Problem(422, "Bad cursor.", errors={"cursor": ["Not a cursor from this API."]})
