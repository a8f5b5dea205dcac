"""Realtime events (docs/API.md, "Realtime events"): who receives what, with which seq.

An event is stored per recipient, with that recipient's next seq, in the same
transaction as the change it describes; only after commit does the unit of work
(renkei/work.py) hand it to its listeners — realtime/ pushes it to the recipient's
Socket.IO room. So a client that missed a push (network, Redis down,
another process) gets it from `resume`, and a rolled-back change sends nothing.
Recipients are the patient's team *at the time of the change*: a removed member
stops receiving at once."""
import json

from sqlalchemy import insert, select, update

from models import TeamMember, User, UserEvent, utcnow
from renkei import db, work
from renkei.timefmt import iso


def team_user_ids(patient_id: str) -> list[str]:
    return list(db.session.execute(select(TeamMember.user_id).where(
        TeamMember.patient_id == patient_id, TeamMember.removed_at.is_(None))).scalars())


def admin_user_ids() -> list[str]:
    return list(db.session.execute(select(User.id).where(User.is_admin.is_(True),
                                                         User.disabled.is_(False))).scalars())


def queue(name: str, patient_id: str, payload: dict, also_to=()):
    """Store `name` for every current team member (and `also_to`), for sending after commit."""
    at = iso(utcnow())
    recipients = sorted(set(team_user_ids(patient_id)) | set(also_to))
    if not recipients:
        return
    # Lock the recipients in id order first, so two writes with overlapping teams cannot
    # deadlock on PostgreSQL (an UPDATE alone locks in whatever order its plan visits rows);
    # then one statement hands every recipient its next seq. FOR NO KEY UPDATE (key_share):
    # the write's own foreign keys (note author, event owner) hold KEY SHARE on user rows,
    # which a plain FOR UPDATE would wait on, deadlocking (tests/test_integrity.py).
    db.session.execute(select(User.id).where(User.id.in_(recipients)).order_by(User.id).with_for_update(key_share=True))
    seqs = db.session.execute(update(User).where(User.id.in_(recipients))
                              .values(event_seq=User.event_seq + 1)
                              .returning(User.id, User.event_seq)).all()
    rows, unit = [], work.current()
    for user_id, seq in sorted(seqs):
        body = {"patient_id": patient_id, **payload, "at": at, "seq": seq}
        rows.append({"user_id": user_id, "seq": seq, "name": name, "created_at": utcnow(),
                     "payload": json.dumps(body, ensure_ascii=False)})
        unit.events.append((user_id, name, body))
    db.session.execute(insert(UserEvent), rows)


def events_since(user_id: str, since: int, limit: int = 1000) -> list[tuple[str, dict]]:
    rows = db.session.execute(select(UserEvent.name, UserEvent.payload).where(
        UserEvent.user_id == user_id, UserEvent.seq > since).order_by(UserEvent.seq).limit(limit))
    return [(name, json.loads(payload)) for name, payload in rows]
