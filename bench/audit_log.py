"""The access log's own operations (issue 5), each against a baseline measured in the
same run on the same PostgreSQL: reading every entry of the log in order (the least
any whole-log operation must do).

  * verification: re-hash the chain from its anchor;
  * retention: archive all but the newest entry to a sealed file and delete them;
  * verification of that archive file on its own.

Usage:  python bench/audit_log.py [--entries 200000]"""
import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from common import app_context, environment, postgres_and_redis, save
import data


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=200_000)
    args = ap.parse_args()
    n = args.entries
    import subprocess
    import sys
    from common import ROOT
    with postgres_and_redis() as (db_url, _redis, folder):
        env = environment(db_url, folder)
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True)
        app = app_context(env)
        data.valid_chain(app, n)
        from models import AuditEntry, utcnow
        from renkei import audit, audit_archive, db
        master = app.config["RENKEI"].master_key
        with app.app_context(), tempfile.TemporaryDirectory() as tmp:
            def scan():
                rows = db.session.execute(select(AuditEntry).order_by(AuditEntry.seq)
                                          .execution_options(yield_per=5000)).scalars()
                return sum(1 for _ in rows)
            scanned, t_scan = timed(scan)
            db.session.remove()
            verified, t_verify = timed(audit.verify)
            db.session.remove()
            archive = Path(tmp) / "bench.archive"
            archived, t_archive = timed(lambda: audit_archive.archive(utcnow(), archive, master))
            size = archive.stat().st_size
            checked, t_check = timed(lambda: audit_archive.check_archive(*audit_archive.read_archive(archive, master)))
            after, _ = timed(audit.verify)
        assert scanned == n and verified["ok"] and verified["entries"] == n
        assert archived["archived"] == n - 1 and checked["ok"] and after["ok"]
    results = {name: {"seconds": t, "entries_per_second": count / t}
               for name, t, count in (("scan", t_scan, n), ("verify", t_verify, n),
                                      ("archive", t_archive, n - 1), ("archive_check", t_check, n - 1))}
    results["archive"]["bytes_per_entry"] = size / (n - 1)
    for name, r in results.items():
        print(f"{name}: {r['entries_per_second']:.0f} entries/s ({r['seconds']:.1f} s)", flush=True)
    ratios = {f"{name} time / scan time": results[name]["seconds"] / t_scan
              for name in ("verify", "archive", "archive_check")}
    save("audit_log", {"args": vars(args), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
