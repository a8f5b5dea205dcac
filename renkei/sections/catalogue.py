"""The ten sections of the shared record (MHLW 表3), declared once: key, Japanese and
English title, the schema of what the section may hold, its edit-form layout and
which team roles may write it. Everything else (authorisation, the API's schemas
and OpenAPI description, the pages' forms) is derived from SECTIONS below.

Every content field is optional so a team can fill a section bit by bit; free text is
Japanese-friendly plain text. Layout labels are Japanese source strings translated by
Flask-Babel (translations/en/LC_MESSAGES/messages.po)."""

import re
import unicodedata
from dataclasses import dataclass

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, validate

from renkei.common import timefmt

PHYSICIANS = ("primary_physician", "backup_physician")
ADL_LEVELS = ("independent", "supervision", "partial_assist", "full_assist")
ADL_ITEMS = (
    "eating",
    "excretion",
    "mobility",
    "transfer",
    "bathing",
    "dressing",
    "grooming",
    "communication",
    "cognition",
)
ADL_LABELS = {
    "eating": _l("食事"),
    "excretion": _l("排泄"),
    "mobility": _l("移動"),
    "transfer": _l("移乗"),
    "bathing": _l("入浴"),
    "dressing": _l("更衣"),
    "grooming": _l("整容"),
    "communication": _l("コミュニケーション"),
    "cognition": _l("認知"),
}
ADL_LEVEL_LABELS = {
    "independent": _l("自立"),
    "supervision": _l("見守り"),
    "partial_assist": _l("一部介助"),
    "full_assist": _l("全介助"),
}
CHOICES = {
    "resuscitation": {"attempt": _l("希望する"), "do_not_attempt": _l("希望しない"), "undecided": _l("未定")},
    "medication_adherence": {
        "good": _l("良好"),
        "partial": _l("時々飲み忘れ"),
        "poor": _l("不良"),
        "unknown": _l("不明"),
    },
}


# --- content schemas -------------------------------------------------------------


class Content(Schema):
    """Section content is a plain dict: a missing key is missing, never a dict method
    of the same name (a field called `items` read dict.items — a 500)."""

    def get_attribute(self, obj, attr, default):
        return obj.get(attr, default) if isinstance(obj, dict) else super().get_attribute(obj, attr, default)


def short(**kw):
    return fields.String(validate=validate.Length(max=200), **kw)


def text(**kw):
    return fields.String(validate=validate.Length(max=4000), **kw)


def in_reach(day) -> None:
    """A date in a record: not before 1900, at most a year ahead (renkei/common/timefmt.py).
    The message names the range; the page shows it in the person's language."""
    if not timefmt.EARLIEST_DAY <= day <= timefmt.latest_day():
        raise ValidationError(f"Date out of range: from {timefmt.EARLIEST_DAY} to {timefmt.latest_day()}.")


def rows(schema, max_rows=100):
    return fields.List(fields.Nested(schema), validate=validate.Length(max=max_rows))


class Row(Content):
    """A row of a list: its stable id (renkei/sections/rows.py) beside its fields."""

    id = fields.String(validate=validate.Length(min=1, max=64))


class WishesContent(Content):
    patient_wishes = text(metadata={"description": "本人の希望"})
    family_wishes = text(metadata={"description": "家族の希望"})
    preferred_place_of_care = short(metadata={"description": "療養したい場所"})
    preferred_place_of_death = short(metadata={"description": "最期を迎えたい場所"})
    resuscitation = fields.String(
        validate=validate.OneOf(tuple(CHOICES["resuscitation"])), metadata={"description": "心肺蘇生の希望"}
    )
    acp_notes = text(metadata={"description": "人生会議(ACP)の記録"})
    discussed_on = fields.Date(validate=in_reach, metadata={"description": "話し合った日"})


class ConditionContent(Content):
    summary = text(metadata={"description": "現在の状態"})
    recent_changes = text(metadata={"description": "最近の変化"})
    medication_adherence = fields.String(
        validate=validate.OneOf(tuple(CHOICES["medication_adherence"])), metadata={"description": "服薬状況"}
    )
    medication_note = text()


class AdlItem(Content):
    level = fields.String(required=True, validate=validate.OneOf(ADL_LEVELS))
    note = text()


AdlContent = Content.from_dict(
    {item: fields.Nested(AdlItem) for item in ADL_ITEMS} | {"note": text()}, name="AdlContent"
)


