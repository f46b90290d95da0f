"""A companion's dashboard as one self-contained HTML page: inline CSS and SVG, no script, no external
font, image or stylesheet (it renders offline and under a ``default-src 'none'`` policy).

Every string that comes from data (the companion's name, user ids, part details) is escaped: user ids are
chosen by a companion's backend, and so by whoever talks to it.
"""

from collections.abc import Sequence
from datetime import datetime
from html import escape
from math import cos, pi, sin
from typing import Final

from companion_memory.domain.analytics import Dashboard
from companion_memory.models.analytics import Health, SeriesPoint, UserEngagement

# What the page may load: nothing but itself (styles inline).
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# The response header adds what a <meta> policy cannot carry: no site may frame the page (clickjacking an
# operator's view), and the page may set no base URL and submit no form.
HEADER_CONTENT_SECURITY_POLICY: Final = (
    f"{CONTENT_SECURITY_POLICY}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# The page's URL names the companion: a link followed from it tells the next site nothing.
REFERRER_POLICY: Final = "no-referrer"

INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
BLUE, TEAL, VIOLET = "#2563eb", "#0d9488", "#7c3aed"
GREEN, AMBER, RED = "#16a34a", "#d97706", "#dc2626"
NO_SCORE: Final = "n/a"
W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 30, 16, 30

_CSS = f"""
body {{ margin: 0; background: #f3f4f6; color: {INK};
       font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
header {{ background: #111827; color: #f9fafb; padding: 20px 32px; }}
header h1 {{ margin: 0; font-size: 22px; }}
header p {{ margin: 4px 0 0; color: #d1d5db; }}
main {{ display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 20px; padding: 20px 32px; }}
section {{ background: #fff; border-radius: 10px; padding: 16px 18px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
section h2 {{ margin: 0 0 8px; font-size: 15px; }}
.tiles {{ grid-column: 1 / -1; display: flex; gap: 16px; background: none; box-shadow: none; padding: 0; }}
.tile {{ flex: 1; background: #fff; border-radius: 10px; padding: 14px 18px;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
.tile b {{ display: block; font-size: 26px; }}
.tile span {{ color: {MUTED}; }}
.legend span {{ margin-right: 14px; color: {MUTED}; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }}
svg text {{ font: 11px system-ui, sans-serif; fill: {MUTED}; }}
svg text.label {{ fill: {INK}; font-size: 12px; }}
svg text.big {{ font-size: 34px; font-weight: 600; fill: {INK}; }}
svg text.empty {{ font-size: 13px; }}
"""


def render(dashboard: Dashboard) -> str:
    companion, series = dashboard.companion, dashboard.metrics.series
    start, end = dashboard.metrics.start, dashboard.metrics.end
    totals = dashboard.metrics.totals
    name = escape(companion.name)
    days = round((end - start).total_seconds() / 86400)
    tiles = "".join(
        f'<div class="tile"><b>{value}</b><span>{escape(label)}</span></div>'
        for value, label in (
            (f"{totals['interactions']:,}", f"interactions, last {days} days"),
            (f"{totals['conversations']:,}", "conversations"),
            (f"{totals['memories_total']:,}", "memories now"),
            (_score_text(dashboard.health), "health"),
        )
    )
    activity_legend = _legend((BLUE, "interactions per hour"), (TEAL, "conversations started per hour"))
    growth_legend = _legend((VIOLET, "memories kept (cumulative)"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<title>{name} · Companion Memory</title><style>{_CSS}</style></head>
<body>
<header><h1>{name}</h1><p>status {escape(companion.status)} · {_day(start)} &ndash; {_day(end)} (UTC) ·
companion {escape(str(companion.id))}</p></header>
<main>
<section class="tiles">{tiles}</section>
<section><h2>Activity over time</h2>{activity_legend}{_activity_chart(series)}</section>
<section><h2>Memory growth</h2>{growth_legend}{_growth_chart(series)}</section>
<section><h2>Top users</h2>{_top_users(dashboard.engagement.users)}</section>
<section><h2>Health</h2>{_health(dashboard.health)}</section>
</main></body></html>
"""


def _legend(*items: tuple[str, str]) -> str:
    spans = "".join(
        f'<span><i style="background:{colour}"></i>{escape(text)}</span>' for colour, text in items
    )
    return f'<div class="legend">{spans}</div>'


def _day(at: datetime) -> str:
    return at.strftime("%d %b %Y")


def _score_text(health: Health) -> str:
    return NO_SCORE if health.score is None else f"{health.score:.0f} / 100"


def _nice_max(value: float) -> float:
    """The top of an axis with four round steps: 4 x (the smallest 1, 2, 2.5 or 5 x 10^k >= value / 4)."""
    return 4 * _nice_step(value / 4)


def _nice_step(value: float) -> float:
    if value <= 1:
        return 1
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _frame(top: float, series: Sequence[SeriesPoint]) -> str:
    """Grid lines with y labels (0, ¼ … top) and x labels at day starts (every 6 hours over ≤ 2 days)."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = []
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        label = f"{value:,.0f}" if top >= 4 else f"{value:,.1f}"
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    n = len(series)
    days_apart = max(1, n // (24 * 8))  # at most ~8 day labels
    for index, point in enumerate(series):
        daily = point.at.hour == 0 and point.at.toordinal() % days_apart == 0
        if (point.at.hour % 6 == 0) if n <= 48 else daily:
            x = LEFT + plot_w * index / max(n, 1)
            text = point.at.strftime("%H:%M") if point.at.hour else point.at.strftime("%d %b")
            tick = f'y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" stroke="{MUTED}"'
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" {tick}/>')
            parts.append(f'<text x="{x:.1f}" y="{H - 10}" text-anchor="middle">{text}</text>')
    parts.append(
        f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="{MUTED}"/>'
    )
    return "".join(parts)


def _svg(body: str, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _empty(label: str, text: str) -> str:
    return _svg(
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#f9fafb" '
        f'stroke="{GRID}"/><text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">'
        f"{escape(text)}</text>",
        label,
    )


def _activity_chart(series: Sequence[SeriesPoint]) -> str:
    label = "Interactions and conversations per hour"
    peak = max([p.interactions for p in series] + [0])
    if peak == 0 and not any(p.conversations for p in series):
        return _empty(label, "No activity in this period yet")
    top = _nice_max(peak)
    # Conversations are far fewer than requests: their own scale, labelled on the right in their colour.
    top_conversations = _nice_max(max(p.conversations for p in series))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(series)
    bars, line = [], []
    for index, point in enumerate(series):
        x = LEFT + slot * index
        if point.interactions:
            height = plot_h * point.interactions / top
            bars.append(
                f'<rect x="{x:.2f}" y="{TOP + plot_h - height:.2f}" width="{max(slot * 0.8, 0.8):.2f}" '
                f'height="{height:.2f}" fill="{BLUE}"><title>{point.at:%d %b %H:%M}: '
                f"{point.interactions} interactions</title></rect>"
            )
        line.append(
            f"{x + slot / 2:.2f},{TOP + plot_h - plot_h * point.conversations / top_conversations:.2f}"
        )
    path = f'<polyline points="{" ".join(line)}" fill="none" stroke="{TEAL}" stroke-width="1.5"/>'
    right = "".join(
        f'<text x="{W - RIGHT + 4}" y="{TOP + plot_h - plot_h * i / 4 + 4:.1f}" fill="{TEAL}" '
        f'style="fill:{TEAL}">{top_conversations * i / 4:,.0f}</text>'
        for i in range(5)
    )
    return _svg(_frame(top, series) + "".join(bars) + path + right, label)


def _growth_chart(series: Sequence[SeriesPoint]) -> str:
    label = "Memories kept over time"
    peak = max(p.memories_total for p in series)
    if peak == 0:
        return _empty(label, "No memories stored yet")
    top = _nice_max(peak)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(series)
    points = [
        f"{LEFT + slot * (i + 0.5):.2f},{TOP + plot_h - plot_h * p.memories_total / top:.2f}"
        for i, p in enumerate(series)
    ]
    base = TOP + plot_h
    area = (
        f'<polygon points="{LEFT + slot / 2:.2f},{base} {" ".join(points)} '
        f'{LEFT + slot * (len(series) - 0.5):.2f},{base}" fill="{VIOLET}" fill-opacity="0.15"/>'
    )
    line = f'<polyline points="{" ".join(points)}" fill="none" stroke="{VIOLET}" stroke-width="2.5"/>'
    return _svg(_frame(top, series) + area + line, label)


def _top_users(users: Sequence[UserEngagement]) -> str:
    label = "The most active users by interactions"
    if not users:
        return _empty(label, "No user has used this companion in this period")
    shown = users[:10]
    row, name_w, bar_x = 24, 150, 160
    height = TOP + row * len(shown) + 8
    peak = max(u.interactions for u in shown) or 1
    bars = []
    for index, user in enumerate(shown):
        y = TOP + row * index
        width = (W - bar_x - 150) * user.interactions / peak
        uid = user.user_id if len(user.user_id) <= 22 else user.user_id[:21] + "…"
        bars.append(
            f'<text class="label" x="{name_w}" y="{y + 15}" text-anchor="end">{escape(uid)}'
            f"<title>{escape(user.user_id)}</title></text>"
            f'<rect x="{bar_x}" y="{y + 3}" width="{max(width, 2):.1f}" height="{row - 8}" rx="3" '
            f'fill="{BLUE}"/>'
            f'<text x="{bar_x + width + 6:.1f}" y="{y + 15}">{user.interactions:,} · {user.active_days} d · '
            f"{user.memories:,} memories</text>"
        )
    return (
        f'<svg viewBox="0 0 {W} {height}" width="100%" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
        f'<p class="legend"><span>interactions · active days (UTC) · memories now</span></p>'
    )


def _colour(score: float | None) -> str:
    if score is None:
        return MUTED
    return GREEN if score >= 70 else AMBER if score >= 40 else RED


def _health(health: Health) -> str:
    # A half-circle gauge (radius 80) filled in proportion to the score, then each part as a bar.
    cx, cy, r = 130, 110, 80
    score = health.score
    fraction = 0.0 if score is None else score / 100
    angle = pi * (1 - fraction)
    x, y = cx + r * cos(angle), cy - r * sin(angle)
    track = (
        f'<path d="M {cx - r} {cy} A {r} {r} 0 0 1 {cx + r} {cy}" fill="none" stroke="{GRID}" '
        'stroke-width="18"/>'
    )
    arc = (
        f'<path d="M {cx - r} {cy} A {r} {r} 0 0 1 {x:.2f} {y:.2f}" fill="none" stroke="{_colour(score)}" '
        f'stroke-width="18"/>'
        if fraction > 0
        else ""
    )
    centre = NO_SCORE if score is None else f"{score:.0f}"
    note = "enough data to act on" if health.enough_data else "not enough data yet to act on"
    gauge = (
        f"{track}{arc}<text class='big' x='{cx}' y='{cy - 6}' text-anchor='middle'>{centre}</text>"
        f"<text x='{cx}' y='{cy + 16}' text-anchor='middle'>of 100 · {escape(note)}</text>"
    )
    rows = []
    for index, part in enumerate(health.parts):
        y = 16 + 46 * index
        width = 0 if part.score is None else 260 * part.score / 100
        value = "no data" if part.score is None else f"{part.score:.0f}"
        detail = part.detail if len(part.detail) <= 52 else part.detail[:51] + "…"
        rows.append(
            f'<text class="label" x="280" y="{y}">{escape(part.name.replace("_", " "))} '
            f"(weight {part.weight:g}): {value}</text>"
            f'<rect x="280" y="{y + 6}" width="260" height="8" rx="4" fill="{GRID}"/>'
            f'<rect x="280" y="{y + 6}" width="{width:.1f}" height="8" rx="4" fill="{_colour(part.score)}"/>'
            f'<text x="280" y="{y + 28}">{escape(detail)}<title>{escape(part.detail)}</title></text>'
        )
    return _svg(gauge + "".join(rows), f"Health {centre} of 100")
