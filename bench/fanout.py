"""Realtime fan-out under a municipality's load (issue 16): N connected clients (default
2,000, one per person, in one Node process: bench/loadgen) over 2 server processes
sharing Redis.

- municipality: teams of 10 over 200 patients, notes written at a steady rate (2 and
  10 a second) to patients picked at random, each by a member of their team;
- broadcast: one patient whose team is all N people, one note at a time.

For every delivery: the time from the write's HTTP response to its arrival at the client
(client side) and from the commit to the server handing it to the socket (server side,
the processes' own trace: /_bench/fanout). The write's own response time in the same run
is the baseline. Also: deliveries missed (every person's stored seqs against those that
arrived) and the server processes' memory per idle connection.

Usage:  (cd bench/loadgen && npm ci)  then  python bench/fanout.py [--clients 2000]"""

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import data
import requests
from common import PIDS, ROOT, app_context, environment, postgres_and_redis, q, save, server
from sqlalchemy import insert, select

from models import TeamMember, User, new_id, utcnow
from renkei.common import db
from renkei.people import auth

LOADGEN = ROOT / "bench" / "loadgen"


def rss_kib(port: int) -> int:
    """The resident memory of the server process behind `port` (gunicorn's one worker)."""
    master = PIDS[port]
    worker = Path(f"/proc/{master}/task/{master}/children").read_text().split()[0]
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def build(app, clients: int, patients: int, team: int):
    """People, tokens, the municipality's patients (each person on one team of `team`) and
    the broadcast patient (everyone on its team)."""
    who = data.people(app, fillers=clients)
    people = who["fillers"]
    pids = data.patients(app, who, patients + 1)  # member 0 of patient i: people[i % clients]
    town, everyone = pids[:patients], pids[patients]
    teams = {pid: [people[(i + k * patients) % clients] for k in range(team)] for i, pid in enumerate(town)}
    with app.app_context():
        rows = [
            {"id": new_id(), "patient_id": pid, "user_id": uid, "role": "nurse", "added_by": uid, "added_at": utcnow()}
            for pid, members in teams.items()
            for uid in members[1:]
        ]
        rows += [
            {
                "id": new_id(),
                "patient_id": everyone,
                "user_id": uid,
                "role": "nurse",
                "added_by": uid,
                "added_at": utcnow(),
            }
            for uid in people
            if uid != people[patients % clients]
        ]
        db.session.execute(insert(TeamMember), rows)
        tokens = {}
        for uid in people:
            tokens[uid] = auth.issue_token(db.session.get(User, uid))[0]
        db.session.commit()
    return people, tokens, teams, everyone


