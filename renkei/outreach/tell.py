"""Who hears of what outside the app, and how: pushes to their devices and mails
(docs/ARCHITECTURE.md, "Push and e-mail"). Services name what happened (`tell`); when
the request commits, each person's settings decide what is queued as a delivery
(models/notifications.py), in the same transaction; renkei/outreach/deliveries.py sends it after
the commit. A message names a kind and identifiers, never a name or clinical text."""

import json
import re
import secrets
import threading
from datetime import datetime, time, timedelta

from flask import current_app, has_request_context
from flask_login import current_user
from sqlalchemy import and_, delete, or_, select, update

from models import Delivery, NotificationSettings, PushSubscription, User, UserEvent, utcnow
from renkei.common import crypto, db, vault, work
from renkei.common.problems import Problem, invalid
from renkei.outreach import webpush

# What each kind is, by weight: a person told of several things about one patient in
# one request gets one message, the weightiest.
KINDS = ("note.urgent", "note.escalated", "observation.alert", "breakglass.opened", "note.mention", "patient.updated")
URGENT = {"note.urgent", "note.escalated", "observation.alert"}  # through quiet hours, and by mail too
PUSH_SETTING = {
    "note.urgent": "push_urgent",
    "note.escalated": "push_urgent",
    "observation.alert": "push_urgent",
    "breakglass.opened": "push_breakglass",
    "note.mention": "push_mentions",
    "patient.updated": "push_changes",
}
CHANGES = {"record.updated", "note.created", "attachment.created", "team.updated"}  # realtime events
EMAIL_CODE_SECONDS = 24 * 3600
CONFIRMATION_MAILS = 5  # per person and day
DEFAULTS = NotificationSettings(
    push_urgent=True,
    push_breakglass=True,
    push_mentions=True,
    push_changes=False,
    email_urgent=True,
    email_digest=False,
)


# --- naming what happened (services call these inside their request) ---------------------


def tell(kind: str, patient_id: str, user_ids, *, actor_id: str | None = None, **ids):
    """`user_ids` should hear that `kind` happened to the patient (never the actor, by
    default the caller: people are not told of their own doing). Decided and queued at
    commit."""
    actor_id = actor_id or (current_user.id if has_request_context() and current_user.is_authenticated else None)
    work.current().told.extend(
        work.Told(kind, patient_id, user_id, ids) for user_id in sorted(set(user_ids) - {actor_id})
    )


def mentioned(body: str, members: list[User]) -> list[str]:
    """The members a note names as @login (not as the start of a longer login) or as
    @display name with its spaces left out (Japanese names run on into the sentence)."""

    def squeezed(text: str) -> str:
        return text.replace(" ", "").replace("\u3000", "")

    return [
        m.id
        for m in members
        if re.search("@" + re.escape(m.login) + r"(?![A-Za-z0-9._-])", body)
        or (squeezed(m.display_name) and "@" + squeezed(m.display_name) in squeezed(body))
    ]


# Set after a commit that queued deliveries: this process's sender (renkei/outreach/deliveries.py)
# looks at once instead of at its next turn.
queued = threading.Event()


class QueueDeliveries:
    """The commit step (renkei/common/work.py): what the request told becomes deliveries
    in its transaction; once committed, this process's sender looks at once."""

    def before_commit(self, unit: work.Work):
        if unit.told:
            _queue(unit.told)

    def after_commit(self, unit: work.Work):
        if unit.told or unit.deliveries_queued:
            queued.set()


