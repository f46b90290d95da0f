"""The lifecycle's rules without a database: the version bump, cursors, and how a paused companion's refusal
reaches a REST caller (the authorizer's context -> the resolver's answer)."""

import copy
import json
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory.auth.context import inactive_companion_context, rejection
from companion_memory.domain.companions import (
    _binding,
    _decode_cursor,
    _encode_cursor,
    changed_sections,
    next_version,
    version_bump,
)
from companion_memory.errors import (
    CompanionArchived,
    CompanionPaused,
    Unauthorized,
    ValidationFailed,
    companion_inactive,
)
from companion_memory.http.resolver import build_resolver
from companion_memory.models.companion_config import CompanionConfig
from companion_memory.models.identity import Companion
from localdev.template import ROOT

EVENT = json.loads((ROOT / "events/companions/get.json").read_text())


def _companion(**config: Any) -> Companion:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Companion(
        id=uuid4(),
        owner_id=uuid4(),
        name="Ava",
        config=CompanionConfig.of(config).stored(),
        isolation_level="standard",
        status="active",
        version="1.4.2",
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize(
    ("change", "requested", "expected"),
    [
        ({"limits": {"requests_per_minute": 5}}, None, "1.5.0"),
        ({"capabilities": {"memory_types": ["fact"]}}, None, "1.5.0"),
        ({"retention": {"max_age_days": 30}}, None, "1.5.0"),
        ({"personality": {"tone": "dry"}}, None, "1.4.3"),
        ({"personality": {"tone": "dry"}}, "major", "2.0.0"),
        ({"limits": {"requests_per_minute": 5}}, "patch", "1.5.0"),  # a request never lowers the bump
    ],
)
def test_the_bump_is_minor_for_what_it_may_do_and_patch_for_who_it_is(
    change: dict[str, Any], requested: Any, expected: str
) -> None:
    current = _companion()
    config = CompanionConfig.of({**current.config, **change}).stored()
    changed = changed_sections(current, current.name, config)
    assert next_version(current.version, version_bump(changed, requested)) == expected


def test_a_rename_alone_is_a_patch_and_no_change_is_nothing_to_version() -> None:
    current = _companion()
    assert changed_sections(current, "Bea", current.config) == ["name"]
    assert version_bump(["name"], None) == "patch"
    assert changed_sections(current, current.name, current.config) == []


def test_versions_count_as_numbers_not_text() -> None:
    assert next_version("1.9.9", "patch") == "1.9.10"
    assert next_version("1.9.9", "minor") == "1.10.0"


def test_a_cursor_reads_back_only_with_the_binding_it_was_made_for() -> None:
    owner = uuid4()
    cursor = _encode_cursor({"u": "alice"}, _binding(owner, "users", "c1"))
    assert _decode_cursor(cursor, _binding(owner, "users", "c1")) == {"u": "alice"}
    for binding in (_binding(uuid4(), "users", "c1"), _binding(owner, "users", "c2")):
        with pytest.raises(ValidationFailed):
            _decode_cursor(cursor, binding)


@pytest.mark.parametrize("cursor", ["", "x", "not base64!.abc", "e30.AAAA", "e30"])
def test_garbage_cursors_are_a_validation_error_not_a_crash(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        _decode_cursor(cursor, "b")
    assert refused.value.details == {"reason": "invalid_cursor"}


def test_each_inactive_status_has_its_own_stable_code() -> None:
    assert isinstance(companion_inactive("paused"), CompanionPaused)
    assert isinstance(companion_inactive("archived"), CompanionArchived)
    assert companion_inactive("deleted").code == "companion_deleted"
    assert companion_inactive("paused").status == 403


def test_the_authorizers_reason_becomes_the_callers_error_and_a_forged_reason_is_just_401() -> None:
    # Given the contexts the authorizer sends for a paused companion's key and for a bad key
    paused = {"requestContext": {"authorizer": {"lambda": inactive_companion_context("companion_paused")}}}
    forged = {"requestContext": {"authorizer": {"lambda": {"authenticated": "false", "reason": "admin"}}}}
    # Then the first says why, and an unknown reason reads as an invalid credential
    assert isinstance(rejection(paused), CompanionPaused)
    assert isinstance(rejection(forged), Unauthorized)


def test_a_rest_request_of_a_paused_companions_key_is_403_companion_paused_before_any_route_runs() -> None:
    # Given a resolver whose route would fail the test if it ran
    app = build_resolver()

    @app.get("/companions/<companion_id>")
    def _route(companion_id: str) -> dict[str, str]:
        raise AssertionError("route code ran for a refused request")

    event = copy.deepcopy(EVENT)
    event["requestContext"]["authorizer"] = {"lambda": inactive_companion_context("companion_paused")}
    # When the request arrives
    answer = app.resolve(event, cast(LambdaContext, None))
    # Then it is refused with the reason's code, and no WWW-Authenticate (the credential itself is fine)
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"])["error"]["code"] == "companion_paused"
    assert "WWW-Authenticate" not in answer["headers"]
