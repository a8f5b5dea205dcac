"""Start real Renkei server processes (python wsgi.py, or gunicorn) for tests that need them."""

import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import socketio

from tests.helpers import ROOT, Api, build_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_server(env: dict, timeout: float = 30, gunicorn: bool = False, handle: list | None = None):
    """Run `python wsgi.py` (or gunicorn with platform/gunicorn.conf.py) until the block ends.
    `handle`, if given, receives the Popen so a test can kill the server."""
    port = env["RENKEI_PORT"]
    log = open(os.path.join(env.get("RENKEI_INSTANCE_DIR", "/tmp"), f"server-{port}.log"), "w")
    command = (
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py", "wsgi:app"]
        if gunicorn
        else [sys.executable, "wsgi.py"]
    )
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if handle is not None:
        handle.append(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + open(log.name).read()[-2000:])
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Listener:
    """A Socket.IO client that records every event it gets."""

    def __init__(self, base, token):
        self.events, self.lock, self.resyncs = [], threading.Lock(), 0
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._got)
        # "resync" asks the client to resume (a process's subscription began or came back);
        # it carries nothing and is counted apart from the events.
        self.sio.on("resync", self._resync)
        self.sio.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)

    def _resync(self, *_):
        with self.lock:
            self.resyncs += 1

    def _got(self, name, data):
        with self.lock:
            self.events.append((name, data))

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} events, got {self.events}")

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


class World:
    """A team (cm, doc, ns), an outsider and the data a test needs, in a database
    the server processes share; tokens are real bearer tokens."""

    def __init__(self, url, tmp: Path):
        self.key = secrets.token_bytes(32)
        self.env = os.environ | {
            "RENKEI_DATABASE_URL": url,
            "RENKEI_INSTANCE_DIR": str(tmp),
            "RENKEI_MASTER_KEY": base64.b64encode(self.key).decode(),
            "RENKEI_SECRET_KEY": "t" * 32,
        }
        self.app = app = build_app(url, self.key)
        self.api = Api(app)
        for name, prof in [
            ("cm", "care_manager"),
            ("doc", "physician"),
            ("ns", "nurse"),
            ("out", "nurse"),
            ("er", "physician"),
        ]:
            self.api.user(name, prof)
        self.pid = self.api.patient("cm")
        self.api.join(self.pid, "doc", "primary_physician", by="cm")
        self.api.join(self.pid, "ns", "nurse", by="cm")
        self.tokens = self.api.tokens
        self.ids = {k: v["id"] for k, v in self.api.users.items()}
        app.extensions["renkei.engine"].dispose()

    def server(self, gunicorn=False, **env):
        """`python wsgi.py` (threads), or one gunicorn worker as deployed (gevent)."""
        workers = {"RENKEI_WORKERS": "1"} if gunicorn else {}
        return start_server(self.env | {"RENKEI_PORT": str(free_port())} | workers | env, gunicorn=gunicorn)

    def put(self, base, who, section, content, version):
        r = requests.put(
            f"{base}/api/v1/patients/{self.pid}/record/{section}",
            json={"content": content},
            headers={"Authorization": "Bearer " + self.tokens[who], "If-Match": f'"{version}"'},
        )
        assert r.status_code == 200, r.text
        return r.json()
