"""The dashboard page: self-contained (no script, nothing loaded from elsewhere), every data string escaped,
an empty state for a companion with no data. A real browser renders it in tests/e2e/test_dashboard.py."""

import copy
import importlib.util
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import pytest

from companion_memory import wiring
from companion_memory.auth.principal import Principal
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

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 8, 13, tzinfo=UTC)
END = START + timedelta(days=7)
HOSTILE = '<script>alert("x")</script>'


def page(name: str = "Ava", users: list[UserEngagement] | None = None, busy: bool = True) -> str:
    return render(dashboard(name, users, busy))


def dashboard(name: str = "Ava", users: list[UserEngagement] | None = None, busy: bool = True) -> Dashboard:
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
    return Dashboard(
        companion=companion,
        metrics=Metrics(
            companion_id=companion.id, start=START, end=END, bucket="hour", totals=totals, series=series
        ),
        engagement=Engagement(companion_id=companion.id, start=START, end=END, users=users or []),
        health=health_score(companion.id, inputs, END)
        if busy
        else health_score(companion.id, HealthInputs(END, 0, 0, 0, 0, 0, 0, 0, 0, 0), END),
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


# --- the response ------------------------------------------------------------------------------------------


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "analytics_app_under_test", ROOT / "functions/analytics/app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DashboardOnly:
    """Stands in for AnalyticsService on the one call the dashboard route makes."""

    def dashboard(self, actor: object, companion_id: UUID, days: int) -> Dashboard:
        return dashboard()


def test_the_dashboard_response_forbids_framing_and_sends_no_referrer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the analytics function with a dashboard to render
    app = _load_app()
    monkeypatch.setattr(wiring, "analytics_service", DashboardOnly)
    companion_id = uuid4()
    event: dict[str, Any] = copy.deepcopy(
        json.loads((ROOT / "events" / "analytics" / "health.json").read_text())
    )
    event["routeKey"] = "$default"
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/companions/{companion_id}/dashboard"
    owner = Principal(kind="owner", owner_id=uuid4(), scopes=frozenset({"admin"}), key_id=uuid4())
    event["requestContext"]["authorizer"] = {"lambda": owner.to_context()}
    # When the dashboard is asked for
    answer = app.app.resolve(event, None)
    # Then the page comes with a policy no <meta> can carry (no framing) and no referrer for its links
    headers = {k.lower(): v for k, v in answer["headers"].items()}
    assert answer["statusCode"] == 200
    policy = {d.strip() for d in headers["content-security-policy"].split(";")}
    assert {"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} <= policy
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert "no-store" in headers["cache-control"]
