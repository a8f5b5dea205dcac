"""Throughput and scaling of the service (issue 5), every figure a ratio against a
baseline measured in the same run on the same machine:

  * audited, decrypted record read and section write vs a bare Flask route (one
    query) on the same server and database;
  * patient list / record read / audit search with 1k vs 100k patients and
    10k vs 10M audit entries;
  * 1 vs 2 gunicorn worker processes.

The access log's verification and retention rates: bench/access_log.py.

Usage:  python bench/throughput.py [--patients-large 100000] [--audit-large 10000000] [--seconds 6]
Needs PostgreSQL 15 server binaries and redis-server (as the tests do)."""

import argparse
import http.client
import json
import threading
import time

import data
from common import app_context, environment, load, postgres_and_redis, save, server


def write_load(port, token, targets, seconds=6.0):
    """Closed-loop section writes: each thread owns one (patient, section) and follows its version."""
    done, lat, lock = [0], [], threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(pid, section):
        conn, version, n, mine = http.client.HTTPConnection("127.0.0.1", port, timeout=30), 0, 0, []
        get = conn.request(
            "GET", f"/api/v1/patients/{pid}/record/{section}", headers={"Authorization": "Bearer " + token}
        )
        r = conn.getresponse()
        version = json.loads(r.read())["version"]
        while time.monotonic() < deadline:
            body = json.dumps(
                {"content": {"cautions": f"注意 {n}"} if section == "home_care_cautions" else {"notes": f"留意 {n}"}}
            )
            t0 = time.perf_counter()
            conn.request(
                "PUT",
                f"/api/v1/patients/{pid}/record/{section}",
                body=body,
                headers={
                    "Authorization": "Bearer " + token,
                    "If-Match": f'"{version}"',
                    "Content-Type": "application/json",
                },
            )
            r = conn.getresponse()
            payload = json.loads(r.read())
            mine.append(time.perf_counter() - t0)
            if r.status != 200:
                raise SystemExit(f"write -> {r.status} {payload}")
            version, n = payload["version"], n + 1
        with lock:
            done[0] += n
            lat.extend(mine)
        return get

    threads = [threading.Thread(target=loop, args=t) for t in targets]
    [t.start() for t in threads]
    [t.join() for t in threads]
    lat.sort()
    return {
        "rps": done[0] / seconds,
        "requests": done[0],
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
    }


def measure(port, who, mine, seconds, label, results, what=("bare", "read", "list", "audit_actor", "audit_patient")):
    reader = {"Authorization": "Bearer " + who["tokens"]["reader"]}
    auditor = {"Authorization": "Bearer " + who["tokens"]["auditor"]}
    plans = {
        "bare": ([("GET", "/_bench/bare", None, {})], reader),
        "read": ([("GET", f"/api/v1/patients/{p}/record", None, {}) for p in mine], reader),
        "list": ([("GET", "/api/v1/patients", None, {})], reader),
        "audit_actor": ([("GET", f"/api/v1/audit?actor_id={who['fillers'][7]}&limit=50", None, {})], auditor),
        "audit_patient": ([("GET", f"/api/v1/audit?patient_id={mine[3]}&limit=50", None, {})], auditor),
    }
    for name in what:
        requests_, headers = plans[name]
        load(port, requests_, headers, seconds=1.0)  # warm up
        results[f"{label}.{name}"] = r = load(port, requests_, headers, seconds=seconds)
        print(f"{label}.{name}: {r['rps']:.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients-small", type=int, default=1000)
    ap.add_argument("--patients-large", type=int, default=100_000)
    ap.add_argument("--audit-small", type=int, default=10_000)
    ap.add_argument("--audit-large", type=int, default=10_000_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    results, ratios = {}, {}
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(db_url, folder, RENKEI_REDIS_URL=redis_url)
        import subprocess
        import sys

        from common import ROOT

        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        who = data.people(app)
        mine = data.patients(app, who, args.patients_small, mine=10)
        data.sealed_log(app, args.audit_small, who["fillers"], mine)
        print(f"small: {args.patients_small} patients, {args.audit_small} audit entries", flush=True)

        with server(env, workers=1) as port:
            measure(port, who, mine[:10], args.seconds, "small.w1", results)
            targets = [(p, s) for p in mine[:4] for s in ("home_care_cautions", "care_notes")]
            results["small.w1.write"] = w = write_load(port, who["tokens"]["reader"], targets, args.seconds)
            print(f"small.w1.write: {w['rps']:.0f} req/s  p50 {w['p50_ms']:.1f} ms", flush=True)
        with server(env, workers=2) as port:
            measure(port, who, mine[:10], args.seconds, "small.w2", results, what=("bare", "read"))

        data.patients(app, who, args.patients_large - args.patients_small)
        data.sealed_log(app, args.audit_large - args.audit_small, who["fillers"], mine)
        print(f"large: {args.patients_large} patients, {args.audit_large} audit entries", flush=True)
        with server(env, workers=1) as port:
            measure(port, who, mine[:10], args.seconds, "large.w1", results)

    r = {k: v["rps"] for k, v in results.items() if "rps" in v}
    ratios = {
        "record read / bare route (1 worker)": r["small.w1.read"] / r["small.w1.bare"],
        "section write / bare route (1 worker)": r["small.w1.write"] / r["small.w1.bare"],
        "record read, 2 workers / 1 worker": r["small.w2.read"] / r["small.w1.read"],
        "bare route, 2 workers / 1 worker": r["small.w2.bare"] / r["small.w1.bare"],
        "patient list, small / large (slowdown)": r["small.w1.list"] / r["large.w1.list"],
        "record read, small / large (slowdown)": r["small.w1.read"] / r["large.w1.read"],
        "audit search by person, small / large (slowdown)": r["small.w1.audit_actor"] / r["large.w1.audit_actor"],
        "audit search by patient, small / large (slowdown)": r["small.w1.audit_patient"] / r["large.w1.audit_patient"],
    }
    save("throughput", {"args": vars(args), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
