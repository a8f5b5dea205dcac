"""What an audited record read costs (issue 14), measured with a C load generator (wrk)
against gunicorn on PostgreSQL with normal durability (fsync, synchronous commit):

  * requests/s of an audited, decrypted record read and of a bare Flask route (one
    query), with 1 and 2 worker processes, keep-alive and `Connection: close`;
  * CPU per request of the workers, of PostgreSQL and of wrk, from /proc and wait4 —
    on two cores shared by all three the ceiling of "2 workers / 1 worker" is
    2w / (w + p + c);
  * lock waits sampled from pg_locks during the reads;
  * a CPU profile of the read (cProfile, in process, same database);
  * what one of its statements costs through each layer (ORM, Core, driver).

Every figure is a ratio against a baseline measured in the same run.
Usage:  python bench/read_path.py [--seconds 12] [--connections 16]
Needs PostgreSQL 15 server binaries, redis-server and wrk (Debian packages)."""

import argparse
import cProfile
import io
import os
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import data
from common import ROOT, app_context, environment, postgres_and_redis, save, server
from sqlalchemy import create_engine, text

TICK = os.sysconf("SC_CLK_TCK")

ROTATE = """
paths = {%s}
headers = {%s}
i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], headers)
end
"""


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / TICK


def processes_of(user: str, name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-u", user, name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def gunicorn_processes(port) -> list[int]:
    """The master and workers of the benchmark's server on `port`."""
    out = subprocess.run(["pgrep", "-f", "gunicorn"], capture_output=True, text=True).stdout
    return [
        int(p)
        for p in out.split()
        if f"RENKEI_PORT={port}".encode() in Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
    ]


def wrk(port, paths, headers, seconds, connections):
    """(requests/s, p50 ms, p99 ms, wrk CPU s, requests)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(
        ROTATE % (", ".join(f'"{p}"' for p in paths), ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()))
    )
    script.close()
    proc = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, f"http://127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise SystemExit("wrk saw failed requests:\n" + out)

    def ms(label):
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    done = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": done,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "wrk_cpu_s": usage.ru_utime + usage.ru_stime,
    }


class LockSampler:
    """Every 10 ms: how many backends wait for a lock, and on what (pg_locks)."""

    def __init__(self, engine):
        self.engine, self.samples, self.waiting, self.kinds = engine, 0, 0, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    text("SELECT locktype, count(*) FROM pg_locks WHERE NOT granted GROUP BY locktype")
                ).all()
                self.samples += 1
                if rows:
                    self.waiting += 1
                for kind, n in rows:
                    self.kinds[kind] = self.kinds.get(kind, 0) + n
                time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def report(self):
        return {"samples": self.samples, "samples_with_a_wait": self.waiting, "waits_by_locktype": self.kinds}


def run(port, name, paths, headers, args, results, pg_pids, sampler_engine=None):
    wrk(port, paths, headers, 1, args.connections)  # warm-up: connections, caches
    workers = gunicorn_processes(port)
    each0, pg0 = [cpu_seconds([w]) for w in workers], cpu_seconds(pg_pids())
    if sampler_engine is not None:
        with LockSampler(sampler_engine) as sampler:
            r = wrk(port, paths, headers, args.seconds, args.connections)
        r["locks"] = sampler.report()
    else:
        r = wrk(port, paths, headers, args.seconds, args.connections)
    n = r["requests"]
    each = [cpu_seconds([w]) - c0 for w, c0 in zip(workers, each0)]
    r["cpu_share_by_process"] = sorted((round(c / sum(each), 3) for c in each), reverse=True)  # master too
    r["cpu_ms_per_request"] = {
        "worker": 1000 * sum(each) / n,
        "postgres": 1000 * (cpu_seconds(pg_pids()) - pg0) / n,
        "wrk": 1000 * r.pop("wrk_cpu_s") / n,
    }
    results[name] = r
    c = r["cpu_ms_per_request"]
    print(
        f"{name}: {r['rps']:.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
        f"CPU/request worker {c['worker']:.2f} ms, postgres {c['postgres']:.2f} ms, wrk {c['wrk']:.3f} ms; "
        f"CPU shares of the server's processes {r['cpu_share_by_process']}",
        flush=True,
    )


def profile(app, who, mine, reads=400, top=15):
    """CPU profile (cProfile on process time: waiting for PostgreSQL is not counted) of
    audited record reads in process (Flask test client, same database)."""
    client = app.test_client()
    headers = {"Authorization": "Bearer " + who["tokens"]["reader"]}
    for p in mine:
        client.get(f"/api/v1/patients/{p}/record", headers=headers)
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for i in range(reads):
        assert client.get(f"/api/v1/patients/{mine[i % len(mine)]}/record", headers=headers).status_code == 200
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # by own time
    ours = sorted(
        ((k, v) for k, v in stats.stats.items() if k[0].startswith(str(ROOT))), key=lambda kv: kv[1][3], reverse=True
    )[:top]  # our functions, by time inside them
    return {
        "reads": reads,
        "note": "cProfile's own overhead inflates the times; the shares are what to read",
        "ms_per_read": 1000 * total / reads,
        "top_cumulative_in_renkei": [
            {"function": f"{Path(f).relative_to(ROOT)}:{line} {fn}", "share": ct / total}
            for (f, line, fn), (cc, nc, tt, ct, callers) in ours
        ],
        "top_own_time": [
            {"function": f"{Path(f).name}:{line} {fn}", "own_ms_per_read": 1000 * tt / reads, "share": tt / total}
            for (f, line, fn), (cc, nc, tt, ct, callers) in rows
        ],
    }


def statement_cost(app, who, n=2000):
    """CPU per execution of the token + user query (the first of a read's four), through
    each layer, in the same run: the ORM session (what the read uses), SQLAlchemy Core on
    a connection, SQLAlchemy with the SQL already compiled, and the bare psycopg cursor."""
    from sqlalchemy import bindparam, select

    from models import ApiToken, User, utcnow
    from renkei.common import db
    from renkei.people import auth

    core = (
        select(*ApiToken.__table__.c, *User.__table__.c)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == bindparam("token_hash"),
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > bindparam("now"),
            User.disabled.is_(False),
        )
    )
    params = {"token_hash": auth._sha256(who["tokens"]["reader"]), "now": utcnow()}
    out = {}
    with app.app_context():
        conn = db.session.connection()
        sql = str(core.compile(dialect=conn.dialect))
        raw = conn.connection.driver_connection

        def raw_cursor():
            with raw.cursor() as cur:
                cur.execute(sql, params)
                cur.fetchone()

        ways = {
            "ORM session (as the read runs it)": lambda: db.session.execute(auth._TOKEN_USER, params).first(),
            "SQLAlchemy Core, same columns": lambda: conn.execute(core, params).first(),
            "SQLAlchemy, SQL compiled once": lambda: conn.exec_driver_sql(sql, params).first(),
            "psycopg cursor": raw_cursor,
        }
        for name, run_once in ways.items():
            best = float("inf")
            for _ in range(5):  # the least disturbed of five rounds
                t0 = time.process_time()
                for _ in range(n // 5):
                    run_once()
                best = min(best, (time.process_time() - t0) / (n // 5))
            out[name] = {"us": 1e6 * best}
        db.session.rollback()
    base = out["psycopg cursor"]["us"]
    for r in out.values():
        r["x_psycopg"] = r["us"] / base
    print(
        "token + user query, CPU per execution: "
        + ", ".join(f"{k} {v['us']:.0f} us ({v['x_psycopg']:.1f}x)" for k, v in out.items()),
        flush=True,
    )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--patients", type=int, default=1000)
    args = ap.parse_args()
    results = {}
    os.environ["RENKEI_PG_DURABLE"] = "1"  # fsync and synchronous commit, as in production
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(db_url, folder, RENKEI_REDIS_URL=redis_url, RENKEI_DB_POOL_SIZE=args.connections)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        who = data.people(app)
        mine = data.patients(app, who, args.patients, mine=10)[:10]
        data.sealed_log(app, 10_000, who["fillers"], mine)
        sampler_engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
        pg_pids = lambda: processes_of("postgres", "postgres")  # noqa: E731 (new backends appear)
        reader = {"Authorization": "Bearer " + who["tokens"]["reader"]}
        plans = {"bare": ["/_bench/bare"], "read": [f"/api/v1/patients/{p}/record" for p in mine]}
        for workers in (1, 2):
            with server(env, workers=workers) as port:
                for mode, extra in (("keepalive", {}), ("close", {"Connection": "close"})):
                    for route, paths in plans.items():
                        run(
                            port,
                            f"w{workers}.{mode}.{route}",
                            paths,
                            reader | extra,
                            args,
                            results,
                            pg_pids,
                            sampler_engine if route == "read" else None,
                        )
        results["profile"] = profile(app, who, mine)
        results["statement_cost"] = statement_cost(app, who)
        sampler_engine.dispose()

    ratios = {}
    for mode in ("keepalive", "close"):
        r1, r2 = results[f"w1.{mode}.read"], results[f"w2.{mode}.read"]
        b1 = results[f"w1.{mode}.bare"]
        c = r2["cpu_ms_per_request"]
        ceiling = 2 * c["worker"] / (c["worker"] + c["postgres"] + c["wrk"])
        ratios[mode] = {
            "record read, 2 workers / 1 worker": r2["rps"] / r1["rps"],
            "ceiling 2w/(w+p+c) from the 2-worker run": ceiling,
            "2 workers / 1 worker, share of the ceiling": (r2["rps"] / r1["rps"]) / min(ceiling, 2.0),
            "record read / bare route (1 worker)": r1["rps"] / b1["rps"],
            "worker CPU per request, read / bare (1 worker)": r1["cpu_ms_per_request"]["worker"]
            / b1["cpu_ms_per_request"]["worker"],
            "bare route, 2 workers / 1 worker": results[f"w2.{mode}.bare"]["rps"] / b1["rps"],
        }
    save("read_path", {"args": vars(args), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
