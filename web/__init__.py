"""Server-rendered pages (templates/). Reads are rendered here through the same
authorisation (renkei.authz) and audit path as the API; writes go from the page to
the JSON API with the session cookie and a CSRF header."""
import logging
from datetime import date
from functools import wraps

from flask import (Blueprint, g, make_response, redirect, render_template, request, session,
                   url_for)
from flask_babel import Babel, format_date, gettext as _
from flask_login import current_user, login_user, logout_user

import api
from renkei import audit, auth, db
from renkei.crypto import DecryptionError
from renkei.problems import Problem
from web.forms import (ADL_LEVEL_LABELS, ADL_LEVELS, LAYOUT, PROFESSION_LABELS, ROLE_LABELS,
                       SECTION_TITLES, flatten)

log = logging.getLogger("renkei.web")
bp = Blueprint("web", __name__)
babel = Babel()
LANGUAGES = ("ja", "en")
ERAS = [(date(2019, 5, 1), "令和"), (date(1989, 1, 8), "平成"), (date(1926, 12, 25), "昭和"),
        (date(1912, 7, 30), "大正"), (date(1868, 1, 25), "明治")]


def select_locale():
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
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", ""))
    return dt.replace(tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")


def age(value) -> int | None:
    if not value:
        return None
    d, today = date.fromisoformat(str(value)[:10]), date.today()
    return today.year - d.year - ((today.month, today.day) < (d.month, d.day))


def init_app(app):
    from renkei.settings import ROOT
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(ROOT / "translations"))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "ja")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Tokyo")
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.filters.update(wareki=wareki, age=age, jst=jst)
    app.jinja_env.globals.update(SECTION_TITLES=SECTION_TITLES, LAYOUT=LAYOUT, ADL_LEVELS=ADL_LEVELS,
                                 ADL_LEVEL_LABELS=ADL_LEVEL_LABELS, flatten=flatten,
                                 ROLE_LABELS=ROLE_LABELS, PROFESSION_LABELS=PROFESSION_LABELS,
                                 idle_seconds=app.config["RENKEI"].session_idle_seconds)


def page(rule, action=None, methods=("GET",), who="user"):
    """A page: signed-in users only (else to the sign-in page); one audit entry per
    request through api.finish, like an API call. who: "user", "admin", "audit"."""
    def decorate(view):
        @wraps(view)
        def handle(**kwargs):
            if not current_user.is_authenticated:
                return redirect(url_for("web.login", next=request.full_path))
            g.audit_fields = {"patient_id": kwargs.get("patient_id"), "section": kwargs.get("section")}
            user = current_user._get_current_object()
            try:
                if who == "admin" and not user.is_admin:
                    raise Problem(403, _("管理者のみが利用できます。"))
                if who == "audit" and not (user.is_admin or user.is_auditor):
                    raise Problem(403, _("管理者・監査担当者のみが利用できます。"))
                resp = make_response(view(**kwargs))
            except Problem as p:
                resp = make_response(render_template("error.html", status=p.status, problem=p), p.status)
            except DecryptionError:
                log.error("decryption failed on a page (request %s)", audit.request_id())
                resp = make_response(render_template("error.html", status=500, problem=None), 500)
            return api.finish(resp, action, user, view.__name__)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=list(methods))
        return view
    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        g.audit_fields = {"detail": "login=" + request.form.get("login", "")[:60] + ";web"}
        try:
            user = auth.authenticate(request.form.get("login", ""), request.form.get("password", ""),
                                     request.form.get("otp") or None)
        except Problem as p:
            db.session.commit()  # keep the failure count
            error = p
            resp = make_response(render_template("login.html", error=error,
                                                 otp_required=p.extra.get("otp_required")), p.status)
            return api.finish(resp, "auth.login", None, "login")
        session.clear()
        session.permanent = True
        login_user(user)
        g.login_candidate = user
        target = request.args.get("next") or ""
        if not target.startswith("/") or target.startswith("//"):
            target = url_for("web.patients")
        return api.finish(redirect(target), "auth.login", user, "login")
    return render_template("login.html", error=error, otp_required=False)


@bp.post("/logout")
def logout():
    user = current_user._get_current_object() if current_user.is_authenticated else None
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    if user is not None:
        from realtime import disconnect_user
        user = db.session.merge(user)
        user.session_generation += 1  # a copied cookie dies with the session
        g.setdefault("after_commit", []).append(lambda uid=user.id: disconnect_user(uid))
        return api.finish(redirect(url_for("web.login")), "auth.logout", user, "logout")
    return redirect(url_for("web.login"))


from web import pages  # noqa: E402,F401  (registers the page routes)

