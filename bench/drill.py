"""The fault drill (issue 11): the production-like stack — PostgreSQL with fsync on, Redis,
gunicorn with two workers — under a steady mix of section writes, notes and reads from
writer clients and 20 Socket.IO listeners, while one fault after another is injected.

Clients behave as the pages do: a note carries an Idempotency-Key and is resent with it
until answered; a section write whose answer was lost is checked against the section
before it is sent again; 503 and 409 wait for Retry-After. Listeners keep their seq
gapless the page's way (static/app.js): resume on a gap, on (re)connect, on "resync" and
every 30 s while idle.

Per fault it prints: answers by status, latency, time to recover after the fault ends,
acknowledged writes lost (must be 0), duplicated notes (must be 0), events a listener
still misses after its own resumes (must be 0), and the access log's verification.
The table for platform/DEPLOY.md is written to bench/results/drill.md.

Usage:  python bench/drill.py [--only redis,sigstop,...] [--code DIR]
  --code DIR  serve the Renkei found in DIR (e.g. a checkout of an older commit) to
              measure "before"; the drill's clients stay the same.
Needs root for the full-disk fault (PostgreSQL's data on a small tmpfs); without it that
fault is skipped."""

import argparse
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import socketio
from common import ROOT, app_context, environment, free_port, save

PG, REDIS = str(ROOT / "platform/postgres.sh"), str(ROOT / "platform/redis.sh")
WRITERS, LISTENERS, PATIENTS_PER_WRITER = 8, 20, 3
SLOW_UPLOADERS = 70


class Stats:
    """What the clients saw during one fault's window."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.latencies: list[float] = []
        self.ok_writes_at: list[float] = []

    def saw(self, status, latency, write_ok=False):
        with self.lock:
            self.statuses[status] += 1
            if isinstance(status, int):
                self.latencies.append(latency)
            if write_ok:
                self.ok_writes_at.append(time.monotonic())


class Writer(threading.Thread):
    """A member of the team writing sections and notes on its own patients, and reading."""

    def __init__(self, base, token, pids, acked, versions, phase, seed):
        super().__init__(daemon=True)
        self.base, self.pids, self.acked, self.version = base, pids, acked, versions
        self.headers = {"Authorization": "Bearer " + token, "Connection": "close"}
        self.rng, self.stats, self.running, self.n = random.Random(seed), Stats(), True, 0
        self.name_ = f"{phase}-w{seed}"

    def call(self, method, path, body=None, extra=None, write=False):
        started = time.monotonic()
        try:  # a new connection each time: a frozen worker holds only what it accepted
            r = requests.request(method, self.base + path, json=body, headers=self.headers | (extra or {}), timeout=30)
        except requests.Timeout:
            self.stats.saw("timeout", time.monotonic() - started)
            return None
        except requests.ConnectionError:
            self.stats.saw("no answer", time.monotonic() - started)
            return None
        self.stats.saw(r.status_code, time.monotonic() - started, write and r.status_code < 300)
        return r

    def wait(self, r):
        time.sleep(float(r.headers.get("Retry-After", 1)) if r is not None else 1)

    def put(self, pid):
        marker = f"{self.name_}-{self.n}"
        path = f"/api/v1/patients/{pid}/record/condition"
        for _ in range(100):
            r = self.call("PUT", path, {"content": {"summary": marker}}, {"If-Match": f'"{self.version[pid]}"'}, True)
            if r is not None and r.status_code == 200:
                self.version[pid] = r.json()["version"]
                self.acked.append(("section", pid, self.version[pid], marker))
                return
            if r is not None and r.status_code == 412 or r is None:
                now = self.call("GET", path)  # did the attempt whose answer was lost land?
                if now is not None and now.status_code == 200:
                    current = now.json()
                    if (current.get("content") or {}).get("summary") == marker:
                        self.version[pid] = current["version"]
                        self.acked.append(("section", pid, self.version[pid], marker))
                        return
                    self.version[pid] = current["version"]
                    continue
            self.wait(r)

    def note(self, pid):
        marker, key = f"{self.name_}-{self.n}", uuid.uuid4().hex
        for _ in range(100):
            r = self.call(
                "POST",
                f"/api/v1/patients/{pid}/notes",
                {"body": marker, "category": "other"},
                {"Idempotency-Key": key},
                True,
            )
            if r is not None and r.status_code == 201:
                self.acked.append(("note", pid, r.json()["id"], marker))
                return
            self.wait(r)

    def run(self):
        while self.running:
            self.n += 1
            pid, op = self.rng.choice(self.pids), self.rng.random()
            if op < 0.4:
                self.put(pid)
            elif op < 0.8:
                self.note(pid)
            else:
                self.call("GET", f"/api/v1/patients/{pid}/record")


class Listener:
    """A page's realtime logic: gapless seq, resume on gap / connect / resync / idle."""

    def __init__(self, base, token, last_seq):
        self.last, self.ahead, self.resuming = last_seq, {}, False
        self.seen, self.lock, self.last_activity = set(), threading.Lock(), time.monotonic()
        self.sio = socketio.Client(reconnection=True, reconnection_delay=1, reconnection_delay_max=5)
        self.sio.on("connect", self.resume)
        self.sio.on("resync", lambda *_: self.resume())
        self.sio.on("*", self.got)
        self.sio.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)

    def got(self, name, event=None):
        if not isinstance(event, dict) or "seq" not in event:
            return
        with self.lock:
            self.last_activity = time.monotonic()
            self.seen.add(event["seq"])
            if event["seq"] <= self.last:
                return
            if event["seq"] > self.last + 1:
                self.ahead[event["seq"]] = event
                gap = True
            else:
                self.last, gap = event["seq"], False
                self._drain()
        if gap:
            self.resume()

    def _drain(self):
        while self.last + 1 in self.ahead:
            self.ahead.pop(self.last + 1)
            self.last += 1

    def resume(self, *_):
        with self.lock:
            if self.resuming:
                return
            self.resuming, since = True, self.last
        threading.Thread(target=self._resume, args=(since,), daemon=True).start()

    def _resume(self, since):
        try:
            ack = self.sio.call("resume", {"since": since}, timeout=10)
        except Exception:
            ack = None
        with self.lock:
            self.resuming, self.last_activity = False, time.monotonic()
            if isinstance(ack, dict) and isinstance(ack.get("seq"), int):
                self.last = max(self.last, ack["seq"])  # authoritative
                self.ahead = {s: e for s, e in self.ahead.items() if s > self.last}
                self._drain()
                again = bool(self.ahead)
            else:
                again = False
        if again:
            self.resume()

    def tick(self):
        """The page's idle timer: resume after 30 s without news."""
        if time.monotonic() - self.last_activity > 30:
            self.resume()


