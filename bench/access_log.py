"""The access log as a Merkle tree (issue 14), on PostgreSQL 15 with normal durability
(fsync and synchronous commit on), each figure against a baseline measured in the same
run:

  * append ceiling: pgbench (a C client, 16 connections) running the request path's
    insert, against the hash chain's transaction of before (advisory lock, read the
    head, insert) on a table of the old shape;
  * sealing: entries committed at a fixed rate by a separate process while a gunicorn
    worker's sealer runs; time from each commit to the first head that covers it;
  * verification of `--entries` entries against the heads in the sink, against a plain
    ordered scan of the same rows with the same query and driver;
  * proofs at that size: inclusion and consistency, p50/p99.

Usage:  python bench/access_log.py [--entries 10000000] [--rate 500]"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import data
import psycopg
from common import ROOT, app_context, environment, postgres_and_redis, save, server

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
NEW_APPEND = """INSERT INTO audit_log (at, actor_id, actor_org_id, action, patient_id, section, outcome,
  client_addr, request_id, detail) VALUES (now(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', NULL, 'record.read',
  'pppppppp-pppp-pppp-pppp-pppppppppppp', NULL, 'ok', '10.0.0.1', md5(random()::text), NULL);
"""
OLD_TABLE = """CREATE TABLE chain_log (seq integer PRIMARY KEY, at timestamp NOT NULL, actor_id varchar(36),
  actor_org_id varchar(36), action varchar(40) NOT NULL, patient_id varchar(36), section varchar(40),
  outcome varchar(20) NOT NULL, client_addr varchar(64), request_id varchar(64), detail varchar(200),
  prev_hash varchar(64) NOT NULL, hash varchar(64) NOT NULL);
INSERT INTO chain_log VALUES (1, now(), NULL, NULL, 'x', NULL, NULL, 'ok', NULL, NULL, NULL, '', md5('1'));"""
OLD_APPEND = """BEGIN;
SELECT pg_advisory_xact_lock(73110001);
SELECT seq + 1 AS next, quote_literal(hash) AS prev FROM chain_log ORDER BY seq DESC LIMIT 1 \\gset
INSERT INTO chain_log VALUES (:next, now(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', NULL, 'record.read',
  'pppppppp-pppp-pppp-pppp-pppppppppppp', NULL, 'ok', '10.0.0.1', md5(random()::text), NULL, :prev,
  md5(:prev || :next));
COMMIT;
"""


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def pgbench(url: str, script: str, seconds: int = 10) -> float:
    """Transactions per second of `script` with 16 clients on 2 threads."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    u = psycopg.conninfo.conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://"))
    out = subprocess.run(
        [
            PGBENCH,
            "-n",
            "-c",
            "16",
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            f.name,
            "-h",
            u["host"],
            "-p",
            str(u["port"]),
            "-U",
            u["user"],
            u["dbname"],
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    out = out.stdout
    os.unlink(f.name)
    return float(next(line for line in out.splitlines() if line.startswith("tps")).split()[2])


def append_ceiling(url: str) -> dict:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(OLD_TABLE)
    old = pgbench(url, OLD_APPEND)
    new = pgbench(url, NEW_APPEND)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute("DROP TABLE chain_log")
        c.execute("DELETE FROM audit_log WHERE seq IS NULL")  # not the sealer's work to measure here
    return {"hash chain (advisory lock, head, insert) tx/s": old, "lock-free insert tx/s": new}


def sealing_latency(env: dict, url: str, rate: int, seconds: float) -> dict:
    """Commit entries at `rate` per second from another process's connection while a
    gunicorn worker's sealer runs; for each, the time until a head covers it."""
    url = url.replace("postgresql+psycopg://", "postgresql://")
    committed, heads, stop = {}, [], threading.Event()

    def watch():
        with psycopg.connect(url, autocommit=True) as c:
            while not stop.is_set():
                size = c.execute("SELECT tree_size FROM audit_head").fetchone()
                heads.append((time.monotonic(), size[0] if size else 0))
                time.sleep(0.005)

    with server(env, workers=1) as port:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/healthz")  # the worker's first request starts its sealer
        conn.getresponse().read()
        time.sleep(1.5)
        watcher = threading.Thread(target=watch)
        watcher.start()
        with psycopg.connect(url, autocommit=True) as c:
            start, n = time.monotonic(), 0
            while time.monotonic() - start < seconds:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                row = c.execute(NEW_APPEND.replace(";", " RETURNING id;")).fetchone()
                committed[row[0]] = time.monotonic()
                n += 1
            achieved = n / (time.monotonic() - start)
            deadline = time.monotonic() + 10
            while (
                c.execute("SELECT count(*) FROM audit_log WHERE seq IS NULL").fetchone()[0]
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            seqs = dict(c.execute("SELECT id, seq FROM audit_log WHERE id = ANY(%s)", (list(committed),)).fetchall())
        stop.set()
        watcher.join()
    latencies = []
    for entry, at in committed.items():
        seq = seqs[entry]
        covered = next(t for t, size in heads if size >= seq and t >= at)
        latencies.append(covered - at)
    latencies.sort()
    return {
        "rate_asked": rate,
        "rate_achieved": achieved,
        "entries": len(latencies),
        "p50_s": latencies[len(latencies) // 2],
        "p99_s": latencies[int(len(latencies) * 0.99)],
        "max_s": latencies[-1],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000_000)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--proofs", type=int, default=1000)
    args = ap.parse_args()
    n = args.entries
    os.environ["RENKEI_PG_DURABLE"] = "1"  # fsync and synchronous commit on, as in production
    with postgres_and_redis() as (db_url, _redis, folder):
        env = environment(db_url, folder)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        ceiling = append_ceiling(db_url)
        print(ceiling, flush=True)
        sealing = sealing_latency(env, db_url, args.rate, 20)
        print("sealing", sealing, flush=True)

        _, t_load = timed(lambda: data.sealed_log(app, n))
        print(f"{n} entries loaded in {t_load:.0f} s", flush=True)
        from renkei.access_log import tree, verification
        from renkei.common import db

        with app.app_context():

            def scan():  # every column of every sealed entry in order, same driver, nothing done with them
                db.begin_now()  # a server-side cursor needs a transaction; connections autocommit
                cursor = db.session.connection().connection.driver_connection.cursor(name="scan")
                cursor.itersize = 10000
                cursor.execute(
                    "SELECT seq, at, actor_id, actor_org_id, action, patient_id, section, outcome, "
                    "client_addr, request_id, detail, mac FROM audit_log WHERE seq > 0 ORDER BY seq"
                )
                return sum(1 for _ in cursor)

            scanned, t_scan = timed(scan)
            db.session.remove()
            verified, t_verify = timed(verification.verify)
            db.session.remove()
            size = verified["tree_size"]
            rng = random.Random(14)
            inclusion, consistency = [], []
            for _ in range(args.proofs):
                seq = rng.randint(1, size)
                _, t = timed(lambda: tree.Tiles().inclusion(seq - 1, size))
                inclusion.append(t)
                first = rng.randint(1, size)
                _, t = timed(lambda: tree.Tiles().consistency(first, size))
                consistency.append(t)
                db.session.rollback()
        assert verified["ok"], verified
        assert scanned >= n
    proofs = {
        name: {"p50_ms": 1000 * statistics.median(ts), "p99_ms": 1000 * sorted(ts)[int(len(ts) * 0.99)]}
        for name, ts in (("inclusion", inclusion), ("consistency", consistency))
    }
    results = {
        "append": ceiling,
        "sealing": sealing,
        "proofs": proofs,
        "scan": {"seconds": t_scan, "entries_per_second": scanned / t_scan},
        "verify": {"seconds": t_verify, "entries_per_second": size / t_verify, "heads": verified["heads"]},
    }
    ratios = {
        "lock-free insert / hash-chain append": ceiling["lock-free insert tx/s"]
        / ceiling["hash chain (advisory lock, head, insert) tx/s"],
        "verify time / scan time": t_verify / t_scan,
    }
    save("access_log", {"args": vars(args), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
