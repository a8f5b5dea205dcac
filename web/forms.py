"""How section content reads on screen: labelled lines for display and the diff
between two revisions, from each section's layout (renkei/sections/catalogue.py). And the
labels of team roles and professions, and the vitals form's inputs. Labels are Japanese source strings translated
by Flask-Babel (translations/)."""

from datetime import timezone

from flask_babel import lazy_gettext as _l

from renkei.common import csvfile
from renkei.common.timefmt import JAPAN
from renkei.observations.kinds import KINDS
from renkei.sections.catalogue import ADL_LEVEL_LABELS, SECTIONS


def flatten(layout, content, prefix="") -> list[tuple[str, str, str]]:
    """(key, label, value) lines of a section's content, for display and diffs."""
    out = []
    for f in layout:
        value = (content or {}).get(f["name"])
        key, label = prefix + f["name"], str(f["label"])
        if value in (None, "", [], {}):
            continue
        if f["type"] == "adl":
            text_value = str(ADL_LEVEL_LABELS.get(value.get("level"), value.get("level")))
            if value.get("note"):
                text_value += f"（{value['note']}）"
            out.append((key, label, text_value))
        elif f["type"] == "choice":
            out.append((key, label, str(f["options"].get(value, value))))
        elif f["type"] == "group":
            out += [(k, f"{label}・{lbl}", v) for k, lbl, v in flatten(f["fields"], value, key + ".")]
        elif f["type"] == "rows":
            for i, row in enumerate(value, 1):  # a row is followed by its id (renkei/sections/rows.py)
                parts = [f"{lbl}: {v}" for _, lbl, v in flatten(f["fields"], row)]
                out.append((f"{key}.{row.get('id') or i}", f"{label} {i}", " / ".join(parts)))
        else:
            out.append((key, label, str(value)))
    return out


def diff(layout, older, newer) -> list[dict]:
    """Line-level changes between two revisions: added, removed or changed fields."""
    before = {k: (lbl, v) for k, lbl, v in flatten(layout, older)}
    after = {k: (lbl, v) for k, lbl, v in flatten(layout, newer)}
    changes = []
    for key in list(after) + [k for k in before if k not in after]:
        old, new = before.get(key, (None, None))[1], after.get(key, (None, None))[1]
        if old != new:
            label = (after.get(key) or before.get(key))[0]
            changes.append({"label": label, "old": old, "new": new})
    return changes