def _queue(told: list[work.Told]):
    """Turn what services told into deliveries, by each person's settings: for each
    person and patient one push, of the weightiest kind they want, and a mail if they
    want one. Nothing for people whose account is disabled. This runs in every write
    (any change may interest someone): people who want nothing cost one query."""
    kinds: dict[tuple[str, str], dict[str, dict]] = {}
    for t in told:
        kinds.setdefault((t.user_id, t.patient_id), {}).setdefault(t.kind, t.ids)
    prefs = dict(
        db.session.execute(
            select(User.id, NotificationSettings)
            .outerjoin(NotificationSettings, NotificationSettings.user_id == User.id)
            .where(User.id.in_({user_id for user_id, _ in kinds}), User.disabled.is_(False))
        ).all()
    )
    pushes, rows = {}, []
    for (user_id, patient_id), told_kinds in kinds.items():
        if user_id not in prefs:  # disabled
            continue
        setting = prefs[user_id] or DEFAULTS
        push = next((k for k in KINDS if k in told_kinds and _wants_push(setting, k)), None)
        if push:
            pushes[(user_id, patient_id)] = push
        rows += [
            dict(
                channel="mail",
                subscription_id=None,
                kind=kind,
                user_id=user_id,
                patient_id=patient_id,
                payload=_payload(kind, patient_id, told_kinds[kind]),
            )
            for kind in told_kinds
            if _wants_mail(prefs[user_id], kind)
        ]
    if pushes:
        devices: dict[str, list[str]] = {}
        for sub_id, user_id in db.session.execute(
            select(PushSubscription.id, PushSubscription.user_id).where(
                PushSubscription.user_id.in_({user_id for user_id, _ in pushes})
            )
        ):
            devices.setdefault(user_id, []).append(sub_id)
        pending = _pending_changes(
            [key for key, kind in pushes.items() if kind == "patient.updated" and devices.get(key[0])]
        )
        for (user_id, patient_id), push in pushes.items():
            if (user_id, patient_id) in pending:
                continue
            payload = _payload(push, patient_id, kinds[(user_id, patient_id)][push])
            rows += [
                dict(
                    channel="push",
                    subscription_id=sub_id,
                    kind=push,
                    payload=payload,
                    user_id=user_id,
                    patient_id=patient_id,
                )
                for sub_id in devices.get(user_id, ())
            ]
    now = utcnow()
    db.session.add_all(Delivery(**row, next_at=now, created_at=now) for row in rows)


def _payload(kind: str, patient_id: str, ids: dict) -> str:
    return json.dumps({"kind": kind, "patient_id": patient_id, **ids, "url": f"/patients/{patient_id}"})


def _wants_push(setting: NotificationSettings, kind: str) -> bool:
    if not getattr(setting, PUSH_SETTING[kind]):
        return False
    return kind in URGENT or not quiet_now(setting)


def _wants_mail(setting: NotificationSettings | None, kind: str) -> bool:
    """Urgent notes and alerts, to a confirmed address (quiet hours are for the phone's sound)."""
    return kind in URGENT and setting is not None and setting.email_urgent and setting.email_ct is not None


def _pending_changes(pairs: list[tuple[str, str]]) -> set:
    """Of these (person, patient), those with a 'patient.updated' push still waiting: one is enough."""
    if not pairs:
        return set()
    rows = db.session.execute(
        select(Delivery.user_id, Delivery.patient_id).where(
            Delivery.kind == "patient.updated", Delivery.user_id.in_({u for u, _ in pairs})
        )
    ).all()
    return {(user_id, patient_id) for user_id, patient_id in rows} & set(pairs)


def forget_patient(patient_id: str, user_id: str | None = None):
    """A person left the patient's team (or the patient was deleted: everyone): what was
    queued about the patient is not sent."""
    db.session.execute(
        delete(Delivery).where(Delivery.patient_id == patient_id, *([Delivery.user_id == user_id] if user_id else []))
    )


def forget_kind(patient_id: str, kind: str, note_id: str):
    """What was queued of one kind about one note is not sent (e.g. "still unread" once read)."""
    db.session.execute(
        delete(Delivery).where(
            Delivery.patient_id == patient_id, Delivery.kind == kind, Delivery.payload.contains(note_id)
        )
    )


def end_for(user_id: str):
    """A person's credentials ended (disabled, access reset): no device of theirs and no
    address hears anything more, and nothing queued for them is sent. After a reset they
    subscribe and confirm an address again — whoever held their account may have
    changed both."""
    webpush.remove_all(user_id)
    db.session.execute(
        update(NotificationSettings)
        .where(NotificationSettings.user_id == user_id)
        .values(email_ct=None, email_pending_ct=None, email_code_expires=None)
    )
    db.session.execute(delete(Delivery).where(Delivery.user_id == user_id))


def quiet_now(setting: NotificationSettings, now: datetime | None = None) -> bool:
    """Inside the person's quiet hours (Japan time; a window may cross midnight)."""
    if not setting.quiet_start or not setting.quiet_end:
        return False
    local = _japan(now or utcnow())
    start, end, at = time.fromisoformat(setting.quiet_start), time.fromisoformat(setting.quiet_end), local.time()
    return start <= at < end if start <= end else (at >= start or at < end)


def _japan(utc: datetime) -> datetime:
    """Japan has no daylight saving: UTC+9 all year."""
    return (utc + timedelta(hours=9)).replace(tzinfo=None)


