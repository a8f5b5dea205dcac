"""Escalating an urgent note that no physician or nurse of the team has acknowledged
(docs/ARCHITECTURE.md, "Escalation"). Posting an urgent note schedules it; an
acknowledgement by a physician or nurse of the team ends it; otherwise, after the
team's time (default 15 minutes) the backup physician and the team's call list are told
by push and mail, and again after each further interval, until someone acknowledges —
for a day at most. Each round is shown on the note (「15分未確認のため副主治医へ通知しました」),
audited, and sent to the team's open pages.

The schedule is in the database, so a restart loses nothing. The senders of all server
processes look for due escalations (renkei/outreach/deliveries.py); each round moves `due_at`
forward with a compare-and-set in the round's own transaction, so exactly one process
escalates it."""

import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from models import (
    Escalation,
    EscalationRound,
    EscalationRule,
    Note,
    NoteAck,
    NotificationSettings,
    PushSubscription,
    TeamMember,
    User,
    utcnow,
)
from renkei.common import db, work
from renkei.common.problems import Problem, invalid
from renkei.outreach import events, tell
from renkei.patients import authz
from renkei.patients.authz import patient_access

log = logging.getLogger("renkei.patients.escalation")
ACKNOWLEDGERS = ("primary_physician", "backup_physician", "nurse")  # whose 既読 ends an escalation
GIVE_UP = timedelta(hours=24)
DEFAULTS = {"after_minutes": 15, "repeat_minutes": 15, "call_list": []}


def _rule(patient_id: str) -> dict:
    row = db.session.get(EscalationRule, patient_id)
    if row is None:
        return dict(DEFAULTS)
    return {
        "after_minutes": row.after_minutes,
        "repeat_minutes": row.repeat_minutes,
        "call_list": json.loads(row.call_list),
    }


def rule(actor: User, patient_id: str) -> dict:
    """The team's escalation settings, for its members."""
    return _rule(patient_access(actor, patient_id, authz.TEAM_VIEW).patient.id)


def set_rule(actor: User, patient_id: str, body: dict) -> dict:
    """Change the team's escalation settings (those who manage the team). The call list
    holds members of the team; fields left out keep their value."""
    patient = patient_access(actor, patient_id, authz.TEAM_MANAGE).patient
    if actor.is_admin:
        raise Problem(403, "The team sets its own escalation; administrators only appoint a manager.")
    members = set(events.team_user_ids(patient.id))
    if any(uid not in members for uid in body.get("call_list", ())):
        raise invalid({"call_list": ["Only members of this patient's team."]})
    before = _rule(patient.id)
    current = before | body
    current["call_list"] = [uid for uid in current["call_list"] if uid in members]
    row = db.session.get(EscalationRule, patient.id, with_for_update=True) or EscalationRule(patient_id=patient.id)
    row.after_minutes, row.repeat_minutes = current["after_minutes"], current["repeat_minutes"]
    row.call_list = json.dumps(sorted(set(current["call_list"])))
    db.session.add(row)
    added = sorted(set(current["call_list"]) - set(before["call_list"]))
    removed = sorted(set(before["call_list"]) - set(current["call_list"]))
    work.describe(
        detail=f"after={current['after_minutes']};repeat={current['repeat_minutes']}"
        f";added={','.join(added)};removed={','.join(removed)}"
    )
    db.session.flush()
    return _rule(patient.id)


def schedule(note: Note):
    """An urgent note was posted: escalate it after the team's time unless acknowledged."""
    minutes = _rule(note.patient_id)["after_minutes"]
    db.session.add(
        Escalation(
            note_id=note.id, patient_id=note.patient_id, rounds=0, due_at=note.created_at + timedelta(minutes=minutes)
        )
    )


