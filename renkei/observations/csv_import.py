"""A device's CSV (docs/API.md, "Importing a device's CSV"): read, checked row by row
(one refused row refuses all), duplicates of stored readings skipped."""

import csv
import io
import json
import unicodedata
from contextlib import nullcontext
from datetime import datetime, timedelta

from flask_babel import force_locale
from flask_babel import gettext as _

from models import Observation, Patient, User, utcnow
from renkei.common import crypto, db, vault, work
from renkei.common.problems import invalid
from renkei.common.timefmt import JAPAN
from renkei.observations.alerts import one_recorder_at_a_time
from renkei.observations.charts import LATEST_RANGE, opened
from renkei.observations.kinds import KINDS
from renkei.observations.numbers import Refused, clean_reading
from renkei.observations.readings import record
from renkei.patients import authz
from renkei.patients.authz import patient_access

# --- importing a device's CSV -------------------------------------------------------------

CSV_COLUMNS = ("measured_at", "kind", "value", "unit", "note")
CSV_MAX_ROWS = 5000


def _kind_names() -> dict[str, str]:
    """A kind by its key (body_temperature), its Japanese name (体温) whatever the page's
    language, or its name in the page's language."""
    names = {key: key for key in KINDS}
    for lang in ("ja", None):
        with force_locale(lang) if lang else nullcontext():
            names |= {unicodedata.normalize("NFKC", str(k.label)): k.key for k in KINDS.values()}
    return names


_CSV_TIMES = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")  # 2026/11/30 8:05, as devices write it


def _csv_time(text: str) -> str | None:
    """ISO 8601 or 2026/11/30 8:05; Japan time without an offset. None if it is neither:
    clean_reading then refuses it, naming measured_at."""
    text = unicodedata.normalize("NFKC", text).strip().replace("/", "-")
    at = None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        for form in _CSV_TIMES:
            try:
                at = datetime.strptime(text, form)
                break
            except ValueError:
                continue
    if at is None:
        return text or None
    if at.tzinfo is None:
        at = at.replace(tzinfo=JAPAN)
    return at.isoformat()


def read_csv(text: str) -> list[dict]:
    """Rows of a CSV in the documented format (docs/API.md, "Observations": importing),
    each {"line", "item"} or {"line", "errors"}; the header row names the columns."""
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as err:  # a field over the csv module's limit, a NUL, an unclosed quote at the end
        raise invalid({"csv": [_("CSVとして読めません（%(why)s）。", why=str(err))]})
    head = [unicodedata.normalize("NFKC", c).strip().lower() for c in rows[0]] if rows else []
    if head[:3] != list(CSV_COLUMNS[:3]):
        raise invalid({"csv": [_("1行目は見出し（measured_at,kind,value,unit,note）にしてください。")]})
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    if len(body) > CSV_MAX_ROWS:
        raise invalid({"csv": [_("一度に取り込めるのは%(n)s行までです。", n=CSV_MAX_ROWS)]})
    out, names = [], _kind_names()
    for line, cells in body:
        row = dict(zip(head, (c.strip() for c in cells)))
        kind = names.get(unicodedata.normalize("NFKC", row.get("kind", "")).strip())
        at = _csv_time(row.get("measured_at", ""))
        if kind is None or at is None:  # a row without a time is not "now": it would never be a duplicate
            out.append(
                {
                    "line": line,
                    "errors": {
                        **({"kind": [_("この種類はありません。")]} if kind is None else {}),
                        **({"measured_at": [_("測定日時を入力してください。")]} if at is None else {}),
                    },
                }
            )
            continue
        item = {"kind": kind, "measured_at": at}
        value = row.get("value", "")
        if KINDS[kind].components:
            parts = value.replace("／", "/").split("/")
            item["components"] = dict(zip(KINDS[kind].components, parts)) if len(parts) == 2 else {}
        else:
            item["value"] = value
        unit = row.get("unit", "")
        if unit and unit != KINDS[kind].shown_unit:
            item["unit"] = unit
        if row.get("note"):
            item["note"] = row["note"]
        out.append({"line": line, "item": item})
    return out


def import_csv(actor: User, patient_id: str, text: str, save: bool) -> dict:
    """Preview (save=False: nothing is written) or save a CSV of readings. A reading the
    patient already has — same kind, time and value — or that the file repeats is a
    duplicate and skipped; any refused row refuses the save (fix the file and try
    again). Imported readings are marked with any threshold they were beyond but alert
    nobody."""
    access = patient_access(actor, patient_id, authz.OBSERVE)
    if save:  # two people importing one file at once: the second sees the first's readings
        one_recorder_at_a_time(access.patient)
    now, rows = utcnow(), read_csv(text)
    for row in rows:
        if "item" in row:
            try:
                row["reading"] = clean_reading(row.pop("item"), now)
            except Refused as r:
                row["errors"] = r.args[0]
    good = [r for r in rows if "reading" in r]
    seen = _existing(access.patient, {r["reading"]["measured_at"] for r in good})
    for row in good:
        fingerprint = _fingerprint(row["reading"])
        row["duplicate"] = fingerprint in seen
        seen.add(fingerprint)
    refused = [r for r in rows if "errors" in r]
    fresh = [r["reading"] for r in good if not r["duplicate"]]
    saved = []
    if save:
        if refused:
            raise invalid(
                {"csv": {str(r["line"]): r["errors"] for r in refused}}, "Some rows are refused; nothing was saved."
            )
        if fresh:
            saved = record(actor, patient_id, [_as_item(r) for r in fresh], many=True, source="import")
    work.describe(detail=f"import={'saved' if save else 'preview'};rows={len(rows)};new={len(fresh)}")
    return {
        "rows": [
            {
                "line": r["line"],
                "errors": r.get("errors"),
                "duplicate": r.get("duplicate", False),
                **(
                    {
                        "kind": r["reading"]["kind"],
                        "measured_at": r["reading"]["measured_at"],
                        **{k: r["reading"][k] for k in ("value", "components", "note") if k in r["reading"]},
                    }
                    if "reading" in r
                    else {}
                ),
            }
            for r in rows
        ],
        "new": len(fresh),
        "duplicates": sum(1 for r in good if r["duplicate"]),
        "refused": len(refused),
        "saved": [o["id"] for o in saved],
    }


def _as_item(reading: dict) -> dict:
    return {
        **{k: v for k, v in reading.items() if k != "measured_at"},
        "measured_at": reading["measured_at"].isoformat(),
    }


def _fingerprint(reading: dict) -> tuple:
    value = reading.get("value", reading.get("components"))
    return reading["kind"], reading["measured_at"].replace(microsecond=0), json.dumps(value, sort_keys=True)


def _existing(patient: Patient, times: set) -> set:
    """The fingerprints of the patient's stored readings at these times (誤入力 left out)."""
    if not times:
        return set()
    open_json, found = crypto.opener(vault.patient_key(patient)), set()
    stamps = sorted(times)
    rows = db.session.execute(
        LATEST_RANGE.where(
            Observation.patient_id == patient.id,
            Observation.error_at.is_(None),
            Observation.measured_at >= stamps[0].replace(microsecond=0),
            Observation.measured_at < stamps[-1] + timedelta(seconds=1),
        )
    ).all()
    for row in rows:
        found.add(_fingerprint({"kind": row.kind, "measured_at": row.measured_at, **opened(row, open_json)}))
    return found
