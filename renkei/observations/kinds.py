"""What each kind of reading is (docs/API.md, "Observations"): its LOINC code and UCUM
unit, the values that are possible and those worth a second look, how many a request
may carry."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from flask_babel import lazy_gettext as _l

LATE = timedelta(hours=24)  # measured this long before it is recorded: marked, no alert
CLOCK_SKEW = timedelta(minutes=5)  # a tablet's clock a little ahead is not "the future"
EARLIEST = datetime(2000, 1, 1)
MAX_ITEMS = 50  # readings in one request
NOTE_MAX = 500


@dataclass(frozen=True)
class Measure:
    """One number: `low`..`high` is possible (outside is refused), `usual_low`..`usual_high`
    is ordinary (outside, the form asks to confirm); `places` decimals at most."""

    low: Decimal
    high: Decimal
    usual_low: Decimal
    usual_high: Decimal
    places: int = 0


def _m(low, high, usual_low, usual_high, places=0) -> Measure:
    return Measure(*(Decimal(str(v)) for v in (low, high, usual_low, usual_high)), places)


@dataclass(frozen=True)
class Kind:
    key: str
    loinc: str | None  # None: no LOINC code maps it one to one; a FHIR export codes it locally
    unit: str  # UCUM
    label: object  # Japanese source, translated by Flask-Babel
    shown_unit: str  # how people write the unit
    measure: Measure | None = None
    components: dict = field(default_factory=dict)  # name → (LOINC, Measure, label)


KINDS = {
    k.key: k
    for k in (
        Kind("body_temperature", "8310-5", "Cel", _l("体温"), "℃", _m(30, 45, 34, 41, 1)),
        Kind(
            "blood_pressure",
            "85354-9",
            "mm[Hg]",
            _l("血圧"),
            "mmHg",
            components={
                "systolic": ("8480-6", _m(50, 300, 70, 220), _l("収縮期血圧")),
                "diastolic": ("8462-4", _m(20, 200, 35, 130), _l("拡張期血圧")),
            },
        ),
        Kind("heart_rate", "8867-4", "/min", _l("脈拍"), "回/分", _m(20, 300, 40, 160)),
        Kind("spo2", "59408-5", "%", _l("SpO2"), "%", _m(50, 100, 85, 100)),
        Kind("respiratory_rate", "9279-1", "/min", _l("呼吸数"), "回/分", _m(2, 80, 8, 40)),
        Kind("body_weight", "29463-7", "kg", _l("体重"), "kg", _m(1, 300, 20, 150, 1)),
        Kind("blood_glucose", "2339-0", "mg/dL", _l("血糖"), "mg/dL", _m(10, 1000, 50, 400)),
        Kind("food_intake", None, "%", _l("食事摂取"), "%", _m(0, 100, 0, 100)),
        Kind("fluid_intake", "9000-1", "mL", _l("水分摂取"), "mL", _m(0, 10000, 0, 4000)),
        Kind("bowel_movement", None, "{count}", _l("排便"), "回", _m(0, 20, 0, 8)),
        Kind("urine_output", "9187-6", "mL", _l("排尿"), "mL", _m(0, 10000, 0, 4000)),
        Kind("pain_score", "72514-3", "{score}", _l("疼痛"), "", _m(0, 10, 0, 10)),
    )
}
BRISTOL = (1, 7)  # Bristol stool form scale, with a bowel movement