# --- a person's settings -------------------------------------------------------------


def _row(user: User, lock: bool = False) -> NotificationSettings:
    stmt = select(NotificationSettings).where(NotificationSettings.user_id == user.id)
    row = db.session.execute(stmt.with_for_update() if lock else stmt).scalar()
    if row is None:
        row = NotificationSettings(user_id=user.id, email_mails_sent=0, **{c: getattr(DEFAULTS, c) for c in _FLAGS})
        db.session.add(row)
    return row


_FLAGS = ("push_urgent", "push_breakglass", "push_mentions", "push_changes", "email_urgent", "email_digest")


def settings_out(user: User) -> dict:
    row = db.session.get(NotificationSettings, user.id) or DEFAULTS
    quiet = {"start": row.quiet_start, "end": row.quiet_end} if row.quiet_start else None
    return {
        "push": {
            "urgent": row.push_urgent,
            "breakglass": row.push_breakglass,
            "mentions": row.push_mentions,
            "changes": row.push_changes,
        },
        "quiet_hours": quiet,
        "email": {
            "address": _address(row, "email_ct"),
            "pending": _pending(row).get("address"),
            "urgent": row.email_urgent,
            "digest": row.email_digest,
        },
    }


def update_settings(user: User, body: dict) -> dict:
    """Change what the caller wants to hear of; fields left out keep their value."""
    row = _row(user, lock=True)
    for name, value in body.get("push", {}).items():
        setattr(row, "push_" + name, value)
    for name in ("urgent", "digest"):
        if name in body.get("email", {}):
            setattr(row, "email_" + name, body["email"][name])
    if "quiet_hours" in body:
        quiet = body["quiet_hours"]
        row.quiet_start, row.quiet_end = (quiet["start"], quiet["end"]) if quiet else (None, None)
    db.session.flush()
    return settings_out(user)


# --- a person's e-mail address ----------------------------------------------------------


def _aad(row: NotificationSettings, column: str) -> str:
    return f"{column}|{row.user_id}"


def _address(row, column: str) -> str | None:
    blob = getattr(row, column, None)
    return crypto.unseal(vault.system_key("contacts"), blob, _aad(row, column)).decode() if blob else None


def _pending(row) -> dict:
    blob = getattr(row, "email_pending_ct", None)
    return crypto.unseal_json(vault.system_key("contacts"), blob, _aad(row, "email_pending_ct")) if blob else {}


def change_email(user: User, address: str | None):
    """A new address is kept aside until its owner opens the link mailed to it; none
    removes the address. At most CONFIRMATION_MAILS a day: the server's mail relay is
    not for mailing strangers."""
    row = _row(user, lock=True)
    if not address:
        row.email_ct = row.email_pending_ct = row.email_code_expires = None
        return settings_out(user)
    if not current_app.config["RENKEI"].smtp_url:
        raise Problem(409, "This server sends no e-mail (RENKEI_SMTP_URL is not set).")
    domain = address.rpartition("@")[2]
    if "." not in domain or domain.startswith("[") or re.fullmatch(r"[0-9.]+", domain):
        raise invalid({"address": ["An address at a mail domain (not localhost or an IP address)."]})
    now = utcnow()
    if row.email_mails_since is None or now - row.email_mails_since > timedelta(days=1):
        row.email_mails_since, row.email_mails_sent = now, 0
    if (row.email_mails_sent or 0) >= CONFIRMATION_MAILS:
        raise Problem(
            429,
            "Too many confirmation mails today; try again tomorrow.",
            headers={"Retry-After": str(int((row.email_mails_since + timedelta(days=1) - now).total_seconds()) + 1)},
        )
    row.email_mails_sent = (row.email_mails_sent or 0) + 1
    code = secrets.token_urlsafe(24)
    row.email_pending_ct = crypto.seal_json(
        vault.system_key("contacts"), {"address": address, "code": code}, _aad(row, "email_pending_ct")
    )
    row.email_code_expires = utcnow() + timedelta(seconds=EMAIL_CODE_SECONDS)
    db.session.add(
        Delivery(
            channel="mail",
            user_id=user.id,
            kind="email.confirm",
            payload=json.dumps({"kind": "email.confirm"}),
            next_at=utcnow(),
            created_at=utcnow(),
        )
    )
    work.current().deliveries_queued = True
    db.session.flush()
    return settings_out(user)


