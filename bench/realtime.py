"""Realtime delivery (issue 3): N Socket.IO listeners (default 100, 500, 2000) spread
over 2 server processes sharing Redis; for each write, the time from the write's HTTP
response to the event's arrival at every listener, p50 and p99, and as a ratio to the
write's own response time measured in the same run.

Usage:  python bench/realtime.py [--listeners 100 500 2000] [--writes 20]"""

import argparse
import asyncio
import json
import statistics
import time

import aiohttp
import data
import socketio
from common import app_context, environment, postgres_and_redis, q, save, server


async def listen(url, token, arrivals, ready):
    client = socketio.AsyncClient(reconnection=False)

    @client.on("record.updated")
    async def _got(payload):
        arrivals.setdefault(payload["version"], []).append(time.perf_counter())

    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=60)
    ready.append(client)
    return client


async def run(ports, tokens, writer_token, pid, listeners, writes):
    arrivals, ready = {}, []
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    sem = asyncio.Semaphore(50)  # connect in waves

    async def one(i):
        async with sem:
            return await listen(urls[i % len(urls)], tokens[i % len(tokens)], arrivals, ready)

    clients = await asyncio.gather(*(one(i) for i in range(listeners)))
    await asyncio.sleep(1.0)
    sent, responded = {}, {}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{urls[0]}/api/v1/patients/{pid}/record/care_notes", headers={"Authorization": "Bearer " + writer_token}
        ) as r:
            version = (await r.json())["version"]
        for n in range(writes):
            body = {"content": {"notes": f"bench {n}"}}
            t0 = time.perf_counter()
            async with http.put(
                f"{urls[n % len(urls)]}/api/v1/patients/{pid}/record/care_notes",
                json=body,
                headers={"Authorization": "Bearer " + writer_token, "If-Match": f'"{version}"'},
            ) as r:
                payload = await r.json()
                t1 = time.perf_counter()
            assert r.status == 200, payload
            version = payload["version"]
            sent[version], responded[version] = t0, t1
            deadline = time.perf_counter() + 30
            while len(arrivals.get(version, [])) < listeners and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)
    await asyncio.gather(*(c.disconnect() for c in clients))
    after_response, after_send, to_all, response_times, missing = [], [], [], [], 0
    for v, t1 in responded.items():
        times = arrivals.get(v, [])
        missing += listeners - len(times)
        after_response += [(t - t1) * 1000 for t in times]  # negative: arrived before the response
        after_send += [(t - sent[v]) * 1000 for t in times]
        if times:
            to_all.append((max(times) - t1) * 1000)
        response_times.append((t1 - sent[v]) * 1000)
    after_response.sort()
    after_send.sort()
    write_ms = statistics.median(response_times)
    return {
        "listeners": listeners,
        "writes": writes,
        "missing_deliveries": missing,
        "write_response_p50_ms": write_ms,
        "delivery_after_response_p50_ms": q(after_response, 0.5),
        "delivery_after_response_p99_ms": q(after_response, 0.99),
        "delivery_after_send_p50_ms": q(after_send, 0.5),
        "delivery_after_send_p99_ms": q(after_send, 0.99),
        "all_listeners_reached_p50_ms": statistics.median(to_all),
        "all_listeners_reached_p99_ms": q(sorted(to_all), 0.99),
        "ratio_p50_to_write": q(after_response, 0.5) / write_ms,
        "ratio_p99_to_write": q(after_response, 0.99) / write_ms,
        "ratio_all_reached_to_write": statistics.median(to_all) / write_ms,
        "ratio_after_send_p99_to_write": q(after_send, 0.99) / write_ms,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listeners", type=int, nargs="+", default=[100, 500, 2000])
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--members", type=int, default=20, help="team members the listeners sign in as")
    args = ap.parse_args()
    results = []
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(db_url, folder, RENKEI_REDIS_URL=redis_url)
        import subprocess
        import sys

        from common import ROOT

        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        who = data.people(app, fillers=args.members)
        pid = data.patients(app, who, 1, mine=1)[0]
        from models import TeamMember, User, new_id, utcnow
        from renkei.common import db
        from renkei.people import auth

        with app.app_context():
            tokens = []
            for uid in who["fillers"]:
                db.session.add(
                    TeamMember(
                        id=new_id(),
                        patient_id=pid,
                        user_id=uid,
                        role="nurse",
                        added_by=who["reader"],
                        added_at=utcnow(),
                    )
                )
                tokens.append(auth.issue_token(db.session.get(User, uid))[0])
            db.session.commit()
        with server(env) as a, server(env) as b:
            for n in args.listeners:
                r = asyncio.run(run([a, b], tokens, who["tokens"]["reader"], pid, n, args.writes))
                results.append(r)
                print(json.dumps(r), flush=True)
    save("realtime", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
