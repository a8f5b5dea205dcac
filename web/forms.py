"""How each 表3 section is laid out on screen and in its edit form. Labels are
Japanese source strings, translated by Flask-Babel (translations/). The field
names are those of api/sections.py, which validates what the form sends."""
from flask_babel import lazy_gettext as _l

from api.sections import ADL_ITEMS, ADL_LEVELS

SECTION_TITLES = {
    "wishes": _l("本人・家族の療養の希望"),
    "condition": _l("状況・体調の変化、服薬状況"),
    "adl": _l("ADL（食事・排泄など）"),
    "home": _l("家屋の状況"),
    "family_care": _l("家族による介護"),
    "diseases_medications": _l("疾病・使用薬剤"),
    "illness_explanation": _l("病状説明と受け止め"),
    "expected_changes": _l("予測される変化と対応"),
    "home_care_cautions": _l("在宅療養の注意点"),
    "care_notes": _l("生活支援・介護の留意点"),
}
ADL_LABELS = {"eating": _l("食事"), "excretion": _l("排泄"), "mobility": _l("移動"),
              "transfer": _l("移乗"), "bathing": _l("入浴"), "dressing": _l("更衣"),
              "grooming": _l("整容"), "communication": _l("コミュニケーション"),
              "cognition": _l("認知")}
ADL_LEVEL_LABELS = {"independent": _l("自立"), "supervision": _l("見守り"),
                    "partial_assist": _l("一部介助"), "full_assist": _l("全介助")}
CHOICES = {
    "resuscitation": {"attempt": _l("希望する"), "do_not_attempt": _l("希望しない"),
                      "undecided": _l("未定")},
    "medication_adherence": {"good": _l("良好"), "partial": _l("時々飲み忘れ"),
                             "poor": _l("不良"), "unknown": _l("不明")},
}


def text(name, label):
    return {"name": name, "label": label, "type": "text"}


def area(name, label):
    return {"name": name, "label": label, "type": "textarea"}


def date(name, label):
    return {"name": name, "label": label, "type": "date"}


def choice(name, label):
    return {"name": name, "label": label, "type": "choice", "options": CHOICES[name]}


def rows(name, label, *fields):
    return {"name": name, "label": label, "type": "rows", "fields": list(fields)}


def group(name, label, *fields):
    return {"name": name, "label": label, "type": "group", "fields": list(fields)}


LAYOUT = {
    "wishes": [area("patient_wishes", _l("本人の希望")), area("family_wishes", _l("家族の希望")),
               text("preferred_place_of_care", _l("療養したい場所")),
               text("preferred_place_of_death", _l("最期を迎えたい場所")),
               choice("resuscitation", _l("心肺蘇生")), area("acp_notes", _l("人生会議（ACP）の記録")),
               date("discussed_on", _l("話し合った日"))],
    "condition": [area("summary", _l("現在の状態")), area("recent_changes", _l("最近の変化")),
                  choice("medication_adherence", _l("服薬状況")), area("medication_note", _l("服薬の補足"))],
    "adl": [{"name": item, "label": ADL_LABELS[item], "type": "adl"} for item in ADL_ITEMS]
           + [area("note", _l("補足"))],
    "home": [area("housing", _l("住まい")), area("steps_stairs", _l("段差・階段")), area("bed", _l("ベッド")),
             area("bathroom", _l("浴室・トイレ")), area("adaptations", _l("住宅改修・福祉用具")),
             area("access_notes", _l("訪問時の出入り"))],
    "family_care": [text("main_carer", _l("主介護者")),
                    group("availability", _l("時間帯別の対応"), text("morning", _l("朝")),
                          text("daytime", _l("日中")), text("evening", _l("夕方")), text("night", _l("夜間"))),
                    area("limits", _l("介護の限界・負担")),
                    rows("key_contacts", _l("キーパーソン・連絡先"), text("name", _l("氏名")),
                         text("relationship", _l("続柄")), text("phone", _l("電話")), text("note", _l("備考")))],
    "diseases_medications": [
        rows("conditions", _l("疾病"), text("name", _l("病名")), text("since", _l("発症・診断")),
             text("note", _l("備考"))),
        rows("medications", _l("使用薬剤"), text("name", _l("薬剤名")), text("dose", _l("用量")),
             text("route", _l("経路")), text("frequency", _l("用法")), text("prescriber", _l("処方医")),
             text("note", _l("備考"))),
        rows("allergies", _l("アレルギー"), text("substance", _l("原因")), text("reaction", _l("症状")))],
    "illness_explanation": [rows("entries", _l("説明の記録"), date("explained_on", _l("日付")),
                                 text("explained_by", _l("説明者")), text("explained_to", _l("説明を受けた人")),
                                 area("content", _l("説明内容")), area("reception", _l("受け止め方")))],
    "expected_changes": [rows("items", _l("予測される変化"), area("change", _l("変化")),
                              area("warning_signs", _l("兆候")), area("response", _l("対応方法")),
                              text("whom_to_call", _l("連絡先")))],
    "home_care_cautions": [area("cautions", _l("注意点"))],
    "care_notes": [area("notes", _l("留意点"))],
}


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
            for i, row in enumerate(value, 1):
                parts = [f"{lbl}: {v}" for _, lbl, v in flatten(f["fields"], row)]
                out.append((f"{key}.{i}", f"{label} {i}", " / ".join(parts)))
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


__all__ = ["SECTION_TITLES", "LAYOUT", "ADL_LEVELS", "ADL_LEVEL_LABELS", "flatten", "diff"]

ROLE_LABELS = {"primary_physician": _l("主治医"), "backup_physician": _l("副主治医"),
               "nurse": _l("訪問看護師"), "care_manager": _l("介護支援専門員"),
               "disability_support_worker": _l("相談支援専門員"), "pharmacist": _l("薬剤師"),
               "therapist": _l("リハビリ職")}
PROFESSION_LABELS = {"physician": _l("医師"), "nurse": _l("看護師"), "care_manager": _l("介護支援専門員"),
                     "disability_support_worker": _l("相談支援専門員"), "pharmacist": _l("薬剤師"),
                     "therapist": _l("リハビリ職"), "other": _l("その他")}