def _dead(pid: int) -> bool:
    """Gone, or a zombie not yet reaped (pg_ctl would take it for a running server)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


class Stack:
    def __init__(self, folder: Path, code: Path, tmpfs: bool):
        self.folder, self.code = folder, code
        self.pg_dir, self.redis_dir = folder / "pg", folder / "redis"
        self.pg_port, self.redis_port, self.port = free_port(), free_port(), free_port()
        self.tmpfs = tmpfs and os.geteuid() == 0
        if self.tmpfs:  # a small volume of its own, so the full-disk fault can fill it
            self.pg_dir.mkdir(parents=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", str(self.pg_dir)], check=True)
        self.start_pg()
        self.redis_url = self.start_redis()
        base = f"postgresql+psycopg://renkei@127.0.0.1:{self.pg_port}"
        subprocess.run(
            ["psql", f"postgresql://renkei@127.0.0.1:{self.pg_port}/postgres", "-qc", "CREATE DATABASE renkei"],
            check=True,
        )
        self.env = environment(base + "/renkei", str(folder), RENKEI_REDIS_URL=self.redis_url)
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
            cwd=code,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.gunicorn = None
        self.notes: list[str] = []  # what a fault did beyond the figures

    def start_pg(self):
        pidfile = self.pg_dir / "data/postmaster.pid"
        if pidfile.exists() and _dead(int(pidfile.read_text().split()[0])):
            # Left by the killed server, whose process this machine's init has not reaped
            # yet (pg_ctl would take it for a running server); a service manager reaps it.
            pidfile.unlink()
            for lock in self.pg_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink()
        subprocess.run(
            ["bash", PG, "start", str(self.pg_dir), str(self.pg_port)],
            check=True,
            capture_output=True,
            env=os.environ | {"RENKEI_PG_DURABLE": "1"},
        )

    def stop_pg(self):
        subprocess.run(["bash", PG, "stop", str(self.pg_dir)], check=True)

    def kill_pg(self):
        """kill -9 of every PostgreSQL process of the cluster: a crash, then recovery on start."""
        postmaster = int((self.pg_dir / "data/postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        pids = [postmaster, *map(int, children)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(map(_dead, pids)):
            time.sleep(0.1)

    def start_redis(self):
        return subprocess.run(
            ["bash", REDIS, "start", str(self.redis_dir), str(self.redis_port)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def stop_redis(self):
        subprocess.run(["bash", REDIS, "stop", str(self.redis_dir)], check=True)
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True).returncode:
                return
            time.sleep(0.1)

    def serve(self):
        env = self.env | {"RENKEI_PORT": str(self.port), "RENKEI_WORKERS": "2"}
        log = open(self.folder / "gunicorn.log", "w")
        self.gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py", "wsgi:app"],
            cwd=self.code,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_healthy()
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not come up")

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.gunicorn.pid)], capture_output=True, text=True).stdout
        return sorted(map(int, out.split()))

    def close(self):
        if self.gunicorn:
            self.gunicorn.kill()
            self.gunicorn.wait()
        subprocess.run(["bash", REDIS, "stop", str(self.redis_dir)])
        self.stop_pg()
        if (self.pg_dir / "server.log").exists():  # keep PostgreSQL's log off the tmpfs
            subprocess.run(["cp", str(self.pg_dir / "server.log"), str(self.folder / "postgresql.log")])
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.pg_dir)])


def slow_uploads(base, token, pid, seconds):
    """70 clients that announce a note and send its body one byte at a time."""
    port = int(base.rsplit(":", 1)[1])
    socks = []
    for _ in range(SLOW_UPLOADERS):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            (
                f"POST /api/v1/patients/{pid}/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            ).encode()
        )
        socks.append(s)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.sendall(b" ")
            except OSError:
                pass
        time.sleep(0.5)
    for s in socks:
        s.close()


def fill_disk(folder: Path):
    filler = folder / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)  # until ENOSPC
    return filler


FAULTS = {  # name: (what is done, seconds the fault lasts)
    "none": ("no fault (baseline)", 0),
    "redis": ("Redis stopped", 20),
    "redis-long": ("Redis stopped beyond the 60 s back-off", 75),
    "sigstop": ("one worker frozen (SIGSTOP)", 15),
    "worker-kill": ("one worker killed (-9), gunicorn starts another", 0),
    "slow-uploads": (f"{SLOW_UPLOADERS} slow uploaders", 15),
    "pg-stop": ("PostgreSQL stopped", 10),
    "pg-kill": ("PostgreSQL killed (-9), crash recovery", 0),
    "disk-full": ("PostgreSQL's volume full", 10),
}


def inject(name, stack, base, who, pid):
    """Start the fault; returns a function that ends it."""
    if name == "none":
        return lambda: None
    if name in ("redis", "redis-long"):
        stack.stop_redis()
        return lambda: stack.start_redis()
    if name == "sigstop":
        worker = stack.workers()[0]
        os.kill(worker, signal.SIGSTOP)
        return lambda: os.kill(worker, signal.SIGCONT)
    if name == "worker-kill":
        os.kill(stack.workers()[0], signal.SIGKILL)
        return lambda: None
    if name == "slow-uploads":
        t = threading.Thread(target=slow_uploads, args=(base, who["tokens"]["reader"], pid, FAULTS[name][1]))
        t.start()
        return t.join
    if name == "pg-stop":
        stack.stop_pg()
        return stack.start_pg
    if name == "pg-kill":
        stack.kill_pg()
        time.sleep(1)
        return stack.start_pg
    if name == "disk-full":
        filler = fill_disk(stack.pg_dir)

        def free():
            filler.unlink()
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(stack.pg_port)]).returncode:
                stack.notes.append("PostgreSQL stopped itself (PANIC) and was started again")
                stack.start_pg()
            else:
                stack.notes.append("PostgreSQL stayed up")

        return free
    raise ValueError(name)


def verify(base, who, acked, since_index):
    """Every acknowledged write since `since_index` is there; no note was made twice."""
    headers = {"Authorization": "Bearer " + who["tokens"]["reader"]}
    lost, dupes, checked = 0, 0, 0
    by_patient = collections.defaultdict(list)
    for kind, pid, ident, marker in acked[since_index:]:
        by_patient[pid].append((kind, ident, marker))
    for pid, items in by_patient.items():
        versions = requests.get(
            f"{base}/api/v1/patients/{pid}/record/condition/versions", headers=headers, timeout=60
        ).json()
        versions = versions.get("items", versions) if isinstance(versions, dict) else versions
        have = {v["version"]: (v.get("content") or {}).get("summary") for v in versions}
        notes, cursor = collections.Counter(), None
        while True:
            page = requests.get(
                f"{base}/api/v1/patients/{pid}/notes",
                params={"limit": 200, **({"cursor": cursor} if cursor else {})},
                headers=headers,
                timeout=60,
            ).json()
            notes.update((n["id"], n["body"]) for n in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        bodies = collections.Counter(body for _, body in notes)
        ids = {i for i, _ in notes}
        for kind, ident, marker in items:
            checked += 1
            if kind == "section":
                lost += have.get(ident) != marker
            else:
                lost += ident not in ids
                dupes += bodies[marker] > 1
    return checked, lost, dupes


def reader_seq(stack, who) -> int:
    url = f"postgresql://renkei@127.0.0.1:{stack.pg_port}/renkei"
    out = subprocess.run(
        ["psql", url, "-qtAc", f"SELECT event_seq FROM users WHERE id = '{who['reader']}'"],
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip() or 0)


def audit_ok(base, who) -> str:
    for _ in range(10):
        try:
            r = requests.get(
                f"{base}/api/v1/audit/verify",
                timeout=120,
                headers={"Authorization": "Bearer " + who["tokens"]["auditor"]},
            )
            if r.status_code == 200:
                return "ok" if r.json().get("ok") else "BROKEN"
        except requests.RequestException:
            pass
        time.sleep(2)
    return "unreachable"


def run_fault(name, stack, base, who, pids, acked, versions):
    what, lasts = FAULTS[name]
    stack.notes = []
    start_seq = reader_seq(stack, who)
    listeners = [Listener(base, who["tokens"]["reader"], start_seq) for _ in range(LISTENERS)]
    since = len(acked)
    writers = [
        Writer(base, who["tokens"]["reader"], pids[i::WRITERS], acked, versions, name, i) for i in range(WRITERS)
    ]
    [w.start() for w in writers]
    time.sleep(3)
    end_fault = inject(name, stack, base, who, pids[0])
    time.sleep(lasts)
    end_fault()
    ended = time.monotonic()
    time.sleep(8)  # the load goes on after the fault
    for w in writers:
        w.running = False
    [w.join(240) for w in writers]
    load_ended = time.monotonic()
    stack.wait_healthy()
    final_seq = reader_seq(stack, who)
    expected = set(range(start_seq + 1, final_seq + 1))
    deadline, caught_up = time.monotonic() + 40, None
    while time.monotonic() < deadline:  # the pages' own resumes, idle timer included
        for listener in listeners:
            listener.tick()
        if all(expected <= lst.seen for lst in listeners):
            caught_up = time.monotonic() - load_ended
            break
        time.sleep(0.2)
    missed = sum(len(expected - lst.seen) for lst in listeners)
    for listener in listeners:
        listener.sio.disconnect()
    stats = Stats()
    for w in writers:
        stats.statuses.update(w.stats.statuses)
        stats.latencies += w.stats.latencies
        stats.ok_writes_at += w.stats.ok_writes_at
    lat = sorted(stats.latencies)
    after = [t - ended for t in stats.ok_writes_at if t >= ended]
    checked, lost, dupes = verify(base, who, acked, since)
    return {
        "fault": name,
        "what": what,
        "seconds": lasts,
        "answers": dict(sorted(((str(k), v) for k, v in stats.statuses.items()))),
        "p50_ms": round(1000 * lat[len(lat) // 2]) if lat else None,
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)]) if lat else None,
        "max_ms": round(1000 * lat[-1]) if lat else None,
        "first_write_after_s": round(min(after), 2) if after else None,
        "acked_writes": checked,
        "lost": lost,
        "duplicated_notes": dupes,
        "events": len(expected) * LISTENERS,
        "events_missed": missed,
        "caught_up_s": round(caught_up, 1) if caught_up is not None else None,
        "audit": audit_ok(base, who),
        "notes": "; ".join(stack.notes),
    }


def table(rows) -> str:
    out = [
        "| fault | answers by status | p99 / max ms | first write after s | acked writes | lost | "
        "duplicated | events missed (of) | caught up s after the last write | audit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in r["answers"].items())
        what = f"{r['what']} ({r['seconds']} s)" + (f": {r['notes']}" if r.get("notes") else "")
        out.append(
            f"| {what} | {answers} | {r['p99_ms']} / {r['max_ms']} | "
            f"{r['first_write_after_s']} | {r['acked_writes']} | {r['lost']} | {r['duplicated_notes']} | "
            f"{r['events_missed']} ({r['events']}) | {r['caught_up_s']} | {r['audit']} |"
        )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(FAULTS))
    ap.add_argument("--code", default=str(ROOT))
    ap.add_argument("--name", default="drill")
    args = ap.parse_args()
    chosen = args.only.split(",")
    sys.path.insert(0, args.code)  # the data is made by the code that will serve it
    import data  # noqa: E402 (after the path is set)

    folder = Path(tempfile.mkdtemp(prefix="renkei-drill-"))
    os.chmod(folder, 0o777)
    stack = Stack(folder, Path(args.code), tmpfs="disk-full" in chosen)
    rows = []
    try:
        app = app_context(stack.env)
        who = data.people(app, fillers=1)
        pids = data.patients(app, who, WRITERS * PATIENTS_PER_WRITER, mine=WRITERS * PATIENTS_PER_WRITER)
        app.extensions["renkei.engine"].dispose()
        base = stack.serve()
        acked: list = []
        versions = {pid: 0 for pid in pids}
        for name in chosen:
            if name == "disk-full" and not stack.tmpfs:
                print("disk-full: skipped (needs root to mount a small tmpfs)")
                continue
            row = run_fault(name, stack, base, who, pids, acked, versions)
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
    finally:
        stack.close()
    save(args.name, {"faults": rows})
    (ROOT / "bench/results" / f"{args.name}.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
