"""Benchmark data: patients with sealed demographics and data keys, teams, consent,
record sections, tokens, and bulk audit entries — generated through the same
crypto as real data, inserted in bulk."""

from datetime import date, timedelta
from types import SimpleNamespace

from sqlalchemy import insert, text

from models import Consent, Organization, Patient, SectionRevision, TeamMember, User, new_id, utcnow
from renkei.access_log import keyring
from renkei.common import crypto, db, vault
from renkei.people import auth

BATCH = 5000


def people(app, fillers=200):
    """An organisation, the benchmark physician, an auditor and filler team members."""
    with app.app_context():
        org = Organization(id=new_id(), name="ベンチ診療所", kind="clinic")
        db.session.add(org)
        hashed = auth.hash_password("bench-password-1")
        reader = User(
            id=new_id(),
            login="bench.doc",
            password_hash=hashed,
            display_name="ベンチ 医師",
            organization_id=org.id,
            profession="physician",
            confirmed_at=utcnow(),
            totp_enabled=True,  # a second factor, as every account needs (its tokens are made on the server)
        )
        auditor = User(
            id=new_id(),
            login="bench.audit",
            password_hash=hashed,
            display_name="ベンチ 監査",
            organization_id=org.id,
            profession="other",
            is_auditor=True,
            confirmed_at=utcnow(),
            totp_enabled=True,  # a second factor, as every account needs (its tokens are made on the server)
        )
        filler = [
            User(
                id=new_id(),
                login=f"filler{i}",
                password_hash=hashed,
                display_name=f"職員{i}",
                organization_id=org.id,
                profession="nurse",
                confirmed_at=utcnow(),
                totp_enabled=True,  # a second factor, as every account needs (its tokens are made on the server)
            )
            for i in range(fillers)
        ]
        db.session.add_all([reader, auditor, *filler])
        db.session.flush()
        tokens = {
            "reader": auth.issue_token(reader)[0],
            "auditor": auth.issue_token(auditor)[0],
        }
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
                rows.append(
                    {
                        "id": pid,
                        "kek_id": kid,
                        "wrapped_key": wrapped,
                        "registered_by": who["reader"],
                        "demographics_ct": crypto.seal_json(key, demo, vault.demographics_aad(pid)),
                        "name_index": crypto.blind_index(index_key, name),
                        "kana_index": crypto.blind_index(index_key, kana),
                        "created_at": utcnow(),
                    }
                )
                owner = who["reader"] if i < mine else who["fillers"][i % len(who["fillers"])]
                role = "primary_physician" if i < mine else "nurse"
                members.append(
                    {
                        "id": new_id(),
                        "patient_id": pid,
                        "user_id": owner,
                        "role": role,
                        "added_by": owner,
                        "added_at": utcnow(),
                    }
                )
                cid = new_id()
                consents.append(
                    {
                        "id": cid,
                        "patient_id": pid,
                        "obtained_on": date(2026, 1, 1),
                        "recorded_by": owner,
                        "recorded_at": utcnow(),
                        "details_ct": crypto.seal_json(
                            key, {"obtained_by": "x", "scope": "共有"}, vault.consent_aad(pid, cid)
                        ),
                    }
                )
                if i < mine:
                    for section, content in (
                        ("adl", {"eating": {"level": "supervision", "note": "とろみ"}}),
                        ("diseases_medications", {"medications": [{"name": "薬A", "dose": "1錠"}] * 5}),
                        ("wishes", {"patient_wishes": "自宅で過ごしたい" * 10}),
                    ):
                        rev = {
                            "id": new_id(),
                            "patient_id": pid,
                            "section": section,
                            "version": 1,
                            "created_by": owner,
                            "created_at": utcnow(),
                        }
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


def sealed_log(app, count, actors=("a" * 36,), patients_=("p" * 36,), heads_every=1_000_000):
    """`count` access-log entries placed in the tree exactly as the sealer places them
    (real MACs, leaf hashes, tiles, signed heads in the sink every `heads_every`
    entries), after whatever is there, streamed in with COPY: a verifiable log of
    millions in minutes. Times run up to now, one entry per millisecond."""
    from renkei.access_log import entries, merkle, sealer, sinks, tree

    with app.app_context():
        keys, copies = keyring.keys(), sinks.sinks(app.config["RENKEI"])
        size, _ = sealer.head()
        tiles, leaves, first = tree.Tiles(), [], size
        start = utcnow() - timedelta(milliseconds=count)
        columns = ("seq",) + entries.LEAF_FIELDS + ("mac",)
        cursor = db.session.connection().connection.driver_connection.cursor()
        for chunk in range(0, count, 65536):  # one COPY per chunk; the tiles between (one connection)
            with cursor.copy(f"COPY audit_log ({', '.join(columns)}) FROM STDIN") as copy:
                for i in range(chunk, min(count, chunk + 65536)):
                    seq = size + i + 1
                    at = start + timedelta(milliseconds=i)
                    values = (
                        actors[i % len(actors)],
                        None,
                        "record.read",
                        patients_[i % len(patients_)],
                        None,
                        "ok",
                        "10.0.0.1",
                        f"{seq:032x}",
                        None,
                    )
                    text_ = entries.entry_text(seq, at, values)
                    mac = keys.mac(text_)
                    copy.write_row((seq, at, *values, mac))
                    leaves.append(merkle.leaf_hash(entries.leaf(text_, mac)))
            tiles.extend(first, leaves)
            first, leaves = first + len(leaves), []
            if first % heads_every < 65536 or first == size + count:
                note = keys.checkpoint(first, tiles.root(first))
                for sink in copies:
                    sink.append(note)
        size += count
        sealer.store_head(size, tiles.root(size))
        db.session.commit()
        db.session.execute(text("ANALYZE audit_log"))
        db.session.commit()
