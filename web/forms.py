"""How section content reads on screen: labelled lines for display and the diff
between two revisions, from each section's layout (renkei/sections.py). And the
labels of team roles and professions. Labels are Japanese source strings translated
by Flask-Babel (translations/)."""
from flask_babel import lazy_gettext as _l

from renkei.sections import ADL_LEVEL_LABELS


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


ROLE_LABELS = {"primary_physician": _l("主治医"), "backup_physician": _l("副主治医"),
               "nurse": _l("訪問看護師"), "care_manager": _l("介護支援専門員"),
               "disability_support_worker": _l("相談支援専門員"), "pharmacist": _l("薬剤師"),
               "therapist": _l("リハビリ職")}
PROFESSION_LABELS = {"physician": _l("医師"), "nurse": _l("看護師"), "care_manager": _l("介護支援専門員"),
                     "disability_support_worker": _l("相談支援専門員"), "pharmacist": _l("薬剤師"),
                     "therapist": _l("リハビリ職"), "other": _l("その他")}
SEX_LABELS = {"male": _l("男性"), "female": _l("女性"), "other": _l("その他"), "unknown": _l("不明")}
