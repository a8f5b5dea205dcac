"""Readings as people type them: full-width digits, commas, units and times in Japan
time, checked against what is possible for the kind (422 naming the field)."""

import unicodedata
from datetime import datetime
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _

from renkei.common.timefmt import parse_iso
from renkei.observations.kinds import BRISTOL, CLOCK_SKEW, EARLIEST, KINDS, NOTE_MAX, Measure

# --- reading numbers as people type them ---------------------------------------------


class Refused(Exception):
    """A value that cannot be recorded; the message says why, on the field."""


def number(raw, measure: Measure, label) -> Decimal:
    """A number as sent or typed: JSON numbers, full-width digits, 「36,8」 for 36.8."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    text = unicodedata.normalize("NFKC", str(raw)).strip().replace("−", "-").replace("ー", "-")
    if measure.places == 0 and text.count(",") and all(len(p) == 3 for p in text.split(",")[1:]):
        text = text.replace(",", "")  # 1,200 mL
    elif text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # 36,8 ℃
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    if not value.is_finite():
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    if not measure.low <= value <= measure.high:
        raise Refused(
            _("%(label)sは%(low)s〜%(high)sの範囲で入力してください。", label=label, low=measure.low, high=measure.high)
        )
    if value != value.quantize(Decimal(1).scaleb(-measure.places)):
        raise Refused(
            _("%(label)sは整数で入力してください。", label=label)
            if measure.places == 0
            else _("%(label)sは小数第%(places)s位までで入力してください。", label=label, places=measure.places)
        )
    return value


def plain(value: Decimal, measure: Measure):
    return int(value) if measure.places == 0 else float(value)


def _when(raw, now: datetime) -> datetime:
    if raw in (None, ""):
        return now
    if not isinstance(raw, str):
        raise Refused(_("測定日時はISO 8601の日時で入力してください。"))
    try:
        at = parse_iso(raw)
    except ValueError:
        raise Refused(_("測定日時はISO 8601の日時で入力してください。"))
    if at > now + CLOCK_SKEW:
        raise Refused(_("未来の日時は入力できません。"))
    if at < EARLIEST:
        raise Refused(_("測定日時が古すぎます。"))
    return at


def clean_reading(item: dict, now: datetime) -> dict:
    """One reading as the core keeps it, or Problem 422 naming each refused field:
    {"kind", "value" | "components", "measured_at", "note", "bristol"}."""
    kind, errors, out = KINDS[item["kind"]], {}, {"kind": item["kind"]}
    unit = item.get("unit")
    if unit is not None and unit != kind.unit:
        errors["unit"] = [_("%(label)sの単位は %(unit)s です。", label=kind.label, unit=kind.unit)]
    if kind.measure:
        if "components" in item:
            errors["components"] = [_("%(label)sは value で送ってください。", label=kind.label)]
        elif "value" not in item or item["value"] in (None, ""):
            errors["value"] = [_("%(label)sを入力してください。", label=kind.label)]
        else:
            try:
                out["value"] = plain(number(item["value"], kind.measure, kind.label), kind.measure)
            except Refused as r:
                errors["value"] = [str(r)]
    else:
        given = item.get("components")
        if "value" in item or not isinstance(given, dict):
            errors["components"] = [
                _(
                    "%(label)sは components に %(names)s を送ってください。",
                    label=kind.label,
                    names=", ".join(kind.components),
                )
            ]
        else:
            parts, part_errors = {}, {}
            for name in given.keys() - kind.components.keys():
                part_errors[name] = [_("この項目はありません。")]
            for name, (_loinc, measure, label) in kind.components.items():
                try:
                    if given.get(name) in (None, ""):
                        raise Refused(_("%(label)sを入力してください。", label=label))
                    parts[name] = plain(number(given[name], measure, label), measure)
                except Refused as r:
                    part_errors[name] = [str(r)]
            if not part_errors and parts.get("diastolic", 0) >= parts.get("systolic", 1):
                part_errors["diastolic"] = [_("拡張期血圧は収縮期血圧より低い値を入力してください。")]
            if part_errors:
                errors["components"] = part_errors
            out["components"] = parts
    try:
        out["measured_at"] = _when(item.get("measured_at"), now)
    except Refused as r:
        errors["measured_at"] = [str(r)]
    note = item.get("note")
    if isinstance(note, str) and note.strip():
        if len(note) > NOTE_MAX:
            errors["note"] = [_("メモは%(n)s文字以内で入力してください。", n=NOTE_MAX)]
        out["note"] = note.strip()
    if item.get("bristol") is not None:
        if item["kind"] != "bowel_movement":
            errors["bristol"] = [_("ブリストル便形状スケールは排便にだけ記録します。")]
        elif isinstance(item["bristol"], bool) or item["bristol"] not in range(BRISTOL[0], BRISTOL[1] + 1):
            errors["bristol"] = [_("ブリストル便形状スケールは1〜7で入力してください。")]
        else:
            out["bristol"] = int(item["bristol"])
    if errors:
        raise Refused(errors)
    return out
