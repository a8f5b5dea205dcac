"""How much the vital-sign charts cost a page (issue 17; README "Benchmarks").

On PostgreSQL, one gunicorn worker as deployed, one client asking one page at a time:
- the trend page (/patients/<id>/vitals, 30 and 90 days) of a patient holding a year of
  readings four times a day for eight kinds (11,680 readings), against the plain record
  page of a patient with the same record and no readings (goal ≤ 1.5×);
- the 訪問前サマリー of a physician with 30 such patients, against the summary of a
  physician whose 30 patients have the same records and no readings (goal ≤ 2×).
The pages are asked for in turn, so a slow moment of the host falls on all alike.

    python bench/vitals.py [--requests 40]
"""

import argparse
import http.client
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace

import data
from common import ROOT, app_context, environment, postgres_and_redis, q, save, server

KINDS_MEASURED = {  # eight kinds, the values a home-care patient's year might hold
    "body_temperature": lambda i: {"value": round(36.2 + (i % 7) * 0.15, 1)},
    "blood_pressure": lambda i: {"components": {"systolic": 118 + i % 23, "diastolic": 68 + i % 11}},
    "heart_rate": lambda i: {"value": 64 + i % 19},
    "spo2": lambda i: {"value": 93 + i % 6},
    "respiratory_rate": lambda i: {"value": 14 + i % 6},
    "body_weight": lambda i: {"value": round(48 + (i % 40) * 0.05, 1)},
    "blood_glucose": lambda i: {"value": 95 + i % 60},
    "pain_score": lambda i: {"value": i % 4},
}
THRESHOLDS = {
    "body_temperature": {"max": 37.9},
    "spo2": {"min": 92},
    "body_weight": {"rise": 2, "within_days": 3},
    "blood_pressure": {"systolic": {"max": 160}, "diastolic": {"max": 100}},
    "heart_rate": {"max": 120},
}


def a_year_of_readings(app, patient_ids, recorder):
    """365 days × 4 times × 8 kinds per patient, sealed as the service seals them."""
    from sqlalchemy import insert

    from models import Observation, Patient, ThresholdRevision, new_id, utcnow
    from renkei.common import crypto, db, vault

    with app.app_context():
        now = utcnow()
        for pid in patient_ids:
            key = vault.patient_key(db.session.get(Patient, pid))
            rev = {"id": new_id(), "patient_id": pid, "version": 1, "created_by": recorder, "created_at": now}
            rev["content_ct"] = crypto.seal_json(key, THRESHOLDS, vault.threshold_aad(SimpleNamespace(**rev)))
            db.session.execute(insert(ThresholdRevision), [rev])
            rows = []
            for i in range(365 * 4):
                at = now - timedelta(hours=6 * i + 1)
                for kind, value in KINDS_MEASURED.items():
                    row = {
                        "id": new_id(),
                        "patient_id": pid,
                        "kind": kind,
                        "measured_at": at,
                        "recorded_at": at,
                        "recorded_by": recorder,
                        "source": "entry",
                        "alert": False,
                    }
                    row["value_ct"] = crypto.seal_json(key, value(i), vault.observation_aad(SimpleNamespace(**row)))
                    rows.append(row)
            db.session.execute(insert(Observation), rows)
            db.session.commit()
        db.session.execute(data.text("ANALYZE"))
        db.session.commit()
    return len(patient_ids) * 365 * 4 * len(KINDS_MEASURED)


def second_reader(app, who) -> dict:
    """Another physician of the same clinic: their patients hold the readings, so both
    summaries can be asked for in turn in one run."""
    from models import User, new_id, utcnow
    from renkei.common import db
    from renkei.people import auth

    with app.app_context():
        reader = db.session.get(User, who["reader"])
        other = User(
            id=new_id(),
            login="bench.doc2",
            password_hash=reader.password_hash,
            display_name="ベンチ 医師2",
            organization_id=reader.organization_id,
            profession="physician",
            confirmed_at=utcnow(),
            totp_enabled=True,  # a second factor, as every account needs (its tokens are made on the server)
        )
        db.session.add(other)
        db.session.flush()
        token = auth.issue_token(other)[0]
        db.session.commit()
        return {**who, "reader": other.id, "tokens": {"reader": token}}


def in_turn(port, pages: dict, n: int) -> dict:
    """Each page asked n times, the pages in turn (after two rounds to warm up), on one
    keep-alive connection each: a slow moment of this host falls on all of them alike."""
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=120) for name in pages}
    times, sizes = {name: [] for name in pages}, {}
    for i in range(n + 2):
        for name, (token, path) in pages.items():
            t0 = time.perf_counter()
            conns[name].request("GET", path, headers={"Authorization": "Bearer " + token})
            r = conns[name].getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"GET {path} -> {r.status}")
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
            sizes[name] = len(body)
    return {
        name: {
            "p50_ms": round(1000 * statistics.median(t), 1),
            "p90_ms": round(1000 * q(t, 0.9), 1),
            "bytes": sizes[name],
        }
        for name, t in times.items()
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    n = args.requests
    with postgres_and_redis() as (db_url, _redis, folder):
        env = environment(db_url, folder)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        plain_doc = data.people(app, fillers=10)
        year_doc = second_reader(app, plain_doc)
        plain = data.patients(app, plain_doc, 31, mine=31)  # the same records, without readings
        yearly = data.patients(app, year_doc, 31, mine=31)
        t0 = time.perf_counter()
        stored = a_year_of_readings(app, yearly, year_doc["reader"])
        results = {
            "readings_per_patient": 365 * 4 * len(KINDS_MEASURED),
            "readings_stored": stored,
            "store_seconds": round(time.perf_counter() - t0, 1),
            "requests": n,
        }
        a, b = plain_doc["tokens"]["reader"], year_doc["tokens"]["reader"]
        with server(env) as port:
            pages = in_turn(
                port,
                {
                    "record_page_plain": (a, f"/patients/{plain[0]}"),
                    "patient_page_year": (b, f"/patients/{yearly[0]}"),
                    "trend_page_7_days": (b, f"/patients/{yearly[0]}/vitals?days=7"),
                    "trend_page_30_days": (b, f"/patients/{yearly[0]}/vitals"),
                    "trend_page_90_days": (b, f"/patients/{yearly[0]}/vitals?days=90"),
                },
                n,
            )
            summaries = in_turn(
                port,
                {
                    "summary_30_patients_no_readings": (a, "/summary"),
                    "summary_30_patients_a_year_each": (b, "/summary"),
                },
                max(8, n // 4),
            )
        results["pages"], results["summaries"] = pages, summaries
        base = pages["record_page_plain"]["p50_ms"]
        results["ratios"] = {
            **{
                f"{name}_vs_record_page": round(pages[name]["p50_ms"] / base, 2)
                for name in ("patient_page_year", "trend_page_7_days", "trend_page_30_days", "trend_page_90_days")
            },
            "summary_vs_summary_without_readings": round(
                summaries["summary_30_patients_a_year_each"]["p50_ms"]
                / summaries["summary_30_patients_no_readings"]["p50_ms"],
                2,
            ),
        }
        save("vitals", results)


if __name__ == "__main__":
    main()
