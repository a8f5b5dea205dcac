"""Long CPU work off a gevent worker's only thread. Under gunicorn each worker serves its
requests and websockets as greenlets of one thread (platform/gunicorn.conf.py); a
password hash (about 170 ms) or a photo's decoding would hold all of them up. Argon2
and Pillow release the GIL, so on a real thread they run beside the greenlets. Work
that stays in Python (sealing, verifying, exporting the access log) `pause`s between
batches instead.

`run` takes the same path wherever the service runs: on a real thread of this
process's pool, without the app context, under gevent and under `python wsgi.py`,
commands and tests alike. (It once called directly outside gevent, so a function that
needed the app context passed every test and answered 500 under gunicorn: issue 29.)"""

import concurrent.futures
import contextlib
import functools
import os
import threading
import time

from gevent import monkey
from gevent.threadpool import ThreadPool


def gevent_serves() -> bool:
    """This process was patched by gevent (gunicorn's worker) before the app loaded."""
    return monkey.is_module_patched("socket")


def run(fn, *args):
    """fn(*args) on a real thread, its result or its exception. fn gets no app context:
    read what it needs (settings, keys) before and pass it in."""
    if gevent_serves():

        def caught():  # raised here, not logged by gevent's pool as a failure
            try:
                return fn(*args), None
            except Exception as exc:
                return None, exc

        result, exc = _gevent_threads().apply(caught)
        if exc is not None:
            raise exc
        return result
    return _threads().submit(fn, *args).result()


def _size() -> int:
    return max(2, os.cpu_count() or 2)


@functools.cache
def _gevent_threads() -> ThreadPool:
    """This worker's pool, one thread per core, made at first use (after gunicorn's fork).
    Not gevent's hub pool: that one also resolves host names (the database's, Redis's),
    which must not queue behind a burst of sign-ins."""
    return ThreadPool(_size())


@functools.cache
def _threads() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(_size(), thread_name_prefix="offload")


def pause():
    """Let the worker's other greenlets (or threads) run: between batches of long work."""
    time.sleep(0)


class Full(Exception):
    """Too much of one kind of work is waiting for this process's threads."""


class Queue:
    """A bounded queue for one kind of long work (password hashes): `admit` lets a
    request in while fewer than `limit` are waiting or running, else raises Full at once,
    before the request has touched anything — so a burst is shed in microseconds instead
    of holding database connections while it waits (issue 29). It also keeps the recent
    typical time of the work, for callers that must take as long without doing it."""

    def __init__(self):
        self._lock, self.inside, self.typical = threading.Lock(), 0, 0.0

    @contextlib.contextmanager
    def admit(self, limit: int):
        with self._lock:
            if self.inside >= limit:
                raise Full()
            self.inside += 1
        try:
            yield self
        finally:
            with self._lock:
                self.inside -= 1

    def run(self, fn, *args):
        """fn on a real thread (`run`), its time, waiting included, kept in `typical`."""
        started = time.monotonic()
        try:
            return run(fn, *args)
        finally:
            took = time.monotonic() - started
            self.typical = took if not self.typical else 0.8 * self.typical + 0.2 * took


passwords = Queue()  # this process's password hashes (renkei/people/auth.py)