def confirm_email(user: User, code: str) -> dict:
    row = _row(user, lock=True)
    pending = _pending(row)
    if not pending or row.email_code_expires < utcnow() or not secrets.compare_digest(pending["code"], code):
        raise invalid({"code": ["Not the code of the latest link, or it has expired."]})
    row.email_ct = crypto.seal(vault.system_key("contacts"), pending["address"].encode(), _aad(row, "email_ct"))
    row.email_pending_ct = row.email_code_expires = None
    db.session.flush()
    return settings_out(user)


def mail_for(delivery: Delivery) -> tuple[str, str, str] | None:
    """(to, subject, text) of a queued mail, or None if it has no address any more."""
    row = db.session.get(NotificationSettings, delivery.user_id)
    if db.session.get(User, delivery.user_id).disabled:
        return None
    base = current_app.config["RENKEI"].public_url or ""
    payload = json.loads(delivery.payload)
    if delivery.kind == "email.confirm":
        pending = _pending(row) if row else {}
        if not pending:
            return None
        return (
            pending["address"],
            "[Renkei] メールアドレスの確認 / Confirm your e-mail address",
            "Renkei の通知先としてこのアドレスが登録されました。\n"
            "確認するには次のリンクを開き、サインインしてください（24時間有効）。\n"
            f"{base}/account/email#code={pending['code']}\n\n"
            "心当たりがなければ、このメールは無視してください。\n",
        )
    to = _address(row, "email_ct") if row else None
    if to is None:
        return None
    if delivery.kind == "digest":
        return (
            to,
            "[Renkei] 担当利用者の更新 / Updates on your patients",
            f"担当利用者に{payload['count']}件の更新があります。\n{base}{payload['url']}\n",
        )
    if delivery.kind == "note.escalated":
        return (
            to,
            "[Renkei] 至急の連絡が未確認です / An urgent message is unacknowledged",
            f"担当利用者への至急の連絡が、まだ医師・看護師に確認されていません。サインインして確認してください。\n{base}{payload['url']}\n",
        )
    if delivery.kind == "observation.alert":
        return (
            to,
            "[Renkei] バイタルが閾値を超えました / A reading crossed a threshold",
            f"担当利用者のバイタル・観察値がチームの設定した閾値を超えました。サインインして確認してください。\n{base}{payload['url']}\n",
        )
    return (
        to,
        "[Renkei] 至急の連絡があります / Urgent message",
        f"担当利用者に至急の連絡があります。サインインして確認してください。\n{base}{payload['url']}\n",
    )


# --- the daily digest -----------------------------------------------------------------


def queue_digests(now: datetime | None = None) -> int:
    """Once a day, from the configured hour (Japan time), a mail to each person who asked
    for it: how many changes their patients had since the last one. The conditional
    UPDATE makes exactly one process (and one run) take each person's day."""
    now = now or utcnow()
    local = _japan(now)
    if local.hour < current_app.config["RENKEI"].digest_hour:
        return 0
    today = local.date()
    taken = list(
        db.session.execute(
            update(NotificationSettings)
            .where(
                NotificationSettings.email_digest.is_(True),
                NotificationSettings.email_ct.is_not(None),
                NotificationSettings.user_id.in_(select(User.id).where(User.disabled.is_(False))),
                or_(NotificationSettings.digest_sent_on.is_(None), NotificationSettings.digest_sent_on < today),
            )
            .values(digest_sent_on=today)
            .returning(NotificationSettings.user_id)
        ).scalars()
    )
    queued = 0
    for user_id in taken:
        count = _changes_for(user_id, now - timedelta(days=1))
        if count:
            db.session.add(
                Delivery(
                    channel="mail",
                    user_id=user_id,
                    kind="digest",
                    next_at=utcnow(),
                    created_at=utcnow(),
                    payload=json.dumps({"kind": "digest", "count": count, "url": "/summary"}),
                )
            )
            queued += 1
    db.session.commit()
    return queued


def _changes_for(user_id: str, since: datetime) -> int:
    """Changes others made to the person's patients since `since` (their realtime events)."""
    rows = db.session.execute(
        select(UserEvent.name, UserEvent.payload).where(
            and_(UserEvent.user_id == user_id, UserEvent.created_at >= since, UserEvent.name.in_(CHANGES))
        )
    )
    return sum(1 for _, payload in rows if json.loads(payload).get("actor_id") != user_id)
