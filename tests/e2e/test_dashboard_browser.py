"""Analytics through the local gateway: real memory requests are counted, the routes answer per credential,
and the dashboard page, fetched with an owner key, renders in a real browser (headless Chromium) into a
screenshot that is not blank.

A week of history (activity, conversations, memories) is seeded into the database first, so the page shows
what a used companion looks like. ``COMPANION_DASHBOARD_PNG=docs/dashboard.png`` also keeps the screenshot
(the README's picture).
"""

import os
import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from companion_memory.adapters.postgres_activity import PostgresActivityRecorder
from companion_memory.models.tenancy import TenantScope
from tests.e2e.conftest import Tenant
from tests.support.database import app_database

HOSTILE_USER = "<script>alert(1)</script>"
USERS = ["maya", "tom.h", "li_wei", "sofia", "arjun", "grace", HOSTILE_USER]


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def seed_week(companion_id: str, owner_key_owner: UUID) -> None:
    """Seven days of plausible use: busier evenings, a few users far more active than others."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    companion = UUID(companion_id)
    with app_database(pool_size=2) as database:
        recorder = PostgresActivityRecorder(database)
        for hours_ago in range(1, 7 * 24):
            at = now - timedelta(hours=hours_ago)
            evening = 3 if at.hour in range(17, 23) else 1
            for rank, user in enumerate(USERS):
                scope = TenantScope(owner_id=owner_key_owner, companion_id=companion, user_id=user)
                for _ in range(rng.randint(0, (len(USERS) - rank) * evening // 2)):
                    recorder.record(scope, rng.choice(["read", "read", "read", "write"]), at)
                if rng.random() < 0.08 * evening / (rank + 1):
                    with database.transaction(scope) as conn:
                        conn.execute(
                            "INSERT INTO session_log (session_id, companion_id, user_id, started_at, "
                            "ended_at, request_count) VALUES (%s, %s, %s, %s, %s, %s)",
                            (uuid4(), companion, user, at, at + timedelta(minutes=25), rng.randint(3, 30)),
                        )
                if rng.random() < 0.15 * evening / (rank + 1):
                    with database.transaction(scope) as conn:
                        conn.execute(
                            "INSERT INTO memories (id, companion_id, user_id, type, content, importance, "
                            "occurred_at, created_at, updated_at) "
                            "VALUES (%s, %s, %s, 'fact', %s, 5, %s, %s, %s)",
                            (uuid4(), companion, user, f"note {hours_ago}", at, at, at),
                        )


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour
    channels = 4 if colour == 6 else 3
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [b"".join(r[i : i + 3] for i in range(0, stride, channels)) for r in rows]


@pytest.fixture(scope="module")
def seeded(
    api_client: httpx.Client, new_tenant: Callable[[str], Tenant], user_token: Callable[..., str]
) -> tuple[Tenant, str]:
    tenant = new_tenant("Dashboard")
    owner = api_client.get(f"/companions/{tenant.companion_id}", headers=bearer(tenant.owner_key)).json()
    seed_week(tenant.companion_id, UUID(owner["owner_id"]))
    return tenant, owner["owner_id"]


def test_memory_requests_through_the_api_are_counted_in_the_metrics(
    api_client: httpx.Client, new_tenant: Callable[[str], Tenant]
) -> None:
    # Given a fresh companion whose backend stores two memories and lists them once
    tenant = new_tenant("Counted")
    base = f"/companions/{tenant.companion_id}/users/ada/memories"
    for content in ("Ada likes sailing", "Ada's sister is called Bea"):
        stored = api_client.post(
            base, json={"content": content, "type": "fact"}, headers=bearer(tenant.companion_key)
        )
        assert stored.status_code == 201, stored.text
    assert api_client.get(base, headers=bearer(tenant.companion_key)).status_code == 200
    # When the owner reads the metrics of the last day
    answer = api_client.get(
        f"/companions/{tenant.companion_id}/analytics/metrics",
        params={"from": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        headers=bearer(tenant.owner_key),
    )
    # Then the three requests and the two memories are there
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["totals"]["writes"], body["totals"]["reads"]) == (2, 1)
    assert body["totals"]["memories_total"] == 2
    assert len(body["series"]) == 25


def test_the_analytics_routes_answer_per_credential(
    api_client: httpx.Client,
    seeded: tuple[Tenant, str],
    new_tenant: Callable[[str], Tenant],
    user_token: Callable[..., str],
) -> None:
    tenant, _ = seeded
    stranger = new_tenant("Stranger")
    health = f"/companions/{tenant.companion_id}/analytics/health"
    assert api_client.get(health, headers=bearer(tenant.owner_key)).status_code == 200
    assert api_client.get(health, headers=bearer(tenant.companion_key)).status_code == 200
    assert api_client.get(health, headers=bearer(stranger.owner_key)).status_code == 404
    assert api_client.get(health, headers=bearer(stranger.companion_key)).status_code == 404
    assert api_client.get(health, headers=bearer(user_token(tenant, "maya"))).status_code == 404
    assert api_client.get(health).status_code == 401
    board = api_client.get("/analytics/leaderboard", headers=bearer(tenant.owner_key))
    assert [c["companion_id"] for c in board.json()["companions"]] == [tenant.companion_id]
    assert api_client.get("/analytics/leaderboard", headers=bearer(tenant.companion_key)).status_code == 403
    engagement = api_client.get(
        f"/companions/{tenant.companion_id}/analytics/engagement",
        params={"limit": 3},
        headers=bearer(tenant.owner_key),
    )
    assert [u["user_id"] for u in engagement.json()["users"]][:1] == ["maya"]
    too_long = api_client.get(
        f"/companions/{tenant.companion_id}/analytics/metrics",
        params={"from": "2025-01-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
        headers=bearer(tenant.owner_key),
    )
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "validation_failed")


def test_the_dashboard_renders_in_a_real_browser(
    api_client: httpx.Client, seeded: tuple[Tenant, str], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    tenant, _ = seeded
    # Given the page as the owner fetches it through the gateway
    page = api_client.get(f"/companions/{tenant.companion_id}/dashboard", headers=bearer(tenant.owner_key))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text  # the hostile user id is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    html = tmp_path / "dashboard.html"
    html.write_text(page.text)
    # When headless Chromium renders it
    png = tmp_path / "dashboard.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1280,1000",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Then the screenshot is a page with charts: many colours, much that is not background
    width, height, rows = png_pixels(png.read_bytes())
    assert (width, height) == (1280, 1000)
    pixels = [row[i : i + 3] for row in rows for i in range(0, len(row), 3)]
    colours = set(pixels)
    background = {b"\xff\xff\xff", b"\xf3\xf4\xf6"}
    assert len(colours) > 50
    assert sum(p not in background for p in pixels) / len(pixels) > 0.05
    assert b"\x25\x63\xeb" in colours  # the bars' blue: the activity chart was drawn
    if target := os.environ.get("COMPANION_DASHBOARD_PNG"):
        shutil.copyfile(png, target)
