"""Fan-out across server processes (docs/ARCHITECTURE.md, "Realtime fan-out"): one
message per commit, published on Redis, reaches every process; each hands each event to
its own sockets of the recipients, with that recipient's own seq. Without Redis (one
process) the committing process delivers to its own sockets only.

Why not python-socketio's Redis manager: it publishes one message per emit, and with a
seq of each recipient's own every recipient's event is its own emit — so every process
received and decoded every recipient's message, most of them for sockets it did not hold.

Messages carry identifiers and seqs, never content (the same as the events)."""

import atexit
import json
import logging
import queue
import threading
import time
from collections import deque
from datetime import datetime

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models import utcnow

log = logging.getLogger("renkei.realtime")
CHANNEL = "renkei:realtime"
RESYNC_EVERY = 3  # seconds between resume prompts while this process may be missing messages


def _redis(url: str, **options) -> redis.Redis:
    # No retries inside redis-py: a subscriber it reconnected quietly would have missed
    # messages without anyone being told to resume, and a publish must not hold up the
    # sender for seconds while Redis is away.
    return redis.Redis.from_url(url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0), **options)


class Fanout:
    def __init__(self, owner: str):
        self.owner = owner  # this process, as its messages name it
        self.server = None  # the python-socketio server holding this process's sockets
        self.url = None  # Redis, or None: one process
        self.users: dict[str, str] = {}  # sid → user id, this process's sockets
        self.sids: dict[str, tuple[str, ...]] = {}  # user id → sids; replaced whole, read unlocked
        self.until: dict[str, datetime] = {}  # sid → when its credential lapses by itself
        self.lock = threading.Lock()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.started: set[str] = set()  # "sender", "listener": threads running
        self.publish_after = 0.0  # after a failed publish, Redis is not tried again for a second
        self.unsent = False  # a message was not published: the next one says "resync"
        self.unsent_closes: list[str] = []  # sids whose close was not published: sent with the next
        self.pending = 0  # messages queued or being sent (flush waits for 0)
        self.trace: deque | None = None  # benchmarks only: see realtime.TRACE

    def init(self, server, url: str | None, trace: deque | None):
        self.server, self.url, self.trace = server, url, trace

    # -- this process's sockets -------------------------------------------------------

    def opened(self, sid: str, user_id: str, until: datetime | None = None):
        with self.lock:
            self.users[sid] = user_id
            if until is not None:
                self.until[sid] = until
            self.sids[user_id] = self.sids.get(user_id, ()) + (sid,)
        if self.url:
            self._start("listener")

    def closed(self, sid: str):
        with self.lock:
            user_id = self.users.pop(sid, None)
            self.until.pop(sid, None)
            rest = tuple(s for s in self.sids.get(user_id, ()) if s != sid)
            if rest:
                self.sids[user_id] = rest
            else:
                self.sids.pop(user_id, None)

    # -- sending ----------------------------------------------------------------------

    def send(self, events: list, disconnect: list[str]):
        """After a commit: `events` as renkei.outreach.events.store returns them, `disconnect` the
        sids to close wherever they are. Handed to the sender thread: the writer's
        response does not wait for the fan-out."""
        self._start("sender")
        with self.lock:
            self.pending += 1
        self.outbox.put({"from": self.owner, "committed": time.time(), "events": events, "disconnect": disconnect})

    def flush(self, timeout: float = 3.0):
        """Wait until what was queued has been sent: a command (reset-access) ends its
        process right after its commit, and the sessions it ended must still close."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)

    def _send_forever(self):
        client = None
        while True:
            try:
                message = self.outbox.get(timeout=1)
            except queue.Empty:  # idle: a good time to announce messages Redis did not take
                message = None
            try:
                if self.url and client is None:
                    client = _redis(self.url, socket_timeout=1)
                if client is not None and (message is not None or self.unsent):
                    # first, so the other processes deliver while this one does
                    self._publish(client, message or {"from": self.owner, "events": [], "disconnect": []})
                if message is not None:
                    self._deliver(message)
            except Exception:  # never let the sender die: the events are stored, clients resume
                log.exception("fan-out of a commit failed; its clients get the events on resume")
            finally:
                if message is not None:
                    with self.lock:
                        self.pending -= 1

    def _publish(self, client, message):
        """Publish; if an earlier message could not be, this one tells every other process
        to have its sockets resume (they fetch the events that message carried) and
        carries the closes it held."""
        closes = self.unsent_closes + list(message.get("disconnect", ()))
        if time.monotonic() < self.publish_after:  # Redis failed a moment ago: not again for a second
            self.unsent, self.unsent_closes = True, closes
            return
        try:
            client.publish(
                CHANNEL, json.dumps({**message, "disconnect": closes, "resync": self.unsent}, separators=(",", ":"))
            )
            self.unsent, self.unsent_closes = False, []
        except redis.RedisError:
            self.publish_after, self.unsent, self.unsent_closes = time.monotonic() + 1, True, closes
            log.warning(
                "could not publish to the message queue; other processes' sockets are told to "
                "resume once it takes messages again"
            )

    # -- receiving --------------------------------------------------------------------

    def _listen_forever(self):
        """Deliver every other process's messages. While not subscribed (Redis down, or
        reconnecting), messages published meanwhile never arrive: tell this process's
        sockets to resume from the database every few seconds, and once more on
        subscribing again."""
        # down at first too: a socket's resume on connect may have read the database before
        # this subscription began, so the sockets here resume once more when it has.
        prompted, down, pubsub = 0.0, True, None
        while True:
            try:
                pubsub = _redis(self.url, socket_timeout=5, health_check_interval=3).pubsub(
                    ignore_subscribe_messages=True
                )
                pubsub.subscribe(CHANNEL)
                pubsub.get_message(timeout=0.1)  # the subscription's confirmation
                if down:
                    if prompted:
                        log.warning(
                            "subscribed to the message queue again; %d sockets here are told to resume", len(self.users)
                        )
                    self._prompt_resume()
                    down = False
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._receive(message["data"])
            except Exception as exc:  # Redis away, or anything else: never let the listener die
                if not down:
                    log.warning(
                        "not subscribed to the message queue (%s): sockets here are told to resume every %d s",
                        type(exc).__name__,
                        RESYNC_EVERY,
                    )
                down = True
                if time.monotonic() - prompted >= RESYNC_EVERY:
                    self._prompt_resume()
                    prompted = time.monotonic()
                try:
                    pubsub and pubsub.close()
                except Exception:
                    pass
                time.sleep(1)

    def _receive(self, raw: bytes):
        try:
            message = json.loads(raw)
            if message.get("from") != self.owner:  # this process delivered its own already
                self._deliver(message)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("ignored a malformed message on %s", CHANNEL)
        except Exception:  # never let the listener die over one message
            log.exception("could not deliver a message from %s", CHANNEL)

    def _deliver(self, message: dict):
        # Closes first: a session that ended is sent nothing more. Each close runs the
        # socket's disconnect handler (a database write), so not on this thread.
        for sid in message.get("disconnect", ()):
            if sid in self.users:
                self.closed(sid)
                threading.Thread(target=self._close, args=(sid,), daemon=True).start()
        now = utcnow()  # a socket whose token expired hears nothing more, even before the sweep closes it
        for name, body, seqs in message.get("events", ()):
            stamps = [] if self.trace is not None else None
            for user_id, seq in seqs.items():
                for sid in self.sids.get(user_id, ()):
                    until = self.until.get(sid)
                    if until is not None and until <= now:
                        continue
                    self._emit(name, {**body, "seq": seq}, sid)
                    if stamps is not None:
                        stamps.append(time.time())
            if stamps:
                self.trace.append(
                    (
                        name,
                        body["patient_id"],
                        str(body.get("version", body.get("note_id", ""))),
                        message["committed"],
                        stamps,
                        len(stamps),
                    )
                )
        if message.get("resync"):  # another process could not publish for a while
            self._prompt_resume()

    def _close(self, sid: str):
        try:
            self.server.disconnect(sid)
        except Exception:
            log.warning("could not disconnect a socket")

    def _emit(self, name: str, payload, sid: str):
        try:
            self.server.emit(name, payload, to=sid)
        except Exception:  # the socket closing meanwhile; its client resumes on reconnect
            log.warning("could not push %s to a socket; the client gets it on resume", name)

    def _prompt_resume(self):
        for sid in list(self.users):
            self._emit("resync", {}, sid)

    def _start(self, which: str):
        """Once per process, at first use: the sender with the first commit that names an
        event, the listener (with Redis) with the first socket."""
        with self.lock:
            if which in self.started:
                return
            self.started.add(which)
        if which == "sender":
            atexit.register(self.flush)  # a command's process ends right after its commit
        target = self._send_forever if which == "sender" else self._listen_forever
        threading.Thread(target=target, name="renkei-fanout-" + which, daemon=True).start()