def acknowledged(note: Note, member: TeamMember | None):
    """A physician's or nurse's 既読 ends the note's escalation (not the author's own: a
    nurse who posted "the patient fell" has not been answered by reading it back), and
    what was queued to tell people it is still unread is not sent."""
    if member is not None and member.role in ACKNOWLEDGERS and member.user_id != note.created_by:
        db.session.execute(
            update(Escalation)
            .where(Escalation.note_id == note.id, Escalation.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        tell.forget_kind(note.patient_id, "note.escalated", note_id=note.id)


def left_team(patient_id: str, user_id: str):
    """A member left: they are off the call list (coming back does not put them on it)."""
    row = db.session.get(EscalationRule, patient_id, with_for_update=True)
    if row is not None and user_id in json.loads(row.call_list):
        row.call_list = json.dumps([uid for uid in json.loads(row.call_list) if uid != user_id])


def end_for_patient(patient_id: str):
    """The patient was deleted: nothing more is escalated or sent about them."""
    db.session.execute(
        update(Escalation)
        .where(Escalation.patient_id == patient_id, Escalation.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    tell.forget_patient(patient_id)


def rounds_of(note_ids: list[str]) -> dict[str, list[dict]]:
    """The escalations each note shows, oldest first."""
    if not note_ids:
        return {}
    out: dict[str, list[dict]] = {}
    for r in db.session.execute(
        select(EscalationRound).where(EscalationRound.note_id.in_(note_ids)).order_by(EscalationRound.id)
    ).scalars():
        out.setdefault(r.note_id, []).append({"at": r.at, "minutes": r.minutes, "told": json.loads(r.told)})
    return out


def _reachable(user_ids: set[str]) -> set[str]:
    """People a push or mail can reach: an active account with a device or a confirmed
    address. The note says whom it told only if someone could be."""
    active = select(User.id).where(User.id.in_(user_ids), User.disabled.is_(False))
    with_device = select(PushSubscription.user_id).where(PushSubscription.user_id.in_(active))
    with_mail = select(NotificationSettings.user_id).where(
        NotificationSettings.user_id.in_(active), NotificationSettings.email_ct.is_not(None)
    )
    return set(db.session.execute(with_device.union(with_mail)).scalars())


def run_due(now: datetime | None = None) -> int:
    """Escalate every round that is due (the senders call this each turn); how many."""
    now = now or utcnow()
    due = db.session.execute(
        select(Escalation.note_id, Escalation.due_at)
        .where(Escalation.due_at <= now, Escalation.ended_at.is_(None))
        .order_by(Escalation.due_at)
        .limit(50)
    ).all()
    db.session.commit()
    done = 0
    for note_id, due_at in due:
        try:
            done += _escalate(note_id, due_at, now)
        except Exception:  # one bad round must not hold up the others, or the deliveries
            log.exception("escalating note %s failed; it stays due", note_id)
            db.session.rollback()
    return done


def _escalate(note_id: str, due_at: datetime, now: datetime) -> int:
    """One round, in one transaction that starts by taking it (compare-and-set on due_at)."""
    unit = work.begin()
    note = db.session.get(Note, note_id)
    repeat = _rule(note.patient_id)["repeat_minutes"]
    taken = db.session.execute(
        update(Escalation)
        .where(Escalation.note_id == note_id, Escalation.due_at == due_at, Escalation.ended_at.is_(None))
        .values(due_at=now + timedelta(minutes=repeat), rounds=Escalation.rounds + 1)
    ).rowcount
    if not taken:  # another process took this round
        db.session.rollback()
        return 0
    members = {
        m.user_id: m.role
        for m in db.session.execute(
            select(TeamMember).where(TeamMember.patient_id == note.patient_id, TeamMember.removed_at.is_(None))
        ).scalars()
    }
    acked = db.session.execute(select(NoteAck.user_id).where(NoteAck.note_id == note_id)).scalars()
    ended = (
        "acknowledged"
        if any(members.get(uid) in ACKNOWLEDGERS for uid in acked if uid != note.created_by)
        else "no consent"
        if not authz.has_consent(note.patient_id)  # nobody could open it to read it
        else "a day passed"
        if now - note.created_at > GIVE_UP
        else None
    )
    if ended:
        db.session.execute(update(Escalation).where(Escalation.note_id == note_id).values(ended_at=now))
        unit.add_entry("note.escalate", "ok", patient_id=note.patient_id, detail=f"note={note_id};ended={ended}")
        unit.commit()
        return 0
    reachable = _reachable(set(members) - {note.created_by})
    backups = [uid for uid, role in members.items() if role == "backup_physician" and uid in reachable]
    calls = [uid for uid in _rule(note.patient_id)["call_list"] if uid in reachable and uid not in backups]
    told = (["backup_physician"] if backups else []) + (["call_list"] if calls else [])
    minutes = int((now - note.created_at).total_seconds() // 60)
    db.session.add(EscalationRound(note_id=note_id, at=now, minutes=minutes, told=json.dumps(told)))
    tell.tell("note.escalated", note.patient_id, backups + calls, actor_id=note.created_by, note_id=note_id)
    events.queue("note.escalated", note.patient_id, {"note_id": note_id, "minutes": minutes, "told": told})
    unit.add_entry(
        "note.escalate",
        "ok",
        patient_id=note.patient_id,
        detail=f"note={note_id};after={minutes}min;told={'+'.join(told) or 'nobody'}",
    )
    unit.commit()
    return 1
