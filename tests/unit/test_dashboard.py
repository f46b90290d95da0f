"""The dashboard page: self-contained (no script, nothing loaded from elsewhere), every data string escaped,
an empty state for a companion with no data. A real browser renders it in tests/e2e/test_dashboard.py."""

import re
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from companion_memory.domain.analytics import Dashboard, fill_series, health_score
from companion_memory.http.dashboard import render
from companion_memory.models.analytics import (
    ActivityRow,
    Engagement,
    HealthInputs,
    Metrics,
    SeriesRows,
    UserEngagement,
)
from tests.support.identity import active_companion

START = datetime(2026, 1, 8, 13, tzinfo=UTC)
END = START + timedelta(days=7)
HOSTILE = '<script>alert("x")</script>'


def page(name: str = "Ava", users: list[UserEngagement] | None = None, busy: bool = True) -> str:
    companion = active_companion(uuid4(), uuid4()).model_copy(update={"name": name})
    rows = SeriesRows(
        activity=[ActivityRow(START + timedelta(hours=h), 5, 2, 1, 2) for h in range(0, 168, 3)]
        if busy
        else [],
        conversations={START + timedelta(hours=h): 1 for h in range(0, 168, 6)} if busy else {},
        memories_created={START + timedelta(hours=h): 2 for h in range(0, 168, 5)} if busy else {},
        memories_forgotten={},
        memories_before=0,
    )
    series = fill_series(rows, START, END, "hour")
    totals = {"interactions": sum(p.interactions for p in series), "conversations": 0, "memories_total": 0}
    inputs = HealthInputs(START - timedelta(days=30), 100, 700, 7, 10, 1, 3, 0, 3, 1)
    return render(
        Dashboard(
            companion=companion,
            metrics=Metrics(
                companion_id=companion.id, start=START, end=END, bucket="hour", totals=totals, series=series
            ),
            engagement=Engagement(companion_id=companion.id, start=START, end=END, users=users or []),
            health=health_score(companion.id, inputs, END)
            if busy
            else health_score(companion.id, HealthInputs(END, 0, 0, 0, 0, 0, 0, 0, 0, 0), END),
        )
    )


def user(user_id: str, interactions: int) -> UserEngagement:
    return UserEngagement(
        user_id=user_id,
        interactions=interactions,
        reads=interactions,
        writes=0,
        deletes=0,
        active_days=3,
        first_active_at=START,
        last_active_at=END,
        memories=4,
    )


def test_the_page_loads_nothing_from_anywhere_and_runs_no_script() -> None:
    html = page(users=[user("alice", 30)])
    assert "<script" not in html.lower()
    # The only URL is the SVG namespace name (an identifier, never fetched).
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "@import" not in html
    assert "url(" not in html


def test_a_hostile_user_id_and_companion_name_are_shown_as_text() -> None:
    # Given a user id and a companion name that are markup
    html = page(name=HOSTILE, users=[user(HOSTILE, 30), user('"><img src=x onerror=alert(1)>', 3)])
    # Then neither reaches the page as markup
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_the_page_has_the_four_charts_with_data() -> None:
    html = page(users=[user("alice", 30), user("bob", 10)])
    for heading in ("Activity over time", "Memory growth", "Top users", "Health"):
        assert f"<h2>{heading}</h2>" in html
    assert html.count("<rect") > 50  # the hourly bars
    assert "<polyline" in html
    assert "<polygon" in html
    assert ">alice<" in html
    assert ">bob<" in html


def test_a_companion_without_data_gets_empty_states_instead_of_blank_charts() -> None:
    html = page(busy=False)
    assert "No activity in this period yet" in html
    assert "No memories stored yet" in html
    assert "No user has used this companion in this period" in html
    assert "n/a" in html
