"""Socket.IO (docs/API.md, "Realtime events"): a door onto the core. A connection is
known only as its person's; the core decides recipients per event from the current
team (renkei/outreach/events.py), so a client can never subscribe to anything by name. Events
carry identifiers, never content. This package hears of committed events through the
unit of work's after-commit listeners (renkei/common/work.py); the core never calls it;
realtime/fanout.py carries them to every server process's sockets."""

import collections
import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from flask import current_app, request
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, SocketIO  # not the builtin of that name
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models import SocketOwner, SocketSession, User, utcnow
from realtime.fanout import Fanout
from renkei.common import db, offload, work
from renkei.outreach import events
from renkei.patients import authz
from renkei.people import auth

log = logging.getLogger("renkei.realtime")
socketio = SocketIO()
# What a client hears when the database cannot be reached (connect error data, or the
# resume acknowledgement): the page shows a banner and tries again after retry_after.
UNAVAILABLE = {"error": "unavailable", "retry_after": 7}
# This process's sockets: sid → the credential it was opened with (renkei.people.auth
# socket_credential). A sweeper closes those whose credential lapses by time (token
# expiry, idle session); sign-out, revocation and disabling close them within moments,
# in every process (realtime/fanout.py; the sweeper, if that message was lost).
_open: dict[str, dict] = {}
OWNER = f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process
fanout = Fanout(OWNER.replace(" ", "_"))
_sweeper = {"started": False, "lock": threading.Lock()}
# Benchmarks only (RENKEI_BENCH_ROUTES=1, bench/fanout.py reads it at /_bench/fanout): for
# each event handed to this process's sockets, (name, patient, key, commit time, emit
# times, sockets reached), wall-clock seconds.
TRACE = collections.deque(maxlen=200_000) if os.environ.get("RENKEI_BENCH_ROUTES") == "1" else None


def init_app(app, settings):
    # No python-socketio message queue: processes share events through realtime/fanout.py
    # (one message per commit), so an emit here reaches this process's sockets only.
    socketio.init_app(
        app,
        async_mode=async_mode(),
        # None = same origin only; never "*".
        cors_allowed_origins=settings.allowed_origins or None,
        logger=False,
        engineio_logger=False,
    )
    app.wsgi_app = _uncompressed(app.wsgi_app)  # outside Socket.IO's middleware: sees the handshake first
    fanout.init(socketio.server, settings.redis_url, TRACE)
    work.install(app, SendCommitted())


def async_mode() -> str:
    """gevent in a process gevent has patched (gunicorn's worker, platform/gunicorn.conf.py):
    a websocket is a greenlet, and an event handed to 1,000 of them costs no thread
    wake-ups. Threads elsewhere: `python wsgi.py` (Werkzeug's server, one machine's
    trial), commands, and tests in-process, whose threads are real."""
    return "gevent" if offload.gevent_serves() else "threading"


def _uncompressed(wsgi_app):
    """Websockets without permessage-deflate (docs/ARCHITECTURE.md, "Realtime fan-out"):
    every browser offers it and simple-websocket accepts every offer, but events are
    a hundred bytes of identifiers; compressing each one costs the server and the
    client more than sending it (bench/socket_modes.py). Dropping the offer from the
    handshake is the only hook: the server accepts what it is offered."""

    def without_offer(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/socket.io"):
            environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return wsgi_app(environ, start_response)

    return without_offer


class SendCommitted:
    """Realtime's commit step (renkei/common/work.py): once a change has committed, hand
    its stored events to every process's sockets of their recipients, and close the
    sockets of sessions that ended (sign-out, revoked token, disabled) wherever they
    are. The events are stored: a client that misses a push gets it on resume."""

    def before_commit(self, unit: work.Work):
        pass

    def after_commit(self, unit: work.Work):
        if unit.stored or unit.ended:
            after_commit([(e.name, e.body, e.seqs) for e in unit.stored], unit.ended)


def after_commit(committed: list[tuple[str, dict, dict]], ended: list[tuple[str, str]]):
    closing = []
    try:
        for kind, ident in ended:
            closing += _sids(SocketSession.user_id == ident if kind == "user" else SocketSession.token_id == ident)
    except (DBAPIError, PoolTimeout):  # the change has committed: send its events all the same
        log.warning("could not look up the sockets of ended sessions; the sweeper closes them")
        db.session.rollback()
    if committed or closing:
        fanout.send(committed, closing)


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
        if credential and (
            credential["until"] <= utcnow() or auth.enrolment_only(user) or user.confirmed_at is None
        ):  # an unconfirmed account hears of no patient
            user = None  # an idle cookie session, or a second factor still to enrol
        unit = work.current()
        unit.add_entry("realtime.connect", "ok" if user else "unauthenticated", actor=user)
        if user is not None:
            db.session.add(
                SocketSession(sid=request.sid, user_id=user.id, token_id=token.id if token else None, owner=OWNER)
            )
        try:
            unit.commit()
        except (DBAPIError, PoolTimeout):
            raise ConnectionRefusedError("unavailable", UNAVAILABLE)
    finally:
        db.session.remove()
    if user is None:
        raise ConnectionRefusedError("authentication required")
    _open[request.sid] = credential
    fanout.opened(request.sid, user.id, credential["until"])
    _start_sweeper(current_app._get_current_object())


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
    fanout.closed(sid)  # sent nothing more meanwhile
    socketio.sleep(1)  # let the acknowledgement ("signed out") reach the client first
    socketio.server.disconnect(sid)


def _start_sweeper(app):
    """This process's sweeper, started with its first socket."""
    with _sweeper["lock"]:
        if _sweeper["started"]:
            return
        _sweeper["started"] = True
    socketio.start_background_task(_sweep, app)


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
    fanout.closed(request.sid)
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
        batch = events.events_since(row.user_id, last)
        visible = authz.visible_patients(user, {p["patient_id"] for _, p in batch})
        for name, payload in batch:
            last = payload["seq"]
            if payload["patient_id"] in visible or (user.is_admin and name == "breakglass.opened"):
                socketio.server.emit(name, payload, to=sid)  # this process's socket: no queue
                replayed += 1
        if len(batch) < 1000:
            break
    return {"replayed": replayed, "seq": last}


def _sids(where) -> list[str]:
    return list(db.session.execute(select(SocketSession.sid).where(where)).scalars())
