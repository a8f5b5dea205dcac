"""Observations on the page (docs/ARCHITECTURE.md, "Observations"): small trend charts
drawn on the server as SVG — no script to load or run, the same picture on a tablet, a
phone and on paper — and the 温度板, every reading of a period as one table. Readable in
grey: values are a solid line with dots, a second series (diastolic) dashed with open
dots, thresholds long dashes with their value written on them, and a reading beyond a
threshold a larger square. Both are built here in Python rather than in a template: a
month of readings is a thousand cells (bench/vitals.py)."""

from datetime import datetime, timedelta, timezone

from flask_babel import gettext as _
from markupsafe import Markup, escape

from renkei.common.timefmt import JAPAN
from renkei.observations.kinds import KINDS

# A chart is drawn at 256 px wide or more (.charts in static/app.css), so 15 units of
# text are at least 12 px on screen.
WIDTH, HEIGHT = 320, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 12, 26
DOTS_UP_TO = 60  # readings in a series drawn as dots too; beyond that dots only blur the line
SHORTEST_AXIS = timedelta(days=7)  # the time axis fits the readings, but never shorter than a week


def number(value, places: int) -> str:
    return f"{value:.{places}f}" if places else str(int(round(value)))


def trend(chart: dict, start: datetime, end: datetime, label: str, dots: bool = True) -> Markup:
    """The chart of one kind from `start` to `end`, or from a little before its first
    reading when that is later (two weeks of readings fill a 90-day chart). With `dots`,
    every reading also carries what a tap shows: the value, when, and who recorded it."""
    kind, points, limits = chart["kind"], chart["points"], chart["limits"]
    start = max(start, min(points[0]["measured_at"], end - SHORTEST_AXIS) - (end - start) / 60)
    places = next(iter(kind.components.values()))[1].places if kind.components else kind.measure.places
    names = list(kind.components) or ["value"]
    series = {
        n: [
            (p["measured_at"], p["components"][n] if kind.components else p["value"], bool(p.get("threshold")))
            for p in points
        ]
        for n in names
    }
    lines = _threshold_lines(limits, kind)
    data = [v for s in series.values() for _, v, _ in s]
    values = data + [v for v, _ in lines]
    low, high = min(values), max(values)
    pad = (high - low) * 0.12 or 1
    low, high = low - pad, high + pad
    span = (end - start).total_seconds() or 1

    def x(at):
        return LEFT + (WIDTH - LEFT - RIGHT) * min(1, max(0, (at - start).total_seconds() / span))

    def y(v):
        return TOP + (HEIGHT - TOP - BOTTOM) * (high - v) / (high - low)

    out = [
        f'<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    for v in sorted({min(data), max(data)}):  # the lowest and highest reading
        out.append(f'<text class="tick" x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{number(v, places)}</text>')
    for v, text in lines:
        out.append(
            f'<line class="limit" x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}"/>'
            f'<text class="limit-label" x="{LEFT + 3}" y="{y(v) - 3:.1f}">'
            f"{escape(text)}</text>"
        )
    for i, (name, s) in enumerate(series.items()):
        cls = "second" if i else "first"
        if len(s) > 1:
            path = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v, _ in s)
            out.append(f'<polyline class="series {cls}" points="{path}"/>')
        for at, v, beyond in s:
            if beyond:
                out.append(f'<rect class="beyond" x="{x(at) - 4:.1f}" y="{y(v) - 4:.1f}" width="8" height="8"/>')
            elif dots and len(s) <= DOTS_UP_TO:
                out.append(f'<circle class="dot {cls}" cx="{x(at):.1f}" cy="{y(v):.1f}" r="2.5"/>')
    if dots:  # what a tap or a hover shows (static/app.js, chart taps)
        for p in points:
            tip = f"{_shown(kind, p)} {kind.shown_unit} · {_jst(p['measured_at'])} · {p.get('recorded_by_name') or ''}"
            out.append(
                f'<circle class="tip" cx="{x(p["measured_at"]):.1f}" cy="{y(_first(kind, p)):.1f}" r="6" '
                f'data-tip="{escape(tip)}"><title>{escape(tip)}</title></circle>'
            )
    middle = start + (end - start) / 2
    out.append(
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 6}">{_day(start)}</text>'
        f'<text class="tick" x="{x(middle):.1f}" y="{HEIGHT - 6}" text-anchor="middle">{_day(middle)}</text>'
        f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{_day(end)}</text></svg>'
    )
    return Markup("".join(out))


def _first(kind, p) -> float:
    return p["components"][next(iter(kind.components))] if kind.components else p["value"]


