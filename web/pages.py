"""The pages: sign-in, care list, patient record, timeline, summaries, sheets, team,
account, administration, access log. Each page calls the core's services (which do the
authorisation, renkei.patients.authz) and renders what they return; writes go from the page to
the JSON API with the session cookie and a CSRF header."""

from datetime import date, timedelta
from urllib.parse import urlsplit

import segno
from flask import (
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from marshmallow import ValidationError

from models import utcnow
from renkei.attachments import attachments
from renkei.common import csvfile, db, problems, vault, work
from renkei.common.problems import Problem
from renkei.common.timefmt import iso
from renkei.notes import notes
from renkei.observations import charts
from renkei.outreach import tell, webpush
from renkei.oversight import reading
from renkei.patients import authz, breakglass, consent, escalation, registry, teams
from renkei.patients.authz import PROFESSION_ROLES
from renkei.people import auth, directory, passkeys, resets
from renkei.record import revisions
from renkei.sections.catalogue import SECTIONS
from web.forms import BOM, PROFESSION_LABELS, USAGE_FIGURES, audit_sheet, diff
from web.pipeline import bp, finish, page

TIMELINE_ON_PAGE = 30
PATIENT_PAGE_DAYS = 7  # the charts on the patient page; the trend page offers 7, 30 and 90
TREND_DAYS = 30
SUMMARY_DAYS = 7  # the charts of each patient on the summary
SUMMARY_NOTES = 50  # notes since my last look shown per patient on the summary (and urgent ones on the sheet)


# --- signing in and out ---------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", error=None, otp_required=False)
    try:
        user = auth.authenticate(
            request.form.get("login", ""), request.form.get("password", ""), request.form.get("otp") or None
        )
    except Problem as p:
        resp = render_template("login.html", error=p, otp_required=p.extra.get("otp_required"))
        return finish(make_response(resp, p.status, p.headers), "auth.login", None, "login")  # Retry-After
    return finish(redirect(_open_session(user)), "auth.login", user, "login")


@bp.route("/login/passkey", methods=["POST"])
def login_passkey():
    """「パスキーでログイン」: the page sends the assertion (static/app.js); no login typed."""
    try:
        user = auth.authenticate_passkey((request.get_json(silent=True) or {}).get("passkey"))
    except Problem as p:
        return finish(problems.from_problem(p), "auth.login", None, "login")
    return finish(jsonify({"next": _open_session(user)}), "auth.login", user, "login")


def _open_session(user) -> str:
    """A fresh page session for `user`; where to go next. Someone who still has to enrol a
    second factor goes to the account page, and the session opens nothing else."""
    session.clear()
    session.permanent = True
    login_user(user)
    session["enrolment_only"] = auth.enrolment_due(user)
    if session["enrolment_only"]:
        return url_for("web.account")
    notice = resets.notice(user)
    if notice:
        session["notice"] = {"by": notice["by"], "at": iso(notice["at"])}
    return local_path(request.args.get("next")) or url_for("web.patients")


def local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None: no scheme, no host, no
    backslash, no control character (a browser drops a tab: "/<TAB>/x" becomes "//x")."""
    if not target or any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/recover", methods=["GET", "POST"])
def recover():
    """After an access reset: the person chooses a new password with the one-time code."""
    if request.method == "GET":
        return render_template("recover.html", error=None)
    try:
        resets.recover(
            request.form.get("login", ""), request.form.get("code", ""), request.form.get("new_password", "")
        )
    except Problem as p:
        resp = make_response(render_template("recover.html", error=p), p.status)
        return finish(resp, "auth.recover", None, "recover")
    return finish(redirect(url_for("web.login", recovered=1)), "auth.recover", None, "recover")


@bp.get("/invitation")
def invitation():
    """Accepting an invitation: the code stays in the link's #fragment, which no server or
    proxy log sees; the page's script sends it to POST /api/v1/invitations/accept."""
    return render_template("invitation.html")


@bp.post("/logout")
def logout():
    user = current_user._get_current_object() if current_user.is_authenticated else None
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    if user is None:
        return redirect(url_for("web.login"))
    user = db.session.merge(user)
    auth.sign_out(user)  # a copied cookie dies with the session
    return finish(redirect(url_for("web.login")), "auth.logout", user, "logout")


# --- the care list and a patient's record -----------------------------------------------


def _care_list() -> list[dict]:
    items = registry.care_list(current_user)  # in kana order; a reading that alerted me puts its patient on top
    return sorted(items, key=lambda i: not i.get("alerts_since_my_last_view"))


@page("/", action="patient.list", name="patients")
def care_list():
    return render_template(
        "patients.html", items=_care_list(), may_register=bool(PROFESSION_ROLES[current_user.profession])
    )


@page("/patients/<patient_id>/<any(next, previous):step>", action="patient.list")
def neighbour(patient_id, step):
    """次の利用者 / 前の利用者 on a patient's page, in the care list's order (wrapping
    round); worked out on the tap, so the patient page itself stays one list lighter."""
    ids = [i["id"] for i in _care_list()]
    if patient_id not in ids:
        return redirect(url_for("web.patients"))
    at = ids.index(patient_id) + (1 if step == "next" else -1)
    return redirect(url_for("web.patient", patient_id=ids[at % len(ids)]))


@page("/patients/<patient_id>/print", action="record.print")
def record_print(patient_id):
    """The whole record on paper: every section's values, who wrote them and when, and
    nothing to tap."""
    p = registry.read(current_user, patient_id, activity=False)
    return render_template(
        "record_print.html",
        p=p,
        demo=p,
        sections=revisions.read(current_user, patient_id, look=False)["sections"],
        team=teams.team(current_user, patient_id)["items"],
        now=utcnow(),
    )


@page("/patients/new")
def register_patient():
    """利用者の登録: demographics and, usually, the consent obtained at intake (one request)."""
    return render_template(
        "register.html", today=date.today().isoformat(), may_register=bool(PROFESSION_ROLES[current_user.profession])
    )


def timeline_entries(p: dict, cursor: str | None = None) -> tuple[list[dict], list[dict], str | None]:
    """A page of the timeline (the newest, or the one after `cursor`), with each
    emergency access (break-glass) as an entry at its time, the accesses open now (the
    team's banner) and the next page's cursor. A break-glass reader sees no accesses:
    what others did in an emergency is the team's to know. A reply whose thread's first
    note is on the same page is folded under it; one whose first note is older stands
    on its own, naming what it answers."""
    page = notes.timeline(current_user, p["id"], TIMELINE_ON_PAGE, cursor)
    grants = [] if p["breakglass"] else breakglass.grants(current_user, p["id"])
    oldest = page["items"][-1]["created_at"] if page["next_cursor"] else None
    newest = page["items"][0]["created_at"] if cursor and page["items"] else None
    files = attachments.of_notes(current_user, p["id"], [n["id"] for n in page["items"]])
    entries = {
        n["id"]: {"kind": "note", "at": n["created_at"], "attachments": files.get(n["id"], []), "replies": [], **n}
        for n in page["items"]
    }
    for e in sorted(entries.values(), key=lambda e: e["at"]):
        if e["reply_to"] in entries:
            entries[e["reply_to"]]["replies"].append(e)
    shown = [e for e in entries.values() if e["reply_to"] not in entries]
    shown += [
        {"kind": "breakglass", "at": g["opened_at"], **g}
        for g in grants
        if (not oldest or g["opened_at"] >= oldest) and (not newest or g["opened_at"] <= newest)
    ]
    return (
        sorted(shown, key=lambda e: e["at"], reverse=True),
        [g for g in grants if g["open"]],
        page["next_cursor"],
    )


@page("/patients/<patient_id>", action="record.read")
def patient(patient_id):
    p = registry.read(current_user, patient_id)  # before revisions.read marks this look
    vitals = charts.overview(current_user, patient_id, PATIENT_PAGE_DAYS, p.get("my_last_look"))
    chart = revisions.read(current_user, patient_id)
    entries, emergency, more = timeline_entries(p)
    return render_template(
        "patient.html",
        p=p,
        demo=p,
        sections=chart["sections"],
        v=vitals,
        section_files=attachments.of_sections(current_user, patient_id),
        writable=chart["writable"],
        changed=p.get("changed_since_my_last_view", []),
        notes=entries,
        more=more,
        emergency=emergency,
        team=teams.team(current_user, patient_id)["items"],
    )


def _days() -> int:
    days = request.args.get("days", type=int)
    return days if days in (7, 30, 90) else TREND_DAYS


@page("/patients/<patient_id>/vitals", action="observation.list")
def vitals_page(patient_id):
    """バイタルの推移: charts over 7, 30 or 90 days, the thresholds, every reading as a
    table (for print), and importing a device's CSV."""
    p = registry.read(current_user, patient_id, activity=False)
    v = charts.overview(current_user, patient_id, _days(), p.get("my_last_look"))
    return render_template("vitals.html", p=p, demo=p, t=v["thresholds"], v=v)


@page("/patients/<patient_id>/vitals/sheet", action="observation.list")
def vitals_sheet(patient_id):
    """The trend page's table of every reading, when it is opened or printed."""
    return render_template("_vital_sheet.html", v=charts.overview(current_user, patient_id, _days(), table=True))


@page("/patients/<patient_id>/vitals/charts", action="observation.list")
def vitals_charts(patient_id):
    """The charts alone, for the page to refresh after a save or an alert."""
    p = registry.read(current_user, patient_id, activity=False)
    return render_template(
        "_vitals_charts.html", v=charts.overview(current_user, patient_id, _days(), p.get("my_last_look"))
    )


@page("/patients/<patient_id>/sections/<section>", action="record.read")
def section_fragment(patient_id, section):
    s = revisions.read_section(current_user, patient_id, section)
    return render_template(
        "_section.html",
        p={"id": patient_id},
        key=section,
        s=s,
        writable=[section] if s["writable"] else [],
        section_files=attachments.of_sections(current_user, patient_id, section),
    )


@page("/patients/<patient_id>/sections/<section>/history", action="record.history")
def section_history(patient_id, section):
    versions = revisions.versions(current_user, patient_id, section)
    for newer, older in zip(versions, versions[1:] + [{"content": {}}]):
        newer["changes"] = diff(SECTIONS[section].layout, older["content"], newer["content"])
    return render_template("_history.html", key=section, versions=versions)


@page("/patients/<patient_id>/timeline", action="note.list")
def timeline_fragment(patient_id):
    """The timeline's newest page, or with ?cursor= the next older one (the page appends it)."""
    p = registry.read(current_user, patient_id)
    entries, _, more = timeline_entries(p, request.args.get("cursor") or None)
    return render_template("_timeline.html", p=p, notes=entries, more=more)


@page("/patients/<patient_id>/photos", action="attachment.list")
def photos(patient_id):
    """写真の経過: each series (one body site) side by side, oldest first, then the rest."""
    p = registry.read(current_user, patient_id)
    items = []
    cursor = None
    while True:  # every attachment of the patient: a page holds its thumbnails, not the files
        page_ = attachments.listing(current_user, patient_id, limit=200, cursor=cursor)
        items += page_["items"]
        cursor = page_["next_cursor"]
        if not cursor:
            break
    series: dict[str, list[dict]] = {}
    for a in sorted(items, key=lambda a: a["created_at"]):
        series.setdefault(attachments.series_key(a["series"]) if a["series"] else "", []).append(a)
    others = series.pop("", [])
    return render_template("photos.html", p=p, demo=p, series=series, others=others)


@page("/patients/<patient_id>/sheet", action="record.read")
def emergency_sheet(patient_id):
    """急変時情報シート, to print and leave at the bedside: DNAR in a box, allergies, recent
    condition, open urgent notes, phones, and a code + QR code for whoever comes."""
    p = registry.read(current_user, patient_id)
    work.describe(detail="emergency_sheet")
    code = registry.sheet_code(current_user, patient_id)
    link = (current_app.config["RENKEI"].public_url or request.url_root.rstrip("/")) + "/p/" + code
    urgent = [
        n
        for n in notes.timeline(current_user, patient_id, SUMMARY_NOTES)["items"]
        if n["urgent"] and not [a for a in n["acks"] if a["user_id"] != n["author_id"]]
    ]
    return render_template(
        "sheet.html",
        p=p,
        demo=p,
        code=code,
        link=link,
        qr=segno.make(link, error="m").svg_data_uri(scale=3),
        urgent=urgent,
        sections=revisions.read(current_user, patient_id, look=False)["sections"],
        team=teams.team(current_user, patient_id)["items"],
        now=utcnow(),
    )


@page("/p/<code>", action="patient.by_code")
def open_by_code(code):
    """Where the sheet's QR code leads: a team member to the record; anyone else to the
    break-glass form with the code filled in — the same answer whether or not the code
    matched, so the address tells a non-member nothing."""
    patient = registry.by_sheet_code(code)
    work.describe(detail="code=" + vault.sheet_code_digest(code))  # the code itself is not kept
    if patient is not None and authz.current_membership(patient.id, current_user.id) is not None:
        return redirect(url_for("web.patient", patient_id=patient.id))
    return redirect(url_for("web.breakglass_page", code=code))


@page("/summary")
def summary():
    """訪問前サマリー: every patient of mine, what needs me first (unread urgent notes,
    then readings that alerted, then the most that changed): the last week's vitals, allergies, resuscitation wish and ACP, diseases and
    medicines, each section changed since my last look field by field (old → new, with
    who and when), and every note since then. A glance, not a look: reading the summary
    does not restart "since my last look". One access-log entry per patient shown."""
    items, unit = [], work.current()
    for patient_id in registry.ids_of(current_user):
        try:
            p = registry.read(current_user, patient_id)
        except Problem:
            continue  # no consent yet: not on the summary
        chart = revisions.read(current_user, patient_id, look=False)["sections"]
        changes = revisions.since_last_look(current_user, patient_id)
        # One read of the newest notes serves both lists (the newest SUMMARY_NOTES since my
        # last look are the newest SUMMARY_NOTES overall whenever there are that many).
        others = [
            n
            for n in notes.timeline(current_user, patient_id, SUMMARY_NOTES)["items"]
            if n["author_id"] != current_user.id
        ]
        recent = [n for n in others if changes["since"] is None or n["created_at"] > changes["since"]]
        unread_urgent = [n for n in others if n["urgent"] and not n["acknowledged_by_me"]]
        changed = [
            {"section": s, "revisions": c["revisions"], "lines": diff(SECTIONS[s].layout, c["before"], c["after"])}
            for s, c in changes["sections"].items()
        ]
        unread = {n["id"] for n in recent + unread_urgent if not n["acknowledged_by_me"]}
        vitals = charts.overview(current_user, patient_id, SUMMARY_DAYS, changes["since"], names=False)
        items.append(
            {
                "p": p,
                "demo": p,
                "record": chart,
                "changed": changed,
                "urgent": unread_urgent,
                "notes": recent,
                "since": changes["since"],
                "unread": sorted(unread),
                "v": vitals,
            }
        )
        unit.add_entry("record.read", "ok", actor=current_user, patient_id=p["id"], detail="visit_summary")
    items.sort(
        key=lambda it: (
            -len(it["urgent"]),
            -it["p"].get("alerts_since_my_last_view", 0),
            -(len(it["changed"]) + len(it["notes"])),
        )
    )
    return render_template("summary.html", items=items, now=utcnow())


@page("/patients/<patient_id>/team", action="team.read")
def team_page(patient_id):
    team = teams.team(current_user, patient_id)
    names = {u["id"]: u["display_name"] for u in directory.people_named([a["user_id"] for a in team["pending"]])}
    return render_template(
        "team.html",
        p={"id": patient_id},
        team=team["items"],
        pending=team["pending"],
        people_names=names,
        consents=consent.consents(current_user, patient_id),
        can_manage=team["can_manage"],
        today=date.today().isoformat(),
        roles=PROFESSION_ROLES,
        escalation=escalation.rule(current_user, patient_id),
    )


# --- the person's account -------------------------------------------------------------


def render_account(**shown):
    """The account page: second factor, this device's pushes, what I hear of, my e-mail."""
    user = current_user._get_current_object()
    return render_template(
        "account.html",
        **{
            "qr": None,
            "secret": None,
            "confirming": False,
            "devices": webpush.subscriptions(user),
            "passkeys": passkeys.of(user),
            "outreach_settings": tell.settings_out(user),
            "mail_enabled": bool(current_app.config["RENKEI"].smtp_url),
        }
        | shown,
    )


@page("/account")
def account():
    return render_account()


@page("/account/email")
def account_email():
    """Where the link in the confirmation mail leads: the person confirms with a button
    (a mail scanner that follows the link confirms nothing). The code is in the link's
    #fragment, which no server or proxy log sees; the page's script sends it."""
    return render_account(confirming=True)


@page("/account/totp", action="auth.totp_enrol", methods=("POST",))
def account_totp():
    user = current_user._get_current_object()
    if user.totp_enabled:
        return render_account()
    enrolment = auth.start_totp(user)
    qr = segno.make(enrolment["otpauth_uri"], error="m").svg_data_uri(scale=5)
    return render_account(qr=qr, secret=enrolment["secret"], otpauth=enrolment["otpauth_uri"])


# --- administration and the access log ----------------------------------------------------


@page("/admin", who="admin")
def admin():
    people = directory.people(current_user, include_disabled=True)
    return render_template(
        "admin.html",
        orgs=directory.organizations(),
        resets=resets.waiting(current_user),
        second_admin=directory.second_administrator_exists(),
        names={u["id"]: u["display_name"] for u in people},
        users=people,
        emergency=breakglass.open_now(current_user),
    )


def audit_query() -> tuple[dict, dict]:
    """The access-log filters of the page's form: whole days in Japan time, and
    realtime.connect left out unless asked for. Returns (query, field errors)."""
    args = {k: v for k, v in request.args.items() if v and k != "verify"}
    for name in ("since", "until"):  # the page's date pickers give whole days (JST)
        if len(args.get(name, "")) == 10:
            day = args[name] + "T00:00:00+09:00"
            args[name] = (
                day
                if name == "since"
                else (date.fromisoformat(args[name]) + timedelta(days=1)).isoformat() + "T00:00:00+09:00"
            )
    args.setdefault("connections", "false")
    try:
        return reading.Query().load(args), {}
    except ValidationError as err:
        return {"limit": 100, "connections": False}, err.messages_dict


def filtered_patient(query: dict) -> dict | None:
    """Whose record the log is filtered to, named for auditors (administrators see the id)."""
    if query.get("patient_id") and current_user.is_auditor:
        return reading.patient_identity(current_user, query["patient_id"])
    return None


def render_audit(**shown):
    """The access-log page: the people who may appear in it, and nothing shown unless given."""
    people = reading.everyone(current_user)
    page = dict(
        entries=[],
        next_cursor=None,
        args={},
        filters={},
        errors={},
        chain=None,
        patient=None,
        choices=None,
        names={u.id: u.display_name for u in people},
        users=people,
        anchor=reading.archived_through(),
    )
    return render_template("audit.html", **(page | shown))


@page("/admin/audit", action="audit.read", who="audit")
def audit_page():
    query, errors = audit_query()
    found = reading.search(current_user, query)
    # Verifying re-hashes the whole log (minutes at millions of entries): the page asks the
    # API for it after loading; without JavaScript, ?verify=1 does it here.
    chain = reading.verify(current_user) if request.args.get("verify") else None
    filters = {k: v for k, v in request.args.items() if k not in ("verify", "cursor") and v}
    return render_audit(
        entries=found["items"],
        next_cursor=found["next_cursor"],
        args=request.args,
        filters=filters,
        errors=errors,
        chain=chain,
        patient=filtered_patient(query),
    )


@page("/admin/audit/verify", action="audit.verify", who="audit")
def audit_verify_status():
    """The check's result as a fragment of the access-log page, which fetches it after
    loading (a check re-hashes the whole log)."""
    return render_template("_verify_status.html", chain=reading.verify(current_user))


@page("/admin/audit/patient", action="audit.patient_search", who="auditor", methods=("POST",))
def audit_find_patient():
    """The auditor types a name (in the form's body, never a URL): one patient → the log
    filtered to them; several → choose by birth date; none → say so."""
    found = reading.find_patients(current_user, request.form.get("name", ""))
    if len(found) == 1:
        return redirect(url_for("web.audit_page", patient_id=found[0]["id"]))
    return render_audit(choices=found)


@page("/admin/audit/export.csv", action="audit.export", who="audit")
def audit_export():
    """The page's CSV, for a spreadsheet: UTF-8 with BOM (Excel), Japan time with its
    offset, names beside ids, headers and labels in the page's language. The API's CSV
    (docs/API.md) stays the machine format."""
    query, errors = audit_query()
    if errors:
        raise Problem(422, "invalid filters")
    query["connections"] = True  # the file is the whole log for its filters: no silent gaps in the numbers
    people, patient = reading.everyone(current_user), filtered_patient(query)
    lines = audit_sheet(
        reading.export_entries(current_user, query),
        {u.id: u.display_name for u in people},
        {o["id"]: o["name"] for o in directory.organizations()},
        {patient["id"]: patient["name"]} if patient else {},
    )
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="renkei-access-log.csv"'},
    )


