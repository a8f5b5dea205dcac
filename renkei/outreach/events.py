"""Realtime events (docs/API.md, "Realtime events"): who receives what, with which seq.

An event is stored per recipient, with that recipient's next seq, in the same
transaction as the change it describes; only after commit does the unit of work
(renkei/common/work.py) hand it to its listeners — realtime/ sends it to the recipient's
open sockets in every server process. So a client that missed a push (network, Redis down,
another process) gets it from `resume`, and a rolled-back change sends nothing.
Recipients are the patient's team *at the time of the change*: a removed member
stops receiving at once."""

import json

from sqlalchemy import case, insert, select, update

from models import TeamMember, User, UserEvent
from renkei.common import db, work
from renkei.common.timefmt import iso
from renkei.outreach import tell


def team_user_ids(patient_id: str) -> list[str]:
    return list(
        db.session.execute(
            select(TeamMember.user_id).where(TeamMember.patient_id == patient_id, TeamMember.removed_at.is_(None))
        ).scalars()
    )


def admin_user_ids() -> list[str]:
    return list(db.session.execute(select(User.id).where(User.is_admin.is_(True), User.disabled.is_(False))).scalars())


def queue(name: str, patient_id: str, payload: dict, also_to=()):
    """Name `name` for every current team member (and `also_to`); it is stored with each
    recipient's next seq when the unit of work commits, and sent after the commit."""
    team = team_user_ids(patient_id)
    if name in tell.CHANGES:  # for those who asked to hear of any change
        tell.tell("patient.updated", patient_id, team, actor_id=payload.get("actor_id"))
    recipients = sorted(set(team) | set(also_to))
    if not recipients:
        return
    work.current().events.append(work.Event(name, patient_id, payload, recipients))


def queue_for(name: str, patient_id: str, payload: dict, user_ids):
    """Name `name` for these people only (their own other pages: what they have seen)."""
    if user_ids:
        work.current().events.append(work.Event(name, patient_id, payload, sorted(set(user_ids))))


class StoreEvents:
    """The commit step (renkei/common/work.py): the request's events, stored last."""

    def before_commit(self, unit: work.Work):
        if unit.events:
            unit.stored = store(unit.events)

    def after_commit(self, unit: work.Work):
        pass  # realtime/ sends them (its own step)


def store(outbox: list[work.Event]) -> list[work.Stored]:
    """Store the queued events with each recipient's next seq; the commit step calls
    this as late as possible before COMMIT, so the recipients' rows stay locked for milliseconds, not
    for the rest of the request (docs/ARCHITECTURE.md, "One unit of work"). Returns each
    event once: its name, its payload without seq, and each recipient's seq."""
    recipients = sorted({user_id for event in outbox for user_id in event.recipients})
    # Lock the recipients in id order first, so two writes with overlapping teams cannot
    # deadlock on PostgreSQL (an UPDATE alone locks in whatever order its plan visits rows).
    # FOR NO KEY UPDATE (key_share): the write's own foreign keys (note author, event owner)
    # hold KEY SHARE on user rows, which a plain FOR UPDATE would wait on (tests/test_integrity.py).
    db.session.execute(select(User.id).where(User.id.in_(recipients)).order_by(User.id).with_for_update(key_share=True))
    counts = {user_id: 0 for user_id in recipients}
    for event in outbox:
        for user_id in event.recipients:
            counts[user_id] += 1
    last = dict(
        db.session.execute(
            update(User)
            .where(User.id.in_(recipients))
            .values(event_seq=User.event_seq + _case(counts))
            .returning(User.id, User.event_seq)
        ).all()
    )
    seq = {user_id: last[user_id] - counts[user_id] for user_id in recipients}
    rows, sent = [], []
    for event in outbox:
        body, seqs = {"patient_id": event.patient_id, **event.payload, "at": iso(event.at)}, {}
        for user_id in event.recipients:
            seq[user_id] += 1
            seqs[user_id] = seq[user_id]
            rows.append(
                {
                    "user_id": user_id,
                    "seq": seq[user_id],
                    "name": event.name,
                    "created_at": event.at,
                    "payload": json.dumps({**body, "seq": seq[user_id]}, ensure_ascii=False),
                }
            )
        sent.append(work.Stored(event.name, body, seqs))
    db.session.execute(insert(UserEvent), rows)
    return sent


def _case(counts: dict):
    """How many events each recipient gets in this commit, as one SQL expression."""
    if len(set(counts.values())) == 1:
        return next(iter(counts.values()))
    return case(counts, value=User.id)


def events_since(user_id: str, since: int, limit: int = 1000) -> list[tuple[str, dict]]:
    rows = db.session.execute(
        select(UserEvent.name, UserEvent.payload)
        .where(UserEvent.user_id == user_id, UserEvent.seq > since)
        .order_by(UserEvent.seq)
        .limit(limit)
    )
    return [(name, json.loads(payload)) for name, payload in rows]