class HomeContent(Content):
    housing = text(metadata={"description": "住まい"})
    steps_stairs = text(metadata={"description": "段差・階段"})
    bed = text(metadata={"description": "ベッド"})
    bathroom = text(metadata={"description": "浴室・トイレ"})
    adaptations = text(metadata={"description": "住宅改修・福祉用具"})
    access_notes = text(metadata={"description": "訪問時の出入り"})


_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−ーｰ"})  # what people type for a hyphen
_PHONE = re.compile(r"^\+?[0-9][0-9\-() ]{0,19}(?: ?\(内線 ?[0-9]{1,6}\))?$")


class Phone(fields.String):
    """A phone number as people type it in Japan: full-width digits, brackets and dashes
    (０９０－１２３４－５６７８) are normalised (NFKC), and an extension may follow:
    03-1234-5678（内線12）."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = unicodedata.normalize("NFKC", super()._deserialize(value, attr, data, **kwargs)).translate(_DASHES)
        text = " ".join(text.split())
        if text and not _PHONE.match(text):
            raise ValidationError("Not a phone number: digits and hyphens, optionally followed by (内線123).")
        return text


class Availability(Content):
    morning = short()
    daytime = short()
    evening = short()
    night = short()


class KeyContact(Row):
    name = short(required=True)
    relationship = short()
    phone = Phone()
    note = short()


class FamilyCareContent(Content):
    main_carer = short(metadata={"description": "主介護者"})
    availability = fields.Nested(Availability, metadata={"description": "時間帯別の対応可否"})
    limits = text(metadata={"description": "介護の限界・負担"})
    key_contacts = rows(KeyContact, 20)


class Condition(Row):
    name = short(required=True)
    since = short()
    note = text()


class Medication(Row):
    name = short(required=True)
    dose = short()
    route = short()
    frequency = short()
    prescriber = short()
    note = text()


class Allergy(Row):
    substance = short(required=True)
    reaction = short()


class DiseasesMedicationsContent(Content):
    conditions = rows(Condition)
    medications = rows(Medication)
    allergies = rows(Allergy)


class Explanation(Row):
    explained_on = fields.Date(validate=in_reach)
    explained_by = short()
    explained_to = short()
    content = text(required=True)
    reception = text(metadata={"description": "受け止め方"})


class IllnessExplanationContent(Content):
    entries = rows(Explanation)


class ExpectedChange(Row):
    change = text(required=True)
    warning_signs = text()
    response = text()
    whom_to_call = short()


class ExpectedChangesContent(Content):
    items = rows(ExpectedChange)


class HomeCareCautionsContent(Content):
    cautions = text()


class CareNotesContent(Content):
    notes = text()


# --- form layout: one entry per schema field, in display order ---------------------


def line(name, label):
    return {"name": name, "label": label, "type": "text"}


def area(name, label):
    return {"name": name, "label": label, "type": "textarea"}


def day(name, label):
    return {"name": name, "label": label, "type": "date"}


def choice(name, label):
    return {"name": name, "label": label, "type": "choice", "options": CHOICES[name]}


def table(name, label, *columns):
    return {"name": name, "label": label, "type": "rows", "fields": list(columns)}


def group(name, label, *members):
    return {"name": name, "label": label, "type": "group", "fields": list(members)}


# --- the ten sections --------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    key: str
    title_ja: str
    title_en: str
    schema: type[Schema]
    layout: list
    writers: frozenset  # team roles that may write it (renkei/patients/authz.py asks here)

    @property
    def title(self) -> str:
        language = get_locale()
        return self.title_en if language is not None and language.language == "en" else self.title_ja


def section(key, title_ja, title_en, schema, layout, writers) -> Section:
    """`writers`: the team roles besides the physicians and the nurse, who write every section."""
    return Section(key, title_ja, title_en, schema, layout, frozenset((*PHYSICIANS, "nurse", *writers)))


SECTIONS: dict[str, Section] = {
    s.key: s
    for s in (
        section(
            "wishes",
            "本人・家族の療養の希望",
            "Wishes of patient and family",
            WishesContent,
            [
                area("patient_wishes", _l("本人の希望")),
                area("family_wishes", _l("家族の希望")),
                line("preferred_place_of_care", _l("療養したい場所")),
                line("preferred_place_of_death", _l("最期を迎えたい場所")),
                choice("resuscitation", _l("心肺蘇生")),
                area("acp_notes", _l("人生会議（ACP）の記録")),
                day("discussed_on", _l("話し合った日")),
            ],
            writers=("care_manager", "disability_support_worker"),
        ),
        section(
            "condition",
            "状況・体調の変化、服薬状況",
            "Condition, changes and medication adherence",
            ConditionContent,
            [
                area("summary", _l("現在の状態")),
                area("recent_changes", _l("最近の変化")),
                choice("medication_adherence", _l("服薬状況")),
                area("medication_note", _l("服薬の補足")),
            ],
            writers=("care_manager", "disability_support_worker", "pharmacist", "therapist"),
        ),
        section(
            "adl",
            "ADL（食事・排泄など）",
            "ADL (eating, excretion, …)",
            AdlContent,
            [{"name": item, "label": ADL_LABELS[item], "type": "adl"} for item in ADL_ITEMS]
            + [area("note", _l("補足"))],
            writers=("care_manager", "disability_support_worker", "therapist"),
        ),
        section(
            "home",
            "家屋の状況",
            "Home",
            HomeContent,
            [
                area("housing", _l("住まい")),
                area("steps_stairs", _l("段差・階段")),
                area("bed", _l("ベッド")),
                area("bathroom", _l("浴室・トイレ")),
                area("adaptations", _l("住宅改修・福祉用具")),
                area("access_notes", _l("訪問時の出入り")),
            ],
            writers=("care_manager", "disability_support_worker", "therapist"),
        ),
        section(
            "family_care",
            "家族による介護",
            "Family care",
            FamilyCareContent,
            [
                line("main_carer", _l("主介護者")),
                group(
                    "availability",
                    _l("時間帯別の対応"),
                    line("morning", _l("朝")),
                    line("daytime", _l("日中")),
                    line("evening", _l("夕方")),
                    line("night", _l("夜間")),
                ),
                area("limits", _l("介護の限界・負担")),
                table(
                    "key_contacts",
                    _l("キーパーソン・連絡先"),
                    line("name", _l("氏名")),
                    line("relationship", _l("続柄")),
                    line("phone", _l("電話")),
                    line("note", _l("備考")),
                ),
            ],
            writers=("care_manager", "disability_support_worker"),
        ),
        section(
            "diseases_medications",
            "疾病・使用薬剤",
            "Diseases and medications",
            DiseasesMedicationsContent,
            [
                table(
                    "conditions",
                    _l("疾病"),
                    line("name", _l("病名")),
                    line("since", _l("発症・診断")),
                    line("note", _l("備考")),
                ),
                table(
                    "medications",
                    _l("使用薬剤"),
                    line("name", _l("薬剤名")),
                    line("dose", _l("用量")),
                    line("route", _l("経路")),
                    line("frequency", _l("用法")),
                    line("prescriber", _l("処方医")),
                    line("note", _l("備考")),
                ),
                table("allergies", _l("アレルギー"), line("substance", _l("原因")), line("reaction", _l("症状"))),
            ],
            writers=("pharmacist",),
        ),
        section(
            "illness_explanation",
            "病状説明と受け止め",
            "Explanation of the illness and how it was received",
            IllnessExplanationContent,
            [
                table(
                    "entries",
                    _l("説明の記録"),
                    day("explained_on", _l("日付")),
                    line("explained_by", _l("説明者")),
                    line("explained_to", _l("説明を受けた人")),
                    area("content", _l("説明内容")),
                    area("reception", _l("受け止め方")),
                )
            ],
            writers=(),
        ),
        section(
            "expected_changes",
            "予測される変化と対応",
            "Expected changes and agreed response",
            ExpectedChangesContent,
            [
                table(
                    "items",
                    _l("予測される変化"),
                    area("change", _l("変化")),
                    area("warning_signs", _l("兆候")),
                    area("response", _l("対応方法")),
                    line("whom_to_call", _l("連絡先")),
                )
            ],
            writers=(),
        ),
        section(
            "home_care_cautions",
            "在宅療養の注意点",
            "Cautions for home care",
            HomeCareCautionsContent,
            [area("cautions", _l("注意点"))],
            writers=("care_manager",),
        ),
        section(
            "care_notes",
            "生活支援・介護の留意点",
            "Points for daily-life support and care",
            CareNotesContent,
            [area("notes", _l("留意点"))],
            writers=("care_manager", "disability_support_worker", "therapist"),
        ),
    )
}
SECTION_KEYS = tuple(SECTIONS)


def clean_content(key: str, content: dict) -> dict:
    """Validate and normalise (dates back to ISO strings) a section's content.
    Raises marshmallow.ValidationError."""
    schema = SECTIONS[key].schema()
    return schema.dump(schema.load(content))
