"""The pages' request pipeline: `page` signs people in (else to the sign-in page),
checks their standing (renkei.patients.authz), renders, and ends the request through the unit
of work (renkei/common/work.py) with one access-log entry, exactly as an API call does. Also the
Jinja filters (和暦, Japan time) and Flask-Babel's locale choice (Japanese by default)."""

import logging
import os
from datetime import date, datetime, timezone
from functools import wraps
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import (
    Blueprint,
    Response,
    has_request_context,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import Babel, format_date
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from renkei.common import db, problems, timefmt, work
from renkei.common.crypto import DecryptionError
from renkei.common.problems import Problem
from renkei.common.timefmt import JAPAN
from renkei.observations.kinds import KINDS
from renkei.people import auth, outboxes, passkeys, staff
from renkei.sections.catalogue import ADL_LEVEL_LABELS, ADL_LEVELS, CHOICES, SECTIONS
from renkei.settings import ROOT
from web.charts import sheet, trend_chart
from web.forms import (
    ACTION_LABELS,
    COMPONENT_LABELS,
    ESCALATION_TARGETS,
    KIND_LABELS,
    NOTE_CATEGORY_LABELS,
    ORGANIZATION_LABELS,
    OUTCOME_LABELS,
    PROFESSION_LABELS,
    ROLE_LABELS,
    SEX_LABELS,
    VERIFY_PROBLEMS,
    flatten,
    vital_fields,
)

log = logging.getLogger("renkei.web")
bp = Blueprint("web", __name__)
babel = Babel()
LANGUAGES = ("ja", "en")
STAFF_ONLY = {
    "admin": _l("管理者のみが利用できます。"),
    "audit": _l("管理者・監査担当者のみが利用できます。"),
    "auditor": _l("監査担当者のみが利用できます。"),
}
ERAS = [
    (date(2019, 5, 1), "令和"),
    (date(1989, 1, 8), "平成"),
    (date(1926, 12, 25), "昭和"),
    (date(1912, 7, 30), "大正"),
    (date(1868, 1, 25), "明治"),
]


def select_locale():
    if not has_request_context():  # a command (demo data, imports): the service's own language
        return "ja"
    lang = request.args.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    return session.get("lang", "ja")


def wareki(value) -> str:
    """1938-04-12 → 1938年4月12日（昭和13年）: birth dates as Japanese staff expect."""
    if not value:
        return ""
    d = date.fromisoformat(str(value)[:10])
    for start, era in ERAS:
        if d >= start:
            year = d.year - start.year + 1
            label = f"{era}{'元' if year == 1 else year}年"
            if session.get("lang") == "en":
                return f"{format_date(d, 'medium')} ({label})"
            return f"{d.year}年{d.month}月{d.day}日（{label}）"
    return d.isoformat()


def jst(value) -> str:
    """UTC timestamps (datetime or ISO string) shown in Japan time."""
    if not value:
        return ""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", ""))
    return dt.replace(tzinfo=timezone.utc).astimezone(JAPAN).strftime("%Y-%m-%d %H:%M")


def age(value) -> int | None:
    if not value:
        return None
    d, today = date.fromisoformat(str(value)[:10]), date.today()
    return today.year - d.year - ((today.month, today.day) < (d.month, d.day))


def compile_catalogues(folder: Path):
    """`pybabel compile`, at start: each language's messages.po (the committed source,
    kept with `pybabel extract` and `pybabel update`: docs/ARCHITECTURE.md, "Text and
    languages") becomes the messages.mo Flask-Babel reads, when missing or older."""
    for po in folder.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f)
        partial = mo.with_name(f".messages.{os.getpid()}.mo")  # another process may compile at once
        with partial.open("wb") as f:
            write_mo(f, catalog)
        os.replace(partial, mo)


def init_app(app):
    compile_catalogues(ROOT / "translations")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(ROOT / "translations"))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "ja")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Tokyo")
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.filters.update(wareki=wareki, age=age, jst=jst)
    app.jinja_env.globals.update(
        SECTIONS=SECTIONS,
        ADL_LEVELS=ADL_LEVELS,
        ADL_LEVEL_LABELS=ADL_LEVEL_LABELS,
        flatten=flatten,
        ROLE_LABELS=ROLE_LABELS,
        PROFESSION_LABELS=PROFESSION_LABELS,
        SEX_LABELS=SEX_LABELS,
        ORGANIZATION_LABELS=ORGANIZATION_LABELS,
        NOTE_CATEGORY_LABELS=NOTE_CATEGORY_LABELS,
        ACTION_LABELS=ACTION_LABELS,
        OUTCOME_LABELS=OUTCOME_LABELS,
        CHOICE_LABELS=CHOICES,
        VERIFY_PROBLEMS=VERIFY_PROBLEMS,
        ESCALATION_TARGETS=ESCALATION_TARGETS,
        KINDS=KINDS,
        KIND_LABELS=KIND_LABELS,
        COMPONENT_LABELS=COMPONENT_LABELS,
        vital_fields=vital_fields,
        vital_sheet=sheet,
        trend_chart=trend_chart,
        idle_seconds=app.config["RENKEI"].session_idle_seconds,
        outbox_keys=lambda: outboxes.outbox_keys(current_user),
        passkeys_here=passkeys.available,
        enrolment_pending=lambda: auth.enrolment_only(current_user),
        passkeys_address=passkeys.where_available,
        latest_day=timefmt.latest_day,
        EARLIEST_DAY=timefmt.EARLIEST_DAY,
    )


def finish(resp: Response, action: str | None, user, where: str) -> Response:
    """End a page's request through the unit of work (renkei/common/work.py): its answer,
    or the problem if committing failed."""
    failed = work.current().finish(resp.status_code, action, user, where)
    return problems.from_problem(failed) if failed else resp


def page(rule, action=None, methods=("GET",), who="user", name=None):
    """A page: signed-in users only (else to the sign-in page); one access-log entry per
    request, like an API call. who: "user", "admin", "audit" or "auditor" (renkei/people/staff.py require_staff)."""

    def decorate(view):
        @wraps(view)
        def handle(**kwargs):
            if not current_user.is_authenticated:
                return redirect(url_for("web.login", next=request.full_path))
            unit = work.current()
            unit.describe(patient_id=kwargs.get("patient_id"), section=kwargs.get("section"))
            user = current_user._get_current_object()
            try:
                if db.has_nul(*kwargs.values()):
                    raise problems.not_found()
                if view.__name__ not in ("account", "account_totp") and auth.enrolment_only(user):
                    return finish(redirect(url_for("web.account")), None, user, view.__name__)
                if who != "user":
                    try:
                        staff.require_staff(user, who)
                    except Problem as refused:
                        if refused.type.endswith("account-unconfirmed"):
                            raise
                        raise Problem(403, str(STAFF_ONLY[who]))
                resp = make_response(view(**kwargs))
            except Problem as p:
                resp = make_response(render_template("error.html", status=p.status, problem=p), p.status)
            except DecryptionError:
                log.error("decryption failed on a page (request %s)", unit.request_id)
                resp = make_response(render_template("error.html", status=500, problem=None), 500)
            return finish(resp, action, user, view.__name__)

        bp.add_url_rule(rule, endpoint=name or view.__name__, view_func=handle, methods=list(methods))
        return view

    return decorate
