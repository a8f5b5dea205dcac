"""Socket.IO (docs/API.md, "Realtime events"): a door onto the core. Each connection
joins only its own user's room; the core decides recipients per event from the current
team (renkei/notify.py), so a client can never subscribe to anything by name. Events
carry identifiers, never content. This package hears of committed events through the
unit of work's after-commit listeners (renkei/work.py); the core never calls it."""
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

import redis
from socketio import RedisManager
from flask import current_app, request
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, SocketIO, join_room  # not the builtin of that name
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout

from models import SocketOwner, SocketSession, User, utcnow
from renkei import auth, authz, db, notify, work

log = logging.getLogger("renkei.realtime")
socketio = SocketIO()
# What a client hears when the database cannot be reached (connect error data, or the
# resume acknowledgement): the page shows a banner and tries again after retry_after.
UNAVAILABLE = {"error": "unavailable", "retry_after": 7}
# This process's sockets: sid → the credential it was opened with (renkei.auth
# socket_credential). A sweeper closes those whose credential lapses by time (token
# expiry, idle session); sign-out, revocation and disabling close them at once.
_open: dict[str, dict] = {}
OWNER = f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process
# The name this process's Redis connections carry (CLIENT LIST), so it can tell whether
# its own subscriber is listening again after an outage.
QUEUE_CLIENT = "renkei-" + OWNER.replace(" ", "_")
RESYNC_EVERY = 3  # seconds between resume prompts while this process may be missing pushes
_sweeper = {"started": False, "lock": threading.Lock()}


def init_app(app, settings):
    queue = {}
    if settings.redis_url:
        # python-socketio logs two errors per push while Redis is down; _watch_queue logs
        # the outage once instead.
        quiet = logging.getLogger("renkei.realtime.queue")
        quiet.setLevel(logging.CRITICAL)
        queue["client_manager"] = RedisManager(settings.redis_url, channel="flask-socketio", logger=quiet,
                                               redis_options={"client_name": QUEUE_CLIENT})
    socketio.init_app(app, async_mode="threading", **queue,
                      # None = same origin only; never "*".
                      cors_allowed_origins=settings.allowed_origins or None,
                      logger=False, engineio_logger=False)
    work.subscribe(app, after_commit)


def _watch_queue(url: str):
    """Pushes published while this process is not subscribed to the message queue never
    reach its sockets: Redis down (python-socketio gives up publishing quietly) and, after
    Redis returns, until python-socketio's subscriber reconnects (its back-off grows to
    60 s). All that while, tell this process's own sockets directly (not through the
    queue) to resume every few seconds — they fetch what they missed from the database —
    and once more when the subscriber listens again."""
    client, whole, prompted = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1), None, 0.0
    while True:
        socketio.sleep(1)
        now_whole = _subscribed(client)
        if whole is None:  # the first look: the subscriber may still be starting
            whole = now_whole
        if whole and not now_whole:
            log.warning("not subscribed to the message queue: sockets here are told to resume every %d s",
                        RESYNC_EVERY)
        if now_whole and not whole:
            log.warning("subscribed to the message queue again; %d sockets here are told to resume", len(_open))
        if (now_whole and not whole) or (not now_whole and time.monotonic() - prompted >= RESYNC_EVERY):
            _prompt_resume()
            prompted = time.monotonic()
        whole = now_whole


def _subscribed(client) -> bool:
    """Is this process's own subscriber connected to the message queue? Where Redis does
    not allow CLIENT LIST (an ACL, a managed service), fall back to "Redis answers"."""
    try:
        if not _can_list["yes"]:
            return bool(client.ping())
        return any(c.get("name") == QUEUE_CLIENT and int(c.get("sub", 0)) > 0 for c in client.client_list(_type="pubsub"))
    except redis.exceptions.NoPermissionError:
        _can_list["yes"] = False
        log.warning("Redis refuses CLIENT LIST: this process can only tell whether Redis answers, "
                    "not whether its subscriber is listening again after an outage")
        return _subscribed(client)
    except (redis.RedisError, ValueError):
        return False


_can_list = {"yes": True}


def _prompt_resume():
    for sid in list(_open):
        try:
            socketio.server.emit("resync", {}, to=sid, ignore_queue=True)
        except Exception:
            log.warning("could not prompt a socket to resume")


def _room(user_id: str) -> str:
    return "user:" + user_id


def push(user_id: str, name: str, payload: dict):
    """Send a committed event to one user's connections in every process. If the
    message queue is down the event is still stored; the client gets it on resume."""
    try:
        socketio.emit(name, payload, to=_room(user_id))
    except Exception:
        log.warning("could not push %s (seq %s); the client will get it on resume",
                    name, payload.get("seq"))


def after_commit(events: list[tuple[str, str, dict]], ended: list[tuple[str, str]]):
    """Push committed events off the request thread: the writer's response does not wait
    for fan-out to every connection (the events are stored; resume covers a lost push).
    Then close the sockets of sessions that ended (sign-out, revoked token, disabled)."""
    if events:
        socketio.start_background_task(lambda: [push(*event) for event in events])
    for kind, ident in ended:
        if kind == "user":
            disconnect_user(ident)
        else:
            disconnect_token(ident)


def _socket_user():
    """A bearer token in the handshake's auth, else the browser's session cookie."""
    data = getattr(request, "socket_auth", None)
    token = data.get("token") if isinstance(data, dict) else None
    if isinstance(token, str) and token:
        user = auth.user_for_token(token)
        return user, (work.current().token if user else None)
    if current_user and current_user.is_authenticated and work.current().cookie_auth:
        return current_user._get_current_object(), None
    return None, None


