"""What one event costs per socket in each way a process can hold websockets (issue 16,
step 3b): the same minimal Socket.IO app, 1,000 Node clients (bench/loadgen), one event
to each, 10 rounds; CPU time of the server process and of the client process per event
delivered, from /proc, and when the last client had it.

Modes: gunicorn gthread (a thread per socket: how Renkei ran before) with and without
per-message compression; gunicorn gevent (how it runs now) with and without; asyncio
(python-socketio's AsyncServer on aiohttp: the other way considered). The baseline of
each ratio is the first mode, in the same run.

Usage:  (cd bench/loadgen && npm ci)  then  python bench/socket_modes.py [--clients 1000]"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from common import ROOT, free_port, save

LOADGEN = ROOT / "bench" / "loadgen"
MODES = {  # name: (how the server runs, compression allowed)
    "gthread, compressed": ("gthread", True),
    "gthread": ("gthread", False),
    "gevent, compressed": ("gevent", True),
    "gevent": ("gevent", False),
    "asyncio (aiohttp)": ("asyncio", False),
}


def flask_app():
    """The app gunicorn serves: every socket is sent one event per /fire, each its own."""
    from flask import Flask, jsonify, request
    from flask_socketio import SocketIO

    from realtime import _uncompressed  # what Renkei ships

    app = Flask(__name__)
    sio = SocketIO(app, async_mode="gevent" if os.environ["SOCKET_MODE"] == "gevent" else "threading")
    if os.environ.get("SOCKET_COMPRESSED") != "1":
        app.wsgi_app = _uncompressed(app.wsgi_app)
    sids = []

    @sio.on("connect")
    def connect(auth=None):
        sids.append(request.sid)

    @app.get("/fire")
    def fire():
        t0 = time.time()
        for i, sid in enumerate(list(sids)):
            sio.server.emit("note.created", {"note_id": "n", "patient_id": "p", "seq": i}, to=sid)
        return jsonify(t0=t0)

    return app


def serve_asyncio(port: int):
    import socketio
    from aiohttp import web

    original = web.WebSocketResponse  # python-engineio builds its own: no compression there
    web.WebSocketResponse = lambda *a, **k: original(*a, **{**k, "compress": False})
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    sids = []

    @sio.event
    async def connect(sid, environ, auth):
        sids.append(sid)

    async def fire(request):
        t0 = time.time()
        for i, sid in enumerate(list(sids)):
            await sio.emit("note.created", {"note_id": "n", "patient_id": "p", "seq": i}, to=sid)
        return web.json_response({"t0": t0})

    app.router.add_get("/fire", fire)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, compressed: bool, clients: int, rounds: int) -> dict:
    port = free_port()
    env = os.environ | {"SOCKET_MODE": mode, "SOCKET_COMPRESSED": "1" if compressed else "0"}
    if mode == "asyncio":
        server = subprocess.Popen([sys.executable, __file__, "--serve-asyncio", str(port)], env=env)
    else:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                mode,
                "--threads",
                str(clients + 100),
                "--worker-connections",
                str(clients + 200),
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{port}",
                "--chdir",
                str(ROOT / "bench"),
                "socket_modes:flask_app()",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        worker = int(children.read_text().split()[0]) if mode != "asyncio" else server.pid
        config = Path(f"/tmp/socket-modes-{port}.json")
        config.write_text(json.dumps({"clients": [{"url": f"http://127.0.0.1:{port}", "token": "-"}] * clients}))
        gen = subprocess.Popen(
            ["node", str(LOADGEN / "clients.js"), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = json.loads(gen.stdout.readline())
        assert ready["failed"] == 0, ready
        time.sleep(2)
        server0, client0, last = cpu(worker), cpu(gen.pid), []
        for _ in range(rounds):
            t0 = requests.get(f"http://127.0.0.1:{port}/fire", timeout=60).json()["t0"]
            time.sleep(1.5)
            gen.stdin.write("report\n")
            gen.stdin.flush()
            arrivals = json.loads(gen.stdout.readline())["arrivals"]
            assert len(arrivals) == clients, len(arrivals)
            last.append(max(a[4] for a in arrivals) / 1000 - t0)
        events = rounds * clients
        result = {
            "server_cpu_us_per_event": round((cpu(worker) - server0) / events * 1e6),
            "client_cpu_us_per_event": round((cpu(gen.pid) - client0) / events * 1e6),
            "last_client_ms_p50": round(sorted(last)[len(last) // 2] * 1000),
        }
        gen.stdin.write("stop\n")
        gen.stdin.flush()
        gen.wait(30)
        config.unlink()
        return result
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # a thread per socket may hold the worker past that
            server.kill()
            server.wait()


def main():
    if sys.argv[1:2] == ["--serve-asyncio"]:
        return serve_asyncio(int(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    if not (LOADGEN / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LOADGEN, check=True)
    results = {"args": vars(args)}
    for name, (mode, compressed) in MODES.items():
        results[name] = measure(mode, compressed, args.clients, args.rounds)
        print(name, results[name], flush=True)
    base = results[next(iter(MODES))]["server_cpu_us_per_event"]
    for name in MODES:
        results[name]["server_cpu_ratio_to_first"] = round(results[name]["server_cpu_us_per_event"] / base, 2)
    save("socket_modes", results)


if __name__ == "__main__":
    main()
