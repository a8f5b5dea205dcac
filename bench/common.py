"""Shared pieces of the benchmarks: a PostgreSQL and Redis of their own, server
processes, data generation, and a closed-loop HTTP load generator."""

import base64
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_and_redis():
    folder = tempfile.mkdtemp(prefix="renkei-bench-")
    os.chmod(folder, 0o777)
    pg = subprocess.run(
        ["bash", str(ROOT / "platform/postgres.sh"), "start", folder + "/pg", str(free_port())],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    redis = subprocess.run(
        ["bash", str(ROOT / "platform/redis.sh"), "start", folder + "/redis", str(free_port())],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    from sqlalchemy import create_engine, text

    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("CREATE DATABASE renkei"))
    admin.dispose()
    try:
        yield pg.rsplit("/", 1)[0] + "/renkei", redis, folder
    finally:
        subprocess.run(["bash", str(ROOT / "platform/redis.sh"), "stop", folder + "/redis"])
        subprocess.run(["bash", str(ROOT / "platform/postgres.sh"), "stop", folder + "/pg"])


def environment(db_url, folder, **extra) -> dict:
    key, audit_key = Path(folder) / "master.key", Path(folder) / "audit.key"
    for path in (key, audit_key):
        if not path.exists():
            path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    return {
        **os.environ,
        "RENKEI_DATABASE_URL": db_url,
        "RENKEI_MASTER_KEY_FILE": str(key),
        "RENKEI_AUDIT_KEY_FILE": str(audit_key),
        "RENKEI_SECRET_KEY": "bench" * 8,
        "RENKEI_INSTANCE_DIR": folder,
        "RENKEI_BENCH_ROUTES": "1",
        **{k: str(v) for k, v in extra.items()},
    }


PIDS: dict[int, int] = {}  # port → gunicorn master's pid, of the servers running now


@contextlib.contextmanager
def server(env: dict, workers=1):
    """gunicorn as deployed (platform/gunicorn.conf.py: gevent workers) on a free port."""
    port = free_port()
    env = env | {"RENKEI_PORT": str(port), "RENKEI_WORKERS": str(workers)}
    log = open(Path(env["RENKEI_INSTANCE_DIR"]) / f"gunicorn-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    PIDS[port] = proc.pid
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # open websockets hold the worker
            proc.kill()
            proc.wait()
        log.close()
        PIDS.pop(port, None)


def app_context(env: dict):
    """An in-process app on the benchmark database, for data generation."""
    for k, v in env.items():
        if k.startswith("RENKEI_"):
            os.environ[k] = v
    from renkei.app import create_app
    from renkei.settings import Settings

    app = create_app(Settings.from_env(argon2_time_cost=1, argon2_memory_cost=1024))
    return app


def _worker(port, requests_, headers, seconds, out, threads):
    counts, latencies = [0], []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n, lat = 0, []
        j = i
        while time.monotonic() < deadline:
            method, path, body, extra = requests_[j % len(requests_)]
            j += threads
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers | extra)
            r = conn.getresponse()
            r.read()
            lat.append(time.perf_counter() - t0)
            if r.status >= 400:
                raise SystemExit(f"{method} {path} -> {r.status}")
            n += 1
        with lock:
            counts[0] += n
            latencies.extend(lat)

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    out.put((counts[0], latencies))


def load(port, requests_, headers, seconds=6.0, processes=2, threads=4) -> dict:
    """Closed-loop load: processes × threads clients, each with a keep-alive connection.
    requests_ is a list of (method, path, body, headers), used round-robin."""
    out = mp.Queue()
    procs = [
        mp.Process(target=_worker, args=(port, requests_, headers, seconds, out, threads)) for _ in range(processes)
    ]
    started = time.monotonic()
    [p.start() for p in procs]
    results = [out.get() for _ in procs]
    [p.join() for p in procs]
    elapsed = time.monotonic() - started
    total = sum(n for n, _ in results)
    lat = sorted(x for _, times in results for x in times)
    return {
        "rps": total / seconds,
        "requests": total,
        "elapsed": elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
    }


def q(xs, p):
    """The p-quantile of xs (nearest rank), None for no values."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else None


def save(name: str, results: dict):
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