def _shown(kind, p) -> str:
    if kind.components:
        return "/".join(str(p["components"][n]) for n in kind.components)
    return str(p["value"])


def _threshold_lines(limits: dict, kind) -> list[tuple[float, str]]:
    """(value, label) of each min/max to draw; a rise over days is said in words instead."""
    bounds = [(name, b) for name, b in limits.items() if isinstance(b, dict)] if kind.components else [("", limits)]
    lines = []
    for name, b in bounds:
        for edge, mark in (("max", "▲"), ("min", "▼")):
            if edge in b:
                lines.append((b[edge], f"{mark}{b[edge]}"))
    return lines


def trend_chart(chart: dict, view: dict, dots: bool = True) -> Markup:
    """A chart of the overview (renkei/observations/readings.py overview) for its period; without
    dots on the summary, where thirty patients' charts share one page."""
    kind, latest = chart["kind"], chart["latest"]
    shown = (
        f"{latest['components']['systolic']}/{latest['components']['diastolic']}"
        if kind.components
        else str(latest["value"])
    )
    label = _(
        "%(kind)s、%(days)s日間の推移。最新 %(value)s %(unit)s",
        kind=kind.label,
        days=view["days"],
        value=shown,
        unit=kind.shown_unit,
    )
    return trend(chart, view["start"], view["end"], label, dots)


def _day(utc: datetime) -> str:
    return utc.replace(tzinfo=timezone.utc).astimezone(JAPAN).strftime("%m/%d")


def sheet(view: dict, viewer_id: str) -> Markup:
    """The 温度板: one row per time measured (to the minute), newest first; one column per
    kind with any reading, in the kinds' order. A reading the viewer may mark 誤入力 (its
    author, a physician or nurse) carries data-mark; the page turns those into buttons."""
    readings = view["readings"]
    kinds = [k for k in KINDS.values() if any(r["kind"] == k.key for r in readings)]
    rows: dict = {}
    for r in readings:
        rows.setdefault(r["measured_at"].replace(second=0, microsecond=0), {}).setdefault(r["kind"], []).append(r)
    words = {
        "error": escape(_("誤入力")),
        "beyond": escape(_("閾値超え")),
        "import": escape(_("取り込み")),
        "late": escape(_("後から記録")),
    }
    may_mark = view["may_record"]
    out = ['<table class="grid readings" id="vital-sheet"><thead><tr><th>', escape(_("測定日時")), "</th>"]
    out += [f"<th>{escape(k.label)}<br><small>{escape(k.shown_unit)}</small></th>" for k in kinds]
    out += ["<th>", escape(_("メモ")), "</th><th>", escape(_("記録者")), "</th></tr></thead><tbody>"]
    for at, cells in sorted(rows.items(), key=lambda row: row[0], reverse=True):
        out.append(f"<tr><td>{_jst(at)}</td>")
        notes, people = [], []
        for kind in kinds:
            out.append("<td>")
            for r in cells.get(kind.key, ()):
                shown = (
                    f"{r['components']['systolic']}/{r['components']['diastolic']}"
                    if kind.components
                    else str(r["value"])
                )
                marks = []
                if r.get("bristol"):
                    shown += f"<small>（{escape(_('ブリストル %(n)s', n=r['bristol']))}）</small>"
                if r["entered_in_error"]:
                    shown, marks = f"<s>{shown}</s>", [words["error"]]
                elif r.get("threshold"):
                    marks.append(words["beyond"])
                if r["source"] == "import":
                    marks.append(words["import"])
                elif r["late"]:
                    marks.append(words["late"])
                mark = (
                    ' data-mark="1"'
                    if may_mark
                    and not r["entered_in_error"]
                    and (view["may_mark_any"] or r["recorded_by"] == viewer_id)
                    else ""
                )
                cls = "error" if r["entered_in_error"] else "beyond" if r.get("threshold") else ""
                out.append(
                    f'<div data-reading="{r["id"]}" class="{cls}"{mark}>{shown}'
                    + "".join(f' <span class="badge">{m}</span>' for m in marks)
                    + "</div>"
                )
                if r.get("note") and r["note"] not in notes:
                    notes.append(r["note"])
                if r["recorded_by_name"] not in people:
                    people.append(r["recorded_by_name"])
            out.append("</td>")
        out.append(f"<td>{escape(' / '.join(notes))}</td><td>{escape('、'.join(filter(None, people)))}</td></tr>")
    out.append("</tbody></table>")
    return Markup("".join(out))


def _jst(utc: datetime) -> str:
    return utc.replace(tzinfo=timezone.utc).astimezone(JAPAN).strftime("%Y-%m-%d %H:%M")
