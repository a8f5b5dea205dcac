"""The sender: sends the queued pushes and mails (models/notifications.py Delivery) in a
thread of each server process, off the request path (docs/ARCHITECTURE.md, "Push and
e-mail"). A request only queues; its commit wakes this process's sender, and the others
look every few seconds, so deliveries left by a process that stopped are sent too.

A sender claims a few due rows with a conditional UPDATE (a row claimed by another
process, whose claim has not run out, is skipped: exactly one sends it), commits, sends
with no transaction open, then deletes what went out or schedules a retry with back-off.
A process that dies mid-send leaves its claim to run out, and the row is sent again:
a device may then get a message twice, never none."""

import json
import logging
import smtplib
import uuid
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import delete, or_, select, update

from models import Delivery, PushSubscription, utcnow
from renkei.common import db
from renkei.outreach import mail, tell, webpush

log = logging.getLogger("renkei.outreach.deliveries")
BATCH = 10
CLAIM_SECONDS = 120  # longer than BATCH sends at their time-outs
POLL_SECONDS = 2.0  # how often a sender looks for rows other processes queued
GIVE_UP = timedelta(hours=24)  # as long as a push service keeps a message


def claim(now=None) -> list[SimpleNamespace]:
    """Take up to BATCH due deliveries for this sender; commits. What is claimed is
    copied out: the rows may change or go while they are being sent."""
    now, token = now or utcnow(), uuid.uuid4().hex
    free = or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now)
    ids = list(
        db.session.execute(
            select(Delivery.id).where(Delivery.next_at <= now, free).order_by(Delivery.id).limit(BATCH)
        ).scalars()
    )
    if not ids:
        db.session.commit()
        return []
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), free)
        .values(claim=token, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    )
    db.session.commit()
    rows = db.session.execute(select(Delivery).where(Delivery.claim == token).order_by(Delivery.id)).scalars()
    claimed = [SimpleNamespace(**{c: getattr(row, c) for c in FIELDS}) for row in rows]
    db.session.commit()
    return claimed


FIELDS = ("id", "channel", "user_id", "subscription_id", "kind", "payload", "attempts", "created_at", "claim")


def _mine(row):
    """The row, while this sender's claim on it holds."""
    return (Delivery.id == row.id) & (Delivery.claim == row.claim)


def deliver(row: SimpleNamespace):
    """Send one claimed delivery and record the outcome. The claim is renewed first: a
    row another sender took over (this one was slow) is left to it."""
    renewed = db.session.execute(
        update(Delivery).where(_mine(row)).values(claimed_until=utcnow() + timedelta(seconds=CLAIM_SECONDS))
    ).rowcount
    db.session.commit()
    if not renewed:
        return
    try:
        if row.channel == "push":
            _push(row)
        else:
            _mail(row)
    except (webpush.Later, smtplib.SMTPException, OSError) as exc:
        _later(row, getattr(exc, "retry_after", None), exc)
        return
    except (ValueError, mail.NotConfigured) as exc:
        log.warning("delivery %s (%s, %s) dropped: %s", row.id, row.channel, row.kind, _why(exc))
    except Exception as exc:  # a defect: keep the row, and the rest of the batch going
        log.exception("delivery %s (%s, %s) failed", row.id, row.channel, row.kind)
        db.session.rollback()
        _later(row, None, exc)
        return
    db.session.execute(delete(Delivery).where(_mine(row)))
    db.session.commit()


def _why(exc) -> str:
    """What to log of a failure: a mail server's words may hold the address."""
    return type(exc).__name__ if isinstance(exc, (smtplib.SMTPException, mail.NotConfigured)) else str(exc)


def _push(row):
    sub = db.session.get(PushSubscription, row.subscription_id)
    if sub is None:  # removed meanwhile
        return
    info = webpush.opened(sub)
    db.session.commit()  # no transaction open while the push service answers
    try:
        webpush.send(info, json.loads(row.payload), urgent=row.kind in tell.URGENT)
    except webpush.Gone:
        log.info("push subscription %s is gone; removed", row.subscription_id)
        if (sub := db.session.get(PushSubscription, row.subscription_id)) is not None:
            webpush.remove(sub)
        return
    db.session.execute(
        update(PushSubscription).where(PushSubscription.id == row.subscription_id).values(last_used_at=utcnow())
    )


def _mail(row):
    message = tell.mail_for(row)
    db.session.commit()
    if message is not None:
        mail.send(*message)


def _later(row, retry_after: float | None, why):
    now = utcnow()
    if now - row.created_at > GIVE_UP:
        log.warning(
            "delivery %s (%s, %s) given up after %s attempts: %s",
            row.id,
            row.channel,
            row.kind,
            row.attempts + 1,
            _why(why),
        )
        db.session.execute(delete(Delivery).where(_mine(row)))
    else:
        wait = min(retry_after or 5 * 2**row.attempts, 3600)
        db.session.execute(
            update(Delivery)
            .where(_mine(row))
            .values(attempts=row.attempts + 1, next_at=now + timedelta(seconds=wait), claim=None, claimed_until=None)
        )
    db.session.commit()


def run_once() -> int:
    """Send everything due now (the sender's turn; commands and tests call it too)."""
    sent = 0
    while batch := claim():
        for row in batch:
            deliver(row)
            sent += 1
    return sent


def run(app, due=()):
    """The sender thread of a server process (renkei/app.py `start_background`). Each of
    `due` runs at every turn before sending: checks that queue deliveries when their time
    comes (the escalation of urgent notes nobody acknowledged)."""
    last_digest = None
    while True:
        tell.queued.wait(POLL_SECONDS)
        tell.queued.clear()
        with app.app_context():
            try:
                minute = utcnow().replace(second=0, microsecond=0)
                if minute != last_digest:  # the digests' turn, once a minute
                    tell.queue_digests()
                    last_digest = minute
                for check in due:
                    check()
                run_once()
            except Exception:  # never let the thread die
                log.exception("sending deliveries failed; retrying")
                db.session.rollback()
            finally:
                db.session.remove()
