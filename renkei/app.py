"""The app factory: the one core module that wires the doors (api/, web/, realtime/)
to the core (docs/ARCHITECTURE.md, "Layers")."""

import os
import threading

from flask import Flask, render_template, request, send_from_directory
from sqlalchemy import literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import api
import realtime
import web
from renkei import cli, demo
from renkei.access_log import entries, sealer
from renkei.access_log.keyring import AuditKeys
from renkei.common import db, problems, work
from renkei.common.crypto import Keyring
from renkei.common.frames import SpoolingRequest
from renkei.outreach import deliveries, events, tell
from renkei.patients import escalation
from renkei.people.auth import csrf, idle_check, login_manager
from renkei.settings import ROOT, Settings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # same-origin: Flask-WTF checks that a cookie-session POST over HTTPS comes from this
    # site by its Referer; no other site ever learns a URL (they hold patient ids).
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}
HSTS = "max-age=31536000; includeSubDomains"  # only on responses served over HTTPS


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(
        "renkei",
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.update(
        RENKEI=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.embedded,
        PERMANENT_SESSION_LIFETIME=settings.session_idle_seconds,
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_AS_ASCII=False,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRFToken", "X-CSRF-Token"],
    )
    app.json.ensure_ascii = False
    app.request_class = SpoolingRequest  # uploaded files are sealed as they arrive (renkei/common/frames.py)

    app.extensions["renkei.keyring"] = Keyring(settings.master_key, settings.previous_master_keys)
    # Only on the embedded default may the demo's people go without a second factor, so a
    # newcomer tries Renkei in one step; loaded into any other database they get no pass.
    app.extensions["renkei.second_factor_exempt"] = demo.DEMO_LOGINS if settings.embedded else frozenset()
    app.extensions["renkei.audit_keys"] = AuditKeys(settings.audit_keys, settings.audit_origin)
    # What every commit does besides the request's own writes, in this order: what was told
    # becomes deliveries, events take their recipients' seqs (rows every write of a team
    # shares: locked as late as possible), and the access-log entries go in last
    # (renkei/common/work.py, docs/ARCHITECTURE.md "One unit of work").
    work.install(app, tell.QueueDeliveries(), events.StoreEvents(), entries.WriteEntries())
    app.extensions["renkei.engine"] = engine = db.make_engine(
        settings.database_url,
        settings.db_pool_size,
        settings.db_pool_timeout,
        settings.db_lock_timeout_ms,
        settings.db_idle_transaction_timeout_ms,
    )
    db.bind(engine)

    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    csrf.init_app(app)
    csrf.exempt(api.bp)  # the API checks CSRF itself, only for cookie-authenticated calls
    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)
    web.init_app(app)
    realtime.init_app(app, settings)
    if settings.trusted_proxies:  # outermost: Socket.IO's handshakes, audited too, come through the proxy
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1)
    cli.init_app(app)

    @app.before_request
    def _begin():
        start_background(app)  # at once where the server started them already
        work.begin()
        idle_check()

    @app.after_request
    def _headers(resp):
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        if request.is_secure:
            resp.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.path.startswith("/api/") or resp.mimetype == "text/html":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.teardown_appcontext
    def _cleanup(_exc):
        db.session.remove()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return problems.response(exc.code or 500, exc.description or "")
        if exc.code in (404, 405):  # an unknown address gets the app's own page, in the user's language
            return render_template("error.html", status=exc.code, problem=None), exc.code
        return exc

    # The installable app (docs/ARCHITECTURE.md, "Push and e-mail"): the service worker
    # is served from the root so that its scope is the whole site.
    @app.get("/sw.js")
    def service_worker():
        resp = send_from_directory(app.static_folder, "sw.js", mimetype="text/javascript", max_age=0)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/manifest.webmanifest")
    def manifest():
        return send_from_directory(
            app.static_folder, "manifest.webmanifest", mimetype="application/manifest+json", max_age=3600
        )

    @app.get("/favicon.ico")
    def favicon():  # asked for by browsers and tools that do not read the page's <link rel=icon>
        return send_from_directory(app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    def _database_error(exc):
        # Raised outside a door's pipeline (e.g. loading the signed-in user for a page):
        # never fall back to anonymous, never show stale data.
        db.session.remove()
        problem = work.current().database_problem(exc, request.endpoint or "?")
        if request.path.startswith("/api/"):
            return problems.from_problem(problem)
        return (
            "The database is not reachable. / データベースに接続できません。",
            problem.status,
            {"Retry-After": work.RETRY_AFTER, "Content-Type": "text/plain; charset=utf-8"},
        )

    if os.environ.get("RENKEI_BENCH_ROUTES") == "1":

        @app.get("/_bench/bare")
        def bench_bare():
            """Benchmark baseline: a bare Flask route, one query, same server and database."""
            return {"one": db.session.execute(select(literal(1))).scalar()}

        @app.get("/_bench/fanout")
        def bench_fanout():
            """This process's realtime trace since the last call (realtime.TRACE)."""
            items = list(realtime.TRACE)
            realtime.TRACE.clear()
            return {"pid": os.getpid(), "items": items}

    @app.get("/healthz")
    def healthz():
        try:
            db.session.execute(select(literal(1)))
        except Exception:
            db.session.rollback()
            return problems.response(503, "The database does not answer.")
        return {"status": "ok"}

    return app


_background = {"lock": threading.Lock(), "apps": set()}


def start_background(app: Flask):
    """The threads of a server process (settings say which): the access log's sealer
    (renkei/access_log/sealer.py) and the sender of pushes and mails (renkei/outreach/deliveries.py).
    Started with the server, so deliveries left before a restart go out at once; once per
    process (also called on every request: the common case returns without the lock)."""
    if id(app) in _background["apps"]:
        return
    with _background["lock"]:
        if id(app) in _background["apps"]:
            return
        _background["apps"].add(id(app))
    settings = app.config["RENKEI"]
    for wanted, run, args, name in (
        (settings.audit_sealer, sealer.run, (app,), "audit-sealer"),
        (settings.sender, deliveries.run, (app, [escalation.run_due]), "deliveries"),
    ):
        if wanted:
            threading.Thread(target=run, args=args, name=name, daemon=True).start()
