"""Demo organisations, people and patients for the embedded default. Everything
goes through the same code paths as real data (sealed, audited)."""
import sys
from datetime import date

from flask import current_app, g
from sqlalchemy import select

from models import (Consent, Note, Organization, Patient, SectionRevision, TeamMember, User,
                    new_id, utcnow)
from renkei import audit, auth, crypto, db, vault
from renkei.settings import INSTANCE

DEMO_PASSWORD = "renkei-demo-2026"

ORGS = [("あおぞら在宅クリニック", "clinic"), ("さくら訪問看護ステーション", "visiting_nurse_station"),
        ("みどり居宅介護支援事業所", "care_management_office"), ("ひかり薬局", "pharmacy"),
        ("はばたき相談支援センター", "disability_consultation_office"), ("Renkei 管理", "other")]
# login, name, org index, profession
PEOPLE = [("dr.sato", "佐藤 一郎", 0, "physician"), ("ns.suzuki", "鈴木 花子", 1, "nurse"),
          ("cm.tanaka", "田中 美咲", 2, "care_manager"), ("ph.ito", "伊藤 健", 3, "pharmacist"),
          ("sw.kato", "加藤 陽子", 4, "disability_support_worker"),
          ("dr.kobayashi", "小林 誠", 0, "physician")]

PATIENTS = [
    ({"name": "山田 太郎", "name_kana": "やまだ たろう", "birth_date": "1938-04-12", "sex": "male",
      "address": "東京都〇〇市本町1-2-3"},
     {"wishes": {"patient_wishes": "できる限り自宅で過ごしたい。", "family_wishes": "本人の希望を尊重したい。",
                 "preferred_place_of_care": "自宅", "preferred_place_of_death": "自宅",
                 "resuscitation": "do_not_attempt", "acp_notes": "長女同席で人生会議を実施。",
                 "discussed_on": "2026-10-01"},
      "adl": {"eating": {"level": "supervision", "note": "むせ込みあり、とろみ剤使用"},
              "excretion": {"level": "partial_assist"}, "mobility": {"level": "partial_assist", "note": "歩行器"},
              "bathing": {"level": "full_assist", "note": "訪問入浴 週2回"}},
      "diseases_medications": {"conditions": [{"name": "慢性心不全"}, {"name": "2型糖尿病"}],
                               "medications": [{"name": "フロセミド錠20mg", "dose": "1錠", "route": "内服",
                                                "frequency": "朝食後", "prescriber": "佐藤 一郎"}],
                               "allergies": [{"substance": "ペニシリン", "reaction": "発疹"}]},
      "expected_changes": {"items": [{"change": "心不全の増悪", "warning_signs": "体重2kg以上増加、息切れ、下肢浮腫",
                                      "response": "フロセミド頓用、主治医に連絡", "whom_to_call": "あおぞら在宅クリニック"}]}},
     ["dr.sato", "ns.suzuki", "ph.ito"]),
    ({"name": "高橋 ハル", "name_kana": "たかはし はる", "birth_date": "1931-11-03", "sex": "female"},
     {"condition": {"summary": "食欲やや低下。", "medication_adherence": "partial"},
      "family_care": {"main_carer": "長男の妻", "availability": {"morning": "可", "night": "不可"}}},
     ["dr.sato", "ns.suzuki"]),
    ({"name": "中村 翔", "name_kana": "なかむら しょう", "birth_date": "1995-07-21", "sex": "male"},
     {"care_notes": {"notes": "訪問は午後を希望。大きな音が苦手。"}}, ["sw.kato", "dr.kobayashi"]),
]


def seed() -> str:
    """Create the demo data; returns the credentials text (also written to instance/)."""
    if db.session.execute(select(User.id).limit(1)).first():
        return "the database already has users; demo data not loaded"
    orgs = []
    for name, kind in ORGS:
        orgs.append(Organization(id=new_id(), name=name, kind=kind))
        db.session.add(orgs[-1])
    hashed = auth.hash_password(DEMO_PASSWORD)
    users = {}
    for login, name, org, profession in PEOPLE:
        users[login] = User(id=new_id(), login=login, password_hash=hashed, display_name=name,
                            organization_id=orgs[org].id, profession=profession)
        db.session.add(users[login])
    users["auditor"] = User(id=new_id(), login="auditor", password_hash=hashed,
                            display_name="監査 担当", organization_id=orgs[5].id,
                            profession="other", is_auditor=True)
    db.session.add(users["auditor"])
    db.session.flush()
    from renkei.cli import create_admin
    admin = create_admin("admin", DEMO_PASSWORD, "システム 管理者")
    cm = users["cm.tanaka"]
    for demographics, sections, members in PATIENTS:
        registrant = cm if "sw.kato" not in members else users["sw.kato"]
        _demo_patient(registrant, demographics, sections,
                      [users[m] for m in members if users[m] is not registrant])
    g.setdefault("audit_pending", [])
    audit.record("demo.seed", "ok")
    db.commit()
    text = (f"Demo users (password {DEMO_PASSWORD}): "
            + ", ".join(login for login, *_ in PEOPLE) + ", auditor\n"
            f"Demo administrator: admin / {DEMO_PASSWORD}, TOTP secret {admin['totp_secret']}\n")
    (INSTANCE / "demo-credentials.txt").write_text(text)
    return text


def _demo_patient(registrant, demographics, sections, members):
    from api.patients import seal_demographics
    from api.sections import clean_content
    from renkei.authz import PROFESSION_ROLES
    patient = Patient(id=new_id(), registered_by=registrant.id)
    key = vault.new_patient_key(patient)
    seal_demographics(patient, key, demographics)
    db.session.add(patient)
    db.session.flush()
    for user in [registrant, *members]:
        db.session.add(TeamMember(patient_id=patient.id, user_id=user.id,
                                  role=PROFESSION_ROLES[user.profession][0], added_by=registrant.id))
    consent = Consent(id=new_id(), patient_id=patient.id, obtained_on=date(2026, 10, 1),
                      recorded_by=registrant.id)
    consent.details_ct = crypto.seal_json(key, {"obtained_by": registrant.display_name,
                                                "scope": "在宅療養に関わる医療・介護関係者間での情報共有"},
                                          vault.aad(patient.id, "consent=" + consent.id))
    db.session.add(consent)
    for section, content in sections.items():
        content = clean_content(section, content)
        db.session.add(SectionRevision(
            patient_id=patient.id, section=section, version=1, created_by=registrant.id,
            content_ct=crypto.seal_json(key, content, vault.section_aad(patient.id, section, 1))))
    note = Note(id=new_id(), patient_id=patient.id, category="observation", urgent=False,
                created_by=registrant.id, created_at=utcnow())
    note.body_ct = crypto.seal(key, "初回訪問。ご本人・ご家族と面談しました。".encode(),
                               vault.note_aad(patient.id, note.id))
    db.session.add(note)


def prepare_embedded(app):
    """Embedded default: migrate the SQLite file and load demo data on first start."""
    from renkei.cli import upgrade_schema
    upgrade_schema(current_app.extensions["renkei.engine"])
    text = seed()
    print(text if "Demo" in text else f" * {text}", file=sys.stderr)