ROLE_LABELS = {
    "primary_physician": _l("主治医"),
    "backup_physician": _l("副主治医"),
    "nurse": _l("訪問看護師"),
    "care_manager": _l("介護支援専門員"),
    "disability_support_worker": _l("相談支援専門員"),
    "pharmacist": _l("薬剤師"),
    "therapist": _l("リハビリ職"),
}
PROFESSION_LABELS = {
    "physician": _l("医師"),
    "nurse": _l("看護師"),
    "care_manager": _l("介護支援専門員"),
    "disability_support_worker": _l("相談支援専門員"),
    "pharmacist": _l("薬剤師"),
    "therapist": _l("リハビリ職"),
    "other": _l("その他"),
}
ORGANIZATION_LABELS = {
    "clinic": _l("診療所"),
    "hospital": _l("病院"),
    "visiting_nurse_station": _l("訪問看護ステーション"),
    "care_management_office": _l("居宅介護支援事業所"),
    "disability_consultation_office": _l("相談支援事業所"),
    "pharmacy": _l("薬局"),
    "community_support_center": _l("地域包括支援センター"),
    "municipality": _l("市区町村"),
    "other": _l("その他"),
}
# A note's category as the timeline shows it, in the form's order (renkei/notes/notes.py CATEGORIES).
NOTE_CATEGORY_LABELS = {
    "observation": _l("観察"),
    "vital_signs": _l("バイタル"),
    "medication": _l("服薬"),
    "adl": "ADL",
    "contact": _l("連絡"),
    "incident": _l("事故・ヒヤリハット"),
    "other": _l("その他"),
}
# The access log's codes as an auditor reads them (templates/audit.html, the page's CSV).
ACTION_LABELS = {
    "auth.login": _l("ログイン"),
    "auth.logout": _l("ログアウト"),
    "auth.recover": _l("アクセス回復"),
    "auth.totp_enrol": _l("二要素認証の登録開始"),
    "outbox.key": _l("未送信の保管用の鍵の取得"),
    "auth.passkey_add": _l("パスキーの登録"),
    "auth.passkey_remove": _l("パスキーの削除"),
    "record.print": _l("記録の印刷"),
    "auth.totp_confirm": _l("二要素認証の登録"),
    "push.subscribe": _l("通知を受け取る端末の登録"),
    "push.unsubscribe": _l("通知を受け取る端末の解除"),
    "notifications.update": _l("通知設定の変更"),
    "note.escalate": _l("至急連絡の未確認通知"),
    "escalation.read": _l("未確認時の通知設定の閲覧"),
    "escalation.update": _l("未確認時の通知設定の変更"),
    "account.email": _l("メールアドレスの変更"),
    "account.email_confirm": _l("メールアドレスの確認"),
    "patient.create": _l("利用者の登録"),
    "patient.read": _l("利用者情報の閲覧"),
    "patient.list": _l("担当利用者一覧"),
    "patient.search": _l("利用者の検索"),
    "patient.delete": _l("利用者の削除"),
    "patient.index_names": _l("氏名索引の作成"),
    "patient.by_code": _l("シートのコードで開く"),
    "record.read": _l("記録の閲覧"),
    "record.write": _l("記録の更新"),
    "record.history": _l("記録の履歴の閲覧"),
    "note.create": _l("連絡帳の投稿"),
    "note.list": _l("連絡帳の閲覧"),
    "note.ack": _l("連絡帳の確認"),
    "note.seen": _l("連絡帳の既読"),
    "note.search": _l("連絡帳の検索"),
    "observation.create": _l("バイタルの記録"),
    "observation.list": _l("バイタルの閲覧"),
    "observation.error": _l("バイタルの誤入力の指定"),
    "observation.import": _l("バイタルの取り込み"),
    "observation.import_preview": _l("バイタルの取り込み（確認）"),
    "thresholds.read": _l("閾値の閲覧"),
    "thresholds.update": _l("閾値の変更"),
    "team.read": _l("チームの閲覧"),
    "team.add": _l("チームへの追加"),
    "team.remove": _l("チームから外す"),
    "team.confirm": _l("管理者による任命の確認"),
    "attachment.create": _l("写真・文書の添付"),
    "attachment.list": _l("添付の一覧"),
    "attachment.read": _l("添付の閲覧"),
    "attachment.thumbnail": _l("添付の縮小画像の閲覧"),
    "attachment.delete": _l("添付の削除"),
    "auth.shed": _l("混雑のため断ったログイン"),
    "consent.create": _l("同意の記録"),
    "consent.list": _l("同意の閲覧"),
    "consent.withdraw": _l("同意撤回の記録"),
    "breakglass.open": _l("緊急時アクセスの開始"),
    "breakglass.list": _l("緊急時アクセスの一覧"),
    "realtime.connect": _l("リアルタイム接続"),
    "directory.org_create": _l("事業所の登録"),
    "directory.user_create": _l("アカウントの作成"),
    "directory.user_update": _l("アカウントの変更"),
    "directory.user_unlock": _l("ログイン制限の解除"),
    "directory.totp_reset": _l("二要素認証のリセット"),
    "directory.reset_request": _l("アクセスリセットの申請"),
    "directory.invite": _l("招待の再発行"),
    "directory.user_confirm": _l("アカウントの確認"),
    "directory.confirm_server": _l("サーバーでのアカウントの確認"),
    "team.confirm_server": _l("サーバーでの任命の確認"),
    "auth.invitation_accept": _l("招待の受諾"),
    "directory.reset_approve": _l("アクセスリセットの承認"),
    "directory.reset_server": _l("サーバーでのアクセスリセット"),
    "audit.read": _l("アクセスログの閲覧"),
    "audit.export": _l("アクセスログの出力"),
    "audit.verify": _l("改ざん検証"),
    "audit.checkpoint": _l("チェックポイントの取得"),
    "audit.proof": _l("証明の取得"),
    "audit.patient_search": _l("アクセスログの利用者検索"),
    "audit.archive": _l("アクセスログのアーカイブ"),
    "audit.breakglass": _l("緊急時アクセスの一覧（監査）"),
    "usage.read": _l("活用状況の閲覧"),
    "demo.seed": _l("デモデータの作成"),
}
# What a failed check of the access log means (renkei/access_log/verification.py PROBLEMS).
VERIFY_PROBLEMS = {
    "altered": _l("記録が書き換えられたか、削除されたか、順序が入れ替えられています。番号はその最初の記録です。"),
    "truncated": _l(
        "署名付きチェックポイントにある最新の記録の一部が、データベースからなくなっています（末尾の削除）。"
    ),
    "forked": _l("同じ件数で内容の異なる署名付きチェックポイントがあります。記録が二通りに分かれています。"),
    "anchor": _l("アーカイブ済みの範囲との境目が、保存された署名と一致しません。"),
    "stalled": _l(
        "1分以上封印されていない記録があります。記録は書き込まれていますが、封印の処理が止まっていて、まだ保護されていません。"
    ),
    "signature": _l("このチェックポイントはこのシステムの鍵で署名されていません。"),
    "archived": _l("このチェックポイントの範囲はアーカイブ済みです。アーカイブファイルで確認してください。"),
}
OUTCOME_LABELS = {
    "ok": _l("成功"),
    "denied": _l("拒否"),
    "not_found": _l("該当なし"),
    "invalid": _l("入力エラー"),
    "conflict": _l("競合"),
    "unauthenticated": _l("未認証"),
    "throttled": _l("回数制限"),
    "failed": _l("失敗"),
}
ESCALATION_TARGETS = {"backup_physician": _l("副主治医"), "call_list": _l("連絡先リスト")}  # who an escalation told
SEX_LABELS = {"male": _l("男性"), "female": _l("女性"), "other": _l("その他"), "unknown": _l("不明")}