class Loadgen:
    def __init__(self, clients: list[dict], folder: str):
        config = Path(folder) / "loadgen.json"
        config.write_text(json.dumps({"clients": clients}))
        self.proc = subprocess.Popen(
            ["node", str(LOADGEN / "clients.js"), str(config)],
            cwd=LOADGEN,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = json.loads(self.proc.stdout.readline())

    def report(self) -> list:
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["arrivals"]

    def stop(self):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        self.proc.wait(30)


async def write_notes(urls, plan, tokens, at_times=None, gap=0.0):
    """POST one note per (patient, writer) in `plan`: each at its time (open loop), or
    without `at_times` one after another, `gap` seconds after the last one's response."""
    results = []
    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:

        async def one(n, pid, writer):
            if at_times:
                await asyncio.sleep(max(0.0, start + at_times[n] - time.perf_counter()))
            body = {"body": f"bench {n}", "category": "observation"}
            t0 = time.time()
            async with http.post(
                f"{urls[n % len(urls)]}/api/v1/patients/{pid}/notes",
                json=body,
                headers={"Authorization": "Bearer " + tokens[writer]},
            ) as r:
                payload = await r.json()
                t1 = time.time()
            assert r.status == 201, payload
            results.append({"note_id": payload["id"], "patient_id": pid, "sent": t0, "responded": t1})

        if at_times:
            await asyncio.gather(*(one(n, pid, writer) for n, (pid, writer) in enumerate(plan)))
        else:
            for n, (pid, writer) in enumerate(plan):
                await one(n, pid, writer)
                await asyncio.sleep(gap)
    return results


def figures(writes, expected, arrivals, trace, clients):
    """Client- and server-side delivery times against the writes' response times."""
    by_note = {w["note_id"]: w for w in writes}
    got = {}
    for client, name, key, seq, wall_ms in arrivals:
        if name == "note.created" and key in by_note:
            got.setdefault(key, {})[client] = wall_ms / 1000
    after_response, to_all = [], []
    missing = 0
    for note_id, w in by_note.items():
        times = got.get(note_id, {})
        missing += expected[note_id] - len(times)
        after_response += [(t - w["responded"]) * 1000 for t in times.values()]
        if times:
            to_all.append((max(times.values()) - w["responded"]) * 1000)
    emitted_after_commit, emitted_after_response, first_after_commit, spans = [], [], [], []
    for name, patient_id, key, committed, emitted, sockets in trace:
        if name == "note.created" and key in by_note and isinstance(emitted, list):
            first_after_commit.append((emitted[0] - committed) * 1000)  # one process, one event
            spans.append((emitted[-1] - emitted[0]) * 1000)
        if name == "note.created" and key in by_note:
            # a list of emit times, one per socket; the code before issue 16 recorded one
            # time per recipient (when it published the recipient's message)
            stamps = emitted if isinstance(emitted, list) else [emitted] * sockets
            emitted_after_commit += [(t - committed) * 1000 for t in stamps]
            emitted_after_response += [(t - by_note[key]["responded"]) * 1000 for t in stamps]
    write_ms = statistics.median((w["responded"] - w["sent"]) * 1000 for w in writes)
    write_p99 = q([(w["responded"] - w["sent"]) * 1000 for w in writes], 0.99)
    r = lambda x: x and round(x, 1)  # noqa: E731
    return {
        "writes": len(writes),
        "deliveries": sum(expected.values()),
        "missed": missing,
        "write_response_p50_ms": r(write_ms),
        "write_response_p99_ms": r(write_p99),
        "client_after_response_p50_ms": r(q(after_response, 0.5)),
        "client_after_response_p99_ms": r(q(after_response, 0.99)),
        "client_all_reached_p50_ms": r(q(to_all, 0.5)),
        "client_all_reached_p99_ms": r(q(to_all, 0.99)),
        "server_emit_after_commit_p50_ms": r(q(emitted_after_commit, 0.5)),
        "server_emit_after_commit_p99_ms": r(q(emitted_after_commit, 0.99)),
        "server_first_emit_after_commit_p50_ms": r(q(first_after_commit, 0.5)),
        "server_first_emit_after_commit_p99_ms": r(q(first_after_commit, 0.99)),
        "server_one_process_first_to_last_emit_p50_ms": r(q(spans, 0.5)),
        "server_one_process_first_to_last_emit_p99_ms": r(q(spans, 0.99)),
        "server_emit_after_response_p50_ms": r(q(emitted_after_response, 0.5)),
        "server_emit_after_response_p99_ms": r(q(emitted_after_response, 0.99)),
        "ratio_client_p99_to_write_p50": r(q(after_response, 0.99) / write_ms),
        "ratio_server_p99_to_write_p50": r(q(emitted_after_response, 0.99) / write_ms)
        if emitted_after_response
        else None,
    }


def trace(urls):
    items = []
    for url in urls:
        r = requests.get(url + "/_bench/fanout", timeout=30)
        if r.status_code == 200:  # older code had no trace
            items += r.json()["items"]
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--team", type=int, default=10)
    ap.add_argument("--rates", type=float, nargs="*", default=[2.0, 10.0], help="municipality: notes per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="municipality: how long")
    ap.add_argument("--broadcast-notes", type=int, default=20)
    ap.add_argument(
        "--broadcast-gap", type=float, default=1.0, help="seconds from a broadcast note's response to the next"
    )
    args = ap.parse_args()
    if not (LOADGEN / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LOADGEN, check=True)
    results = {"args": vars(args)}
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(db_url, folder, RENKEI_REDIS_URL=redis_url)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        people, tokens, teams, everyone = build(app, args.clients, args.patients, args.team)
        with server(env) as a, server(env) as b:
            urls = [f"http://127.0.0.1:{p}" for p in (a, b)]
            time.sleep(2)
            before = {p: rss_kib(p) for p in (a, b)}
            gen = Loadgen([{"url": urls[i % 2], "token": tokens[uid]} for i, uid in enumerate(people)], folder)
            assert gen.ready["failed"] == 0, gen.ready
            time.sleep(5)
            after = {p: rss_kib(p) for p in (a, b)}
            per_process = args.clients / 2
            results["memory"] = {
                "rss_before_kib": before,
                "rss_connected_kib": after,
                "kib_per_idle_connection": round(
                    statistics.mean((after[p] - before[p]) / per_process for p in (a, b)), 1
                ),
            }
            print(json.dumps(results["memory"]), flush=True)
            index = {uid: i for i, uid in enumerate(people)}
            trace(urls)  # empty it

            # municipality: writes at a steady rate, each by a member of the patient's team
            rng, seen = random.Random(7), []
            for rate in args.rates:
                n = int(rate * args.seconds)
                plan = [(pid, rng.choice(teams[pid])) for pid in (rng.choice(list(teams)) for _ in range(n))]
                writes = asyncio.run(write_notes(urls, plan, tokens, [i / rate for i in range(n)]))
                time.sleep(3)
                arrivals = gen.report()
                expected = {w["note_id"]: len(teams[w["patient_id"]]) for w in writes}
                key = f"municipality_{rate:g}_per_s"
                results[key] = figures(writes, expected, arrivals, trace(urls), args.clients)
                print(json.dumps({key: results[key]}), flush=True)
                seen += arrivals

            # broadcast: one note to everyone, one at a time
            m = args.broadcast_notes
            if m:
                plan = [(everyone, people[(i * 37) % len(people)]) for i in range(m)]
                writes = asyncio.run(write_notes(urls, plan, tokens, gap=args.broadcast_gap))
                time.sleep(3)
                arrivals = gen.report()
                expected = {w["note_id"]: len(people) for w in writes}
                results["broadcast"] = figures(writes, expected, arrivals, trace(urls), args.clients)
                print(json.dumps({"broadcast": results["broadcast"]}), flush=True)
                seen += arrivals
            gen.stop()

            # every person's stored events against those that reached their one client
            with app.app_context():
                stored = dict(db.session.execute(select(User.id, User.event_seq).where(User.id.in_(people))).all())
            received = {}
            for client, name, key, seq, wall_ms in seen:
                received.setdefault(client, set()).add(seq)
            results["missed_overall"] = sum(stored[uid] - len(received.get(index[uid], ())) for uid in people)
            order = {}
            for client, name, key, seq, wall_ms in seen:
                order.setdefault(client, []).append(seq)
            results["out_of_order_clients"] = sum(1 for seqs in order.values() if seqs != sorted(seqs))
    save("fanout", results)


if __name__ == "__main__":
    main()
