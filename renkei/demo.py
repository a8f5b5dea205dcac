"""Demo organisations, people and patients for the embedded default. Everything goes
through the same services as real data (renkei/patients/registry.py, teams.py, revisions.py,
notes.py, directory.py): sealed, announced and audited alike."""

import sys
from datetime import date, timedelta

from sqlalchemy import select

from models import User, utcnow
from renkei.common import db, work
from renkei.migrations import upgrade_schema
from renkei.notes import notes
from renkei.observations import readings, thresholds
from renkei.observations.kinds import MAX_ITEMS
from renkei.patients import authz, consent, registry, teams
from renkei.people import auth, directory, invitations
from renkei.record import revisions
from renkei.settings import INSTANCE

DEMO_PASSWORD = "renkei-demo-2026"

# name, kind, phone (the 555 numbers of Japanese fiction: nobody's real line)
ORGS = [
    ("あおぞら在宅クリニック", "clinic", "03-5550-0101"),
    ("さくら訪問看護ステーション", "visiting_nurse_station", "03-5550-0202"),
    ("みどり居宅介護支援事業所", "care_management_office", "03-5550-0303"),
    ("ひかり薬局", "pharmacy", "03-5550-0404"),
    ("はばたき相談支援センター", "disability_consultation_office", "03-5550-0505"),
]
# login, name, org index, profession, work phone
PEOPLE = [
    ("dr.sato", "佐藤 一郎", 0, "physician", "090-5550-1001"),
    ("ns.suzuki", "鈴木 花子", 1, "nurse", "090-5550-1002"),
    ("cm.tanaka", "田中 美咲", 2, "care_manager", "090-5550-1003"),
    ("ph.ito", "伊藤 健", 3, "pharmacist", None),
    ("sw.kato", "加藤 陽子", 4, "disability_support_worker", None),
    ("dr.kobayashi", "小林 誠", 0, "physician", "090-5550-1006"),
]

# On one patient's team only: for trying break-glass on the others.
COVERING_PHYSICIAN = "dr.kobayashi"
# Exempt from needing a second factor, on the embedded default only (renkei/app.py).
DEMO_LOGINS = frozenset([login for login, *_ in PEOPLE] + ["auditor"])

PATIENTS = [
    (
        {
            "name": "山田 太郎",
            "name_kana": "やまだ たろう",
            "birth_date": "1938-04-12",
            "sex": "male",
            "address": "東京都〇〇市本町1-2-3",
        },
        {
            "wishes": {
                "patient_wishes": "できる限り自宅で過ごしたい。",
                "family_wishes": "本人の希望を尊重したい。",
                "preferred_place_of_care": "自宅",
                "preferred_place_of_death": "自宅",
                "resuscitation": "do_not_attempt",
                "acp_notes": "長女同席で人生会議を実施。",
                "discussed_on": "2026-10-01",
            },
            "adl": {
                "eating": {"level": "supervision", "note": "むせ込みあり、とろみ剤使用"},
                "excretion": {"level": "partial_assist"},
                "mobility": {"level": "partial_assist", "note": "歩行器"},
                "bathing": {"level": "full_assist", "note": "訪問入浴 週2回"},
            },
            "diseases_medications": {
                "conditions": [{"name": "慢性心不全"}, {"name": "2型糖尿病"}],
                "medications": [
                    {
                        "name": "フロセミド錠20mg",
                        "dose": "1錠",
                        "route": "内服",
                        "frequency": "朝食後",
                        "prescriber": "佐藤 一郎",
                    }
                ],
                "allergies": [{"substance": "ペニシリン", "reaction": "発疹"}],
            },
            "expected_changes": {
                "items": [
                    {
                        "change": "心不全の増悪",
                        "warning_signs": "体重2kg以上増加、息切れ、下肢浮腫",
                        "response": "フロセミド頓用、主治医に連絡",
                        "whom_to_call": "あおぞら在宅クリニック",
                    }
                ]
            },
            "condition": {"summary": "息切れは安静時なし。下肢浮腫軽度。", "recent_changes": "先週より体重+1kg"},
            "family_care": {
                "main_carer": "長女",
                "key_contacts": [{"name": "山田 花子", "relationship": "長女", "phone": "090-5550-2001"}],
            },
        },
        ["dr.sato", "ns.suzuki", "ph.ito"],
    ),
    (
        {"name": "高橋 ハル", "name_kana": "たかはし はる", "birth_date": "1931-11-03", "sex": "female"},
        {
            "condition": {"summary": "食欲やや低下。", "medication_adherence": "partial"},
            "family_care": {"main_carer": "長男の妻", "availability": {"morning": "可", "night": "不可"}},
        },
        ["dr.sato", "ns.suzuki"],
    ),
    (
        {"name": "中村 翔", "name_kana": "なかむら しょう", "birth_date": "1995-07-21", "sex": "male"},
        {"care_notes": {"notes": "訪問は午後を希望。大きな音が苦手。"}},
        ["sw.kato", "dr.kobayashi"],
    ),
]


