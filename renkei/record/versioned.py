"""Writing a new version of something the team edits together — a record section, a
patient's alert thresholds (docs/API.md, "The record"): the writer names the version
they edited; if it moved on since, 412 with the current one to merge with; the same
content again writes nothing (a repeated save must not show the team an 「更新」)."""

from typing import Callable

from sqlalchemy.exc import IntegrityError

from renkei.common import db, work
from renkei.common.problems import Problem


class Stale(Problem):
    """412: what the editor read changed since they read it. `current` is it now,
    version included."""

    def __init__(self, current: dict, what: str = "section"):
        super().__init__(
            412,
            f"The {what} changed since you read it; merge with the current version and retry.",
            type_="/problems/stale-version",
            headers={"ETag": f'"{current["version"]}"'},
        )
        self.current = current


class Unreadable:
    """A version the writer named in a form no one can read (a door's If-Match)."""


UNREADABLE = Unreadable()


def edited_version(based_on: int | Unreadable | None) -> int:
    """The version an edit is based on; 428 when the writer did not say, 400 when it
    cannot be read — both after the access check, so a patient one may not see is 404
    whatever was sent."""
    if based_on is None:
        raise Problem(428, 'Send If-Match with the version you edited ("0" for a new section).')
    if isinstance(based_on, Unreadable):
        raise Problem(400, 'If-Match must be a quoted version number, like "3".')
    return based_on


def write(
    current: dict, changed: bool, based_on: int, add: Callable[[int], None], reread: Callable[[], dict], what: str
) -> int | None:
    """Add version `based_on` + 1 through `add(version)`, in a savepoint; None when
    nothing `changed`. `current` is what is stored now; `reread` reads it again when
    another writer took the version first."""
    if not changed:
        work.describe(detail="unchanged")
        return None
    if current["version"] != based_on:
        raise Stale(current, what)
    version = based_on + 1
    try:
        with db.session.begin_nested():
            add(version)
    except IntegrityError:  # another writer took this version first
        raise Stale(reread(), what)
    return version
