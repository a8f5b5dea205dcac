"""Start real Renkei server processes (python wsgi.py) for tests that need them."""
import contextlib
import os
import socket
import subprocess
import sys
import time

import requests

from tests.conftest import ROOT


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
    command = ([sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py", "wsgi:app"]
               if gunicorn else [sys.executable, "wsgi.py"])
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