@socketio.on("connect")
def on_connect(auth_data=None):
    request.socket_auth = auth_data
    try:
        try:
            user, token = _socket_user()
        except (DBAPIError, PoolTimeout):  # tell the client, do not leave it waiting
            raise ConnectionRefusedError("unavailable", UNAVAILABLE)
        credential = auth.socket_credential(user, token) if user else None
        if credential and (credential["until"] <= utcnow() or auth.must_enrol_totp(user)):
            user = None  # an idle cookie session, or a second factor still to enrol
        unit = work.current()
        unit.record("realtime.connect", "ok" if user else "unauthenticated", actor=user)
        if user is not None:
            db.session.add(SocketSession(sid=request.sid, user_id=user.id, token_id=token.id if token else None,
                                         owner=OWNER))
        try:
            unit.commit()
        except (DBAPIError, PoolTimeout):
            raise ConnectionRefusedError("unavailable", UNAVAILABLE)
    finally:
        db.session.remove()
    if user is None:
        raise ConnectionRefusedError("authentication required")
    _open[request.sid] = credential
    _start_sweeper(current_app._get_current_object())
    join_room(_room(user.id))


def _heartbeat(interval: float):
    """Say this process is alive; remove the socket rows of processes that stopped
    saying so (killed with -9: their sockets died with them)."""
    now = utcnow()
    if db.session.execute(update(SocketOwner).where(SocketOwner.owner == OWNER).values(seen_at=now)).rowcount == 0:
        db.session.add(SocketOwner(owner=OWNER, seen_at=now))
    gone = select(SocketOwner.owner).where(SocketOwner.seen_at < now - timedelta(seconds=max(2, 4 * interval)))
    db.session.execute(delete(SocketSession).where(SocketSession.owner.in_(gone)))
    db.session.execute(delete(SocketOwner).where(SocketOwner.owner.in_(gone)))
    db.session.commit()


def _close_after_ack(sid: str):
    socketio.sleep(1)  # let the acknowledgement ("signed out") reach the client first
    socketio.server.disconnect(sid)


def _start_sweeper(app):
    """This process's background watchers, started with its first socket."""
    with _sweeper["lock"]:
        if _sweeper["started"]:
            return
        _sweeper["started"] = True
    socketio.start_background_task(_sweep, app)
    if app.config["RENKEI"].redis_url:
        socketio.start_background_task(_watch_queue, app.config["RENKEI"].redis_url)


def _sweep(app):
    """Close this process's sockets whose credential no longer holds: expired or idle by
    time, and — in case a sign-out's disconnect never arrived (message queue down) —
    revoked, disabled or signed out, checked against the database."""
    while True:
        interval = app.config["RENKEI"].socket_sweep_seconds
        socketio.sleep(interval)
        try:
            with app.app_context():
                lapsed = [sid for sid, credential in list(_open.items()) if not auth.credential_holds(credential)]
                _heartbeat(interval)
                db.session.remove()
        except Exception:  # database unreachable: at least what lapsed by time
            log.warning("could not check open sockets' credentials against the database")
            now = utcnow()
            lapsed = [sid for sid, credential in list(_open.items()) if credential["until"] <= now]
        for sid in lapsed:
            _open.pop(sid, None)
            try:
                socketio.server.disconnect(sid)
            except Exception:
                log.warning("could not close a socket whose credential lapsed")


@socketio.on("disconnect")
def on_disconnect(reason=None):
    _open.pop(request.sid, None)
    try:
        db.session.execute(delete(SocketSession).where(SocketSession.sid == request.sid))
        db.session.commit()
    finally:
        db.session.remove()


@socketio.on("resume")
def on_resume(data=None):
    """Replay every stored event after `since`, in seq order, of patients the person
    may still see; the ack's seq says where the replay ended (it is authoritative: a
    dropped event leaves no gap for the client to chase). First re-check the socket's
    credential: a lapsed or revoked one closes the socket instead."""
    since = data.get("since", 0) if isinstance(data, dict) else 0
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        return {"error": "since must be a non-negative integer"}
    sid = request.sid
    try:
        return _replay(sid, since)
    except (DBAPIError, PoolTimeout):  # the database is away: say so; the client retries
        return UNAVAILABLE
    finally:
        db.session.remove()


def _replay(sid: str, since: int) -> dict:
    row = db.session.get(SocketSession, sid)
    credential = _open.get(sid)
    if row is None or credential is None:
        return {"error": "not connected"}
    if not auth.credential_holds(credential):
        _open.pop(sid, None)
        socketio.start_background_task(_close_after_ack, sid)
        return {"error": "signed out"}
    user = db.session.get(User, row.user_id)
    last, replayed = since, 0
    while True:
        batch = notify.events_since(row.user_id, last)
        visible = authz.visible_patients(user, {p["patient_id"] for _, p in batch})
        for name, payload in batch:
            last = payload["seq"]
            if payload["patient_id"] in visible or (user.is_admin and name == "breakglass.opened"):
                # Straight to the local socket: the replay must not depend on the message
                # queue it may be making up for.
                socketio.server.emit(name, payload, to=sid, ignore_queue=True)
                replayed += 1
        if len(batch) < 1000:
            break
    return {"replayed": replayed, "seq": last}


def _disconnect(where):
    sids = list(db.session.execute(select(SocketSession.sid).where(where)).scalars())
    for sid in sids:
        try:
            socketio.server.disconnect(sid)  # reaches other processes through the queue
        except Exception:
            log.warning("could not disconnect a socket")
    return len(sids)


def disconnect_token(token_id: str):
    return _disconnect(SocketSession.token_id == token_id)


def disconnect_user(user_id: str):
    return _disconnect(SocketSession.user_id == user_id)
