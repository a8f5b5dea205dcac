"""Push and e-mail latency (issue 16): a team of 10 on one patient, each with a device
subscribed and half with a confirmed e-mail address; 2 gunicorn workers on PostgreSQL
and Redis; a push service and an SMTP server on this machine (the test's push service,
which checks VAPID and decrypts each message as the device would). For each urgent note:
the time from the write's HTTP response to each push and each mail arriving, p50 and
p99, and as ratios to the write's own response time measured in the same run.

Usage:  python bench/push.py [--notes 40]"""

import argparse
import email
import email.policy
import re
import statistics
import subprocess
import sys
import threading
import time

import data
import requests
from aiosmtpd.controller import Controller
from common import ROOT, app_context, environment, free_port, postgres_and_redis, q, save, server
from sqlalchemy import insert

from models import TeamMember, User, new_id, utcnow
from renkei.common import db
from renkei.people import auth
from tests.push_receiver import PushReceiver

TEAM = 10


class Mailbox:
    def __init__(self):
        self.got, self.lock = [], threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.controller.start()

    async def handle_DATA(self, server_, session, envelope):
        with self.lock:
            self.got.append(
                (time.perf_counter(), email.message_from_bytes(envelope.content, policy=email.policy.default))
            )
        return "250 OK"


def team(app):
    who = data.people(app, fillers=TEAM - 1)
    pid = data.patients(app, who, 1, mine=1)[0]
    with app.app_context():
        db.session.execute(
            insert(TeamMember),
            [
                {
                    "id": new_id(),
                    "patient_id": pid,
                    "user_id": uid,
                    "role": "nurse",
                    "added_by": who["reader"],
                    "added_at": utcnow(),
                }
                for uid in who["fillers"]
            ],
        )
        tokens = [auth.issue_token(db.session.get(User, uid))[0] for uid in who["fillers"]]
        db.session.commit()
    return pid, who["tokens"]["reader"], tokens


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=40)
    args = parser.parse_args()
    receiver, mailbox = PushReceiver(), Mailbox()
    with postgres_and_redis() as (db_url, redis_url, folder):
        env = environment(
            db_url,
            folder,
            RENKEI_REDIS_URL=redis_url,
            RENKEI_ENV="development",
            RENKEI_SMTP_URL=f"smtp://127.0.0.1:{mailbox.controller.port}?starttls=false",
            RENKEI_MAIL_FROM="renkei@bench.example.jp",
        )
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        pid, writer, tokens = team(app)
        with server(env, workers=2) as port:
            base = f"http://127.0.0.1:{port}"
            for i, token in enumerate(tokens):
                h = {"Authorization": "Bearer " + token}
                requests.post(
                    base + "/api/v1/push/subscriptions", json=receiver.device(f"d{i}").subscription(), headers=h
                ).raise_for_status()
                if i % 2 == 0:
                    requests.put(
                        base + "/api/v1/users/me/email", json={"address": f"m{i}@bench.example.jp"}, headers=h
                    ).raise_for_status()
            mails = len(tokens[::2])
            deadline = time.monotonic() + 30
            while len(mailbox.got) < mails and time.monotonic() < deadline:
                time.sleep(0.05)
            for i, token in enumerate(tokens[::2]):
                to = f"m{2 * i}@bench.example.jp"
                text = next(m.get_content() for _, m in mailbox.got if m["To"] == to)
                code = re.search(r"code=(\S+)", text).group(1)
                requests.post(
                    base + "/api/v1/users/me/email/confirm",
                    json={"code": code},
                    headers={"Authorization": "Bearer " + token},
                ).raise_for_status()
            mailbox.got.clear()
            responded, response_ms = {}, []
            with requests.Session() as http:
                for n in range(args.notes):
                    t0 = time.perf_counter()
                    r = http.post(
                        f"{base}/api/v1/patients/{pid}/notes",
                        headers={"Authorization": "Bearer " + writer},
                        json={"body": f"至急 {n}", "category": "vital_signs", "urgent": True},
                    )
                    t1 = time.perf_counter()
                    r.raise_for_status()
                    responded[r.json()["id"]] = t1
                    response_ms.append((t1 - t0) * 1000)
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and (
                        sum(1 for g in receiver.received if g.payload["note_id"] == r.json()["id"]) < len(tokens)
                        or len(mailbox.got) < (n + 1) * mails
                    ):
                        time.sleep(0.002)
                    time.sleep(0.05)
            time.sleep(1)
    push_ms = [(g.at - responded[g.payload["note_id"]]) * 1000 for g in receiver.received]
    all_reached = [
        max((g.at for g in receiver.received if g.payload["note_id"] == nid), default=t1) - t1
        for nid, t1 in responded.items()
    ]
    mail_ms = []
    for at, msg in mailbox.got:
        nid_time = max((t for t in responded.values() if t <= at), default=None)
        mail_ms.append((at - nid_time) * 1000)
    write = statistics.median(response_ms)
    results = {
        "notes": args.notes,
        "team": TEAM,
        "devices": len(tokens),
        "mail_recipients": len(tokens[::2]),
        "pushes_expected": args.notes * len(tokens),
        "pushes_received": len(receiver.received),
        "pushes_refused_by_receiver": len(receiver.refused),
        "mails_expected": args.notes * len(tokens[::2]),
        "mails_received": len(mailbox.got),
        "write_response_p50_ms": write,
        "push_after_response_p50_ms": q(push_ms, 0.5),
        "push_after_response_p99_ms": q(push_ms, 0.99),
        "push_all_devices_reached_p50_ms": 1000 * statistics.median(all_reached),
        "mail_after_response_p50_ms": q(mail_ms, 0.5),
        "mail_after_response_p99_ms": q(mail_ms, 0.99),
        "ratio_push_p50_to_write": q(push_ms, 0.5) / write,
        "ratio_push_p99_to_write": q(push_ms, 0.99) / write,
        "ratio_mail_p99_to_write": q(mail_ms, 0.99) / write,
    }
    receiver.close()
    mailbox.controller.stop()
    save("push", results)


if __name__ == "__main__":
    main()