def seed() -> str:
    """Create the demo data; returns what to print (the administrator's TOTP secret is
    only in instance/demo-credentials.txt, readable by its owner alone)."""
    if db.session.execute(select(User.id).limit(1)).first():
        return "the database already has users; demo data not loaded"
    admin = directory.create_admin("admin", DEMO_PASSWORD, "システム 管理者")
    administrator = db.session.get(User, admin["id"])
    orgs = [directory.create_organization(administrator, name, kind, phone)["id"] for name, kind, phone in ORGS]
    # People are made as an administrator makes them — an invitation each, which the
    # person accepts with their own password — but by the loader, on the server, so they
    # are confirmed (renkei/people/confirmations.py). Unlike a real invitation, the demo's
    # people may sign in without a second factor, so the demo can be tried at once.
    invited = [(login, name, orgs[org], profession, phone, False) for login, name, org, profession, phone in PEOPLE]
    invited.append(("auditor", "監査 担当", administrator.organization_id, "other", None, True))
    for login, name, org, profession, phone, is_auditor in invited:
        made = directory.create_user(None, login, name, org, profession, is_auditor=is_auditor, phone=phone)
        invitations.redeem(made["invitation"]["code"], DEMO_PASSWORD, None).totp_reenrol = False
    people = {u.login: u for u in db.session.execute(select(User)).scalars()}
    # The covering physician has a second factor, as in production, so break-glass is
    # tried as it really goes (his secret, like the administrator's, only in the file).
    covering = people[COVERING_PHYSICIAN]
    covering_secret = auth.new_totp_secret(covering)
    covering.totp_enabled = True
    for demographics, sections, members in PATIENTS:
        registrant = people["sw.kato" if "sw.kato" in members else "cm.tanaka"]
        _demo_patient(registrant, demographics, sections, [people[m] for m in members if m != registrant.login])
    text = (
        f"Demo users (password {DEMO_PASSWORD}): " + ", ".join(login for login, *_ in PEOPLE) + ", auditor\n"
        f"Demo administrator: admin / {DEMO_PASSWORD}, TOTP secret {admin['totp_secret']}\n"
        f"Covering physician (break-glass): {COVERING_PHYSICIAN} / {DEMO_PASSWORD}, TOTP secret {covering_secret}\n"
    )
    # The credentials are on disk before the data commits: never users nobody can sign in as.
    INSTANCE.mkdir(parents=True, exist_ok=True)
    credentials = INSTANCE / "demo-credentials.txt"
    credentials.touch(mode=0o600)
    credentials.chmod(0o600)  # also when an older copy was readable by others
    credentials.write_text(text)
    unit = work.current()
    unit.entry_fields.clear()
    unit.add_entry("demo.seed", "ok")
    unit.commit()
    # The administrator's second factor goes to that file only, never to the server's log.
    return text.split("Demo administrator")[0] + (
        f"Demo administrator: admin (TOTP secret in {credentials})\n"
        f"Covering physician: {COVERING_PHYSICIAN} (TOTP secret in {credentials})\n"
    )


def _demo_patient(registrant, demographics, sections, members):
    patient_id = registry.register(registrant, demographics)["id"]
    consent.record_consent(
        registrant,
        patient_id,
        date(2026, 10, 1),
        registrant.display_name,
        "在宅療養に関わる医療・介護関係者間での情報共有",
    )
    team = [(registrant, authz.PROFESSION_ROLES[registrant.profession][0])]
    for member in members:
        team.append((member, authz.PROFESSION_ROLES[member.profession][0]))
        teams.add_member(registrant, patient_id, member.id, team[-1][1])
    for section, content in sections.items():
        writer = next(user for user, role in team if authz.may_write(role, section))
        revisions.write_section(writer, patient_id, section, content, based_on=0)
    notes.post(registrant, patient_id, "初回訪問。ご本人・ご家族と面談しました。", "observation")
    nurse = next((user for user, role in team if role == "nurse"), None)
    if nurse is not None:
        _demo_vitals(nurse, patient_id)


def _demo_vitals(nurse, patient_id):
    """Two weeks of a visiting nurse's morning and evening readings, and the thresholds
    a heart-failure patient's physician would set: the charts have something to show."""
    thresholds.set_thresholds(
        nurse,
        patient_id,
        {
            "body_temperature": {"max": 37.9},
            "spo2": {"min": 92},
            "body_weight": {"rise": 2, "within_days": 3},
            "blood_pressure": {"systolic": {"max": 160}},
        },
        0,
    )
    start = utcnow().replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=15)  # 08:00 JST
    items = []
    for i in range(28):
        at = (start + timedelta(hours=12 * i)).isoformat()
        wave = (i * 7) % 5  # a little day-to-day variation, the same in every demo
        items += [
            {
                "kind": "body_temperature",
                "value": round(36.4 + wave * 0.1 + (0.6 if i in (17, 18) else 0), 1),
                "measured_at": at,
            },
            {
                "kind": "blood_pressure",
                "components": {"systolic": 124 + wave * 3, "diastolic": 72 + wave},
                "measured_at": at,
            },
            {"kind": "heart_rate", "value": 70 + wave * 2, "measured_at": at},
            {"kind": "spo2", "value": 97 - (wave % 3), "measured_at": at},
        ]
        if i % 2 == 0:
            items.append({"kind": "body_weight", "value": round(48.0 + i * 0.05, 1), "measured_at": at})
    for chunk in range(0, len(items), MAX_ITEMS):
        readings.record(nurse, patient_id, items[chunk : chunk + MAX_ITEMS], many=True)


def prepare_embedded(engine):
    """Embedded default: migrate the SQLite file and load demo data on first start."""
    upgrade_schema(engine)
    text = seed()
    print(text if "Demo" in text else f" * {text}", file=sys.stderr)
