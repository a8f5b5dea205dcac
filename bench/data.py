"""Benchmark data: patients with sealed demographics and data keys, teams, consent,
record sections, tokens, and bulk audit entries — generated through the same
crypto as real data, inserted in bulk."""
from datetime import date, timedelta
from types import SimpleNamespace

from sqlalchemy import func, insert, select, text

from models import (AuditEntry, Consent, Organization, Patient, SectionRevision, TeamMember, User,
                    new_id, utcnow)
from renkei import auth, crypto, db, vault

BATCH = 5000


def people(app, fillers=200):
    """An organisation, the benchmark physician, an auditor and filler team members."""
    with app.app_context():
        org = Organization(id=new_id(), name="ベンチ診療所", kind="clinic")
        db.session.add(org)
        hashed = auth.hash_password("bench-password-1")
        reader = User(id=new_id(), login="bench.doc", password_hash=hashed, display_name="ベンチ 医師",
                      organization_id=org.id, profession="physician")
        auditor = User(id=new_id(), login="bench.audit", password_hash=hashed, display_name="ベンチ 監査",
                       organization_id=org.id, profession="other", is_auditor=True)
        filler = [User(id=new_id(), login=f"filler{i}", password_hash=hashed, display_name=f"職員{i}",
                       organization_id=org.id, profession="nurse") for i in range(fillers)]
        db.session.add_all([reader, auditor, *filler])
        db.session.flush()
        tokens = {"reader": auth.issue_token(reader)[0], "auditor": auth.issue_token(auditor)[0]}
        db.session.commit()
        return {"reader": reader.id, "auditor": auditor.id, "fillers": [u.id for u in filler], "tokens": tokens}


def patients(app, who, count, mine=0):
    """`count` patients; the first `mine` are on the benchmark physician's team with a filled record."""
    ids = []
    with app.app_context():
        index_key = vault.system_key("blind_index")
        db.session.commit()
        ring = vault.keyring()
        for start in range(0, count, BATCH):
            rows, members, consents, revisions = [], [], [], []
            for i in range(start, min(count, start + BATCH)):
                pid, key = new_id(), crypto.new_data_key()
                kid, wrapped = ring.wrap(key, "patient=" + pid)
                name, kana = f"患者{i:06d} 太郎", f"かんじゃ{i:06d} たろう"
                demo = {"name": name, "name_kana": kana, "birth_date": "1940-01-01", "sex": "male"}
                rows.append({"id": pid, "kek_id": kid, "wrapped_key": wrapped, "registered_by": who["reader"],
                             "demographics_ct": crypto.seal_json(key, demo, vault.demographics_aad(pid)),
                             "name_index": crypto.blind_index(index_key, name),
                             "kana_index": crypto.blind_index(index_key, kana), "created_at": utcnow()})
                owner = who["reader"] if i < mine else who["fillers"][i % len(who["fillers"])]
                role = "primary_physician" if i < mine else "nurse"
                members.append({"id": new_id(), "patient_id": pid, "user_id": owner, "role": role,
                                "added_by": owner, "added_at": utcnow()})
                cid = new_id()
                consents.append({"id": cid, "patient_id": pid, "obtained_on": date(2026, 1, 1),
                                 "recorded_by": owner, "recorded_at": utcnow(),
                                 "details_ct": crypto.seal_json(key, {"obtained_by": "x", "scope": "共有"},
                                                                vault.consent_aad(pid, cid))})
                if i < mine:
                    for section, content in (("adl", {"eating": {"level": "supervision", "note": "とろみ"}}),
                                             ("diseases_medications", {"medications": [{"name": "薬A", "dose": "1錠"}] * 5}),
                                             ("wishes", {"patient_wishes": "自宅で過ごしたい" * 10})):
                        rev = {"id": new_id(), "patient_id": pid, "section": section, "version": 1,
                               "created_by": owner, "created_at": utcnow()}
                        rev["content_ct"] = crypto.seal_json(key, content, vault.revision_aad(SimpleNamespace(**rev)))
                        revisions.append(rev)
                ids.append(pid)
            db.session.execute(insert(Patient), rows)
            db.session.execute(insert(TeamMember), members)
            db.session.execute(insert(Consent), consents)
            if revisions:
                db.session.execute(insert(SectionRevision), revisions)
            db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return ids


def audit_filler(app, count, actors, patients_):
    """Bulk audit entries (hashes are placeholders: this is for search/append speed,
    not for verification). Appended after the current head, so new entries chain on."""
    with app.app_context():
        head = db.session.execute(select(func.coalesce(func.max(AuditEntry.seq), 0))).scalar()
        db.session.execute(text("""
            INSERT INTO audit_log (seq, at, actor_id, actor_org_id, action, patient_id, section, outcome,
                                   client_addr, request_id, detail, prev_hash, hash)
            SELECT :head + s, now() - make_interval(secs => (:n - s)), (CAST(:actors AS text[]))[1 + s % :na], NULL,
                   'record.read', (CAST(:patients AS text[]))[1 + s % :np], NULL, 'ok', '10.0.0.1', md5(s::text), NULL,
                   md5((s - 1)::text) || md5((s - 1)::text), md5(s::text) || md5(s::text)
            FROM generate_series(1, :n) AS s"""),
            {"head": head, "n": count, "actors": actors, "na": len(actors), "patients": patients_,
             "np": len(patients_)})
        # the newest filler entry becomes a valid-looking head for the entries that follow
        db.session.commit()
        db.session.execute(text("ANALYZE audit_log"))
        db.session.commit()


def valid_chain(app, count):
    """`count` correctly chained entries through the real hashing, for the verify rate."""
    from renkei import audit
    with app.app_context():
        prev, rows, now = audit.GENESIS, [], utcnow()
        for seq in range(1, count + 1):
            e = audit.Pending(action="record.read", outcome="ok", actor_id="a" * 36, patient_id="p" * 36,
                              client_addr="127.0.0.1", request_id="r" * 32, at=now + timedelta(microseconds=seq))
            digest = audit.entry_hash(prev, seq, e)
            rows.append({"seq": seq, "at": e.at, "actor_id": e.actor_id, "actor_org_id": None, "action": e.action,
                         "patient_id": e.patient_id, "section": None, "outcome": e.outcome,
                         "client_addr": e.client_addr, "request_id": e.request_id, "detail": None,
                         "prev_hash": prev, "hash": digest})
            prev = digest
            if len(rows) == BATCH:
                db.session.execute(insert(AuditEntry), rows)
                rows = []
        if rows:
            db.session.execute(insert(AuditEntry), rows)
        db.session.commit()