# 活用状況: the headline figures, in the order the page and its CSV show them.
USAGE_FIGURES = [
    ("orgs_active", _l("利用のあった事業所（直近30日）")),
    ("organizations", _l("登録事業所")),
    ("people_active", _l("利用のあった人（直近30日）")),
    ("users", _l("登録者")),
    ("patients_with_consent", _l("同意が記録された利用者")),
    ("patients", _l("登録された利用者")),
    ("breakglass", _l("緊急時アクセス（直近30日）")),
]

AUDIT_SHEET_COLUMNS = [
    ("seq", _l("番号")),
    ("at", _l("日時（日本時間）")),
    ("actor", _l("操作者")),
    ("actor_id", _l("操作者ID")),
    ("organization", _l("所属")),
    ("action_label", _l("操作")),
    ("action", _l("操作コード")),
    ("patient_id", _l("利用者ID")),
    ("patient", _l("利用者")),
    ("section", _l("項目")),
    ("outcome", _l("結果")),
    ("client_addr", _l("端末")),
    ("request_id", _l("リクエストID")),
    ("detail", _l("詳細")),
]


def audit_sheet(entries, names: dict, org_names: dict, patient_names: dict):
    """The access log as the page's CSV: text chunks, the first opening with a BOM. A
    patient's name is filled in only for the patient the auditor filtered by."""

    def rows():
        for e in entries:
            at = e.at.replace(tzinfo=timezone.utc).astimezone(JAPAN).isoformat(timespec="seconds")
            row = {
                "seq": e.seq,
                "at": at,
                "actor": names.get(e.actor_id, ""),
                "actor_id": e.actor_id,
                "organization": org_names.get(e.actor_org_id, ""),
                "action_label": str(ACTION_LABELS.get(e.action, e.action)),
                "action": e.action,
                "patient_id": e.patient_id,
                "patient": patient_names.get(e.patient_id, ""),
                "section": str(SECTIONS[e.section].title) if e.section in SECTIONS else e.section,
                "outcome": str(OUTCOME_LABELS.get(e.outcome, e.outcome)),
                "client_addr": e.client_addr,
                "request_id": e.request_id,
                "detail": e.detail,
            }
            yield [row[name] for name, _ in AUDIT_SHEET_COLUMNS]

    return csvfile.chunks([str(label) for _, label in AUDIT_SHEET_COLUMNS], rows(), start=BOM)


BOM = "\ufeff"  # Excel reads UTF-8 only with it


# --- the vitals form (templates/_vitals.html): one input per value, in the order a nurse takes them
COMPONENT_LABELS = {"systolic": _l("上"), "diastolic": _l("下")}
KIND_LABELS = {key: kind.label for key, kind in KINDS.items()}


def vital_fields() -> list[dict]:
    """The form's inputs from the kinds' declaration (renkei/observations/readings.py KINDS)."""
    out = []
    for kind in KINDS.values():
        parts = [(name, m) for name, (_loinc, m, _label) in kind.components.items()] or [(None, kind.measure)]
        for part, m in parts:
            out.append(
                {
                    "kind": kind.key,
                    "part": part,
                    "unit": kind.shown_unit,
                    "places": m.places,
                    "label": f"{kind.label} {COMPONENT_LABELS[part]}" if part else kind.label,
                    "low": m.low,
                    "high": m.high,
                    "usual_low": m.usual_low,
                    "usual_high": m.usual_high,
                }
            )
    return out