@page("/admin/usage", action="usage.read", who="audit")
def usage():
    """活用状況: organisations and people active, by profession, updates and notes per week."""
    figures = reading.usage(current_user)
    return render_template(
        "usage.html", **figures, peak=max([1] + [max(w["updates"], w["notes"]) for w in figures["weeks"]])
    )


@page("/admin/usage.csv", action="usage.read", who="audit")
def usage_csv():
    """The 活用状況 figures as a CSV for the municipality's report (BOM: Excel)."""
    f = reading.usage(current_user)
    rows = [(label, f["totals"][key]) for key, label in USAGE_FIGURES]
    rows += [(_("利用のあった人（%(p)s）", p=PROFESSION_LABELS[p]), n) for p, n in f["by_profession"]]
    rows += [(_("連絡帳の投稿（%(p)s）", p=PROFESSION_LABELS[p]), n) for p, n in f["notes_by_profession"]]
    rows += [(_("週 %(d)s: 記録の更新", d=w["start"]), w["updates"]) for w in f["weeks"]]
    rows += [(_("週 %(d)s: 連絡帳の投稿", d=w["start"]), w["notes"]) for w in f["weeks"]]
    sheet = csvfile.chunks([_("項目"), _("値")], ((str(a), b) for a, b in rows), start=BOM)
    return Response(
        "".join(sheet), mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="renkei-usage.csv"'}
    )


@page("/breakglass")
def breakglass_page():
    """緊急時アクセス: physicians and nurses open a record they are not on the team of."""
    return render_template("breakglass.html", code=request.args.get("code", ""))
