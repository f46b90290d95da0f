"""Every sample event in events/ runs through `python -m localdev.invoke` against the local stack.

The files are globbed, so a new one is picked up; each needs an expectation in CHECKS, so none is added
without saying what it should do.
"""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from companion_memory.models.upkeep import UpkeepSummary
from localdev.template import ROOT, default

pytestmark = pytest.mark.integration

EVENTS = ROOT / "events"
EVENT_FILES = sorted(EVENTS.rglob("*.json"))


class CloudFormation:
    """Stands in for the presigned ResponseURL: records the custom resource's PUT."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?X-Amz-Signature=test"


@pytest.fixture
def cloudformation() -> Iterator[CloudFormation]:
    cfn = CloudFormation()
    thread = threading.Thread(target=cfn.server.serve_forever, daemon=True)
    thread.start()
    yield cfn
    cfn.server.shutdown()
    cfn.server.server_close()


def _json_body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


def _health_is_ok(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 200, answer
    body = _json_body(answer)
    assert body["status"] == "ok"
    assert all(dependency["status"] == "up" for dependency in body["dependencies"].values())


def _mcp_asks_for_a_token(answer: dict[str, Any], _: CloudFormation) -> None:
    # A static sample cannot carry a live user token: the MCP endpoint answers with its OAuth challenge.
    assert answer["statusCode"] == 401, answer
    challenge = {key.lower(): value for key, value in answer["headers"].items()}["www-authenticate"]
    assert challenge.startswith("Bearer resource_metadata=")
    assert "/.well-known/oauth-protected-resource/mcp" in challenge
    assert _json_body(answer)["error"]["code"] == "unauthorized"


def _mcp_get_is_405(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 405, answer
    assert "POST" in {key.lower(): value for key, value in answer["headers"].items()}["allow"]


def _migrations_succeed(answer: Any, cfn: CloudFormation) -> None:
    assert answer is None  # a custom resource answers CloudFormation, not its caller
    assert len(cfn.bodies) == 1
    response = cfn.bodies[0]
    assert response["Status"] == "SUCCESS", response
    assert response["LogicalResourceId"] == "Migrations"
    assert response["RequestId"] == "7c6f1e2a-3b4d-4c5e-8f9a-0b1c2d3e4f50"
    assert isinstance(response["Data"]["Version"], int)


def _token_without_a_valid_key_is_401(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 401, answer
    assert answer["headers"]["WWW-Authenticate"].startswith("Bearer ")
    assert _json_body(answer)["error"]["code"] == "unauthorized"


def _authorizer_admits_a_bad_key_as_unauthenticated(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer == {"isAuthorized": True, "context": {"authenticated": "false"}}


def _another_owners_companion_is_404(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 404, answer
    assert _json_body(answer)["error"]["code"] == "not_found"


def _a_companion_that_does_not_exist_is_404(answer: dict[str, Any], _: CloudFormation) -> None:
    # The sample's companion key names a companion the stack does not have: the same 404 as another
    # tenant's companion, before any memory is read or written.
    assert answer["statusCode"] == 404, answer
    assert _json_body(answer)["error"]["code"] == "not_found"


def _analytics_run_reports_what_it_did(answer: dict[str, Any], _: CloudFormation) -> None:
    # The stack's companions (whatever other tests left) are scored; none of them enables auto-pause.
    keys = {"companions", "scored", "paused", "not_enough_data", "resumed_recently", "completed"}
    assert set(answer) == keys, answer
    assert answer["scored"] == answer["companions"]
    assert answer["completed"] is True


def _an_owner_without_companions_lists_none(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 200, answer
    assert _json_body(answer) == {"companions": [], "next_cursor": None}


def _an_import_without_a_header_is_400_naming_line_1(answer: dict[str, Any], _: CloudFormation) -> None:
    assert answer["statusCode"] == 400, answer
    error = _json_body(answer)["error"]
    assert error["code"] == "validation_failed"
    assert error["message"].startswith("line 1:")


def _cleanup_run_reports_what_it_did(answer: dict[str, Any], _: CloudFormation) -> None:
    # Every companion the stack holds (whatever other tests left) is walked; the answer is the summary.
    assert set(answer) == set(UpkeepSummary.model_fields), answer
    assert answer["completed"] is True
    assert all(count >= 0 for name, count in answer.items() if name != "completed")


# events/ file -> what its handler must answer
CHECKS: dict[str, Callable[[Any, CloudFormation], None]] = {
    "health/get.json": _health_is_ok,
    "mcp/url-initialize.json": _mcp_asks_for_a_token,
    "mcp/api-get.json": _mcp_get_is_405,
    "migrate/create.json": _migrations_succeed,
    "auth/token.json": _token_without_a_valid_key_is_401,
    "authorizer/request.json": _authorizer_admits_a_bad_key_as_unauthenticated,
    "companions/get.json": _another_owners_companion_is_404,
    "companions/list.json": _an_owner_without_companions_lists_none,
    "companions/pause.json": _another_owners_companion_is_404,
    "companions/delete.json": _another_owners_companion_is_404,
    "companions/erase-user.json": _another_owners_companion_is_404,
    "companions/export.json": _another_owners_companion_is_404,
    "companions/import.json": _an_import_without_a_header_is_400_naming_line_1,
    "analytics/health.json": _another_owners_companion_is_404,
    "analytics/scheduled.json": _analytics_run_reports_what_it_did,
    "memories/list.json": _a_companion_that_does_not_exist_is_404,
    "memories/store.json": _a_companion_that_does_not_exist_is_404,
    "session_cleanup/scheduled.json": _cleanup_run_reports_what_it_did,
}


def _function_for(path: Path) -> str:
    code = ROOT / "functions" / path.relative_to(EVENTS).parts[0]
    return next(f.logical_id for f in default().functions.values() if f.code_uri == code)


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: str(p.relative_to(EVENTS)))
def test_each_sample_event_gets_the_expected_answer(
    path: Path, stack: object, cloudformation: CloudFormation, tmp_path: Path
) -> None:
    name = str(path.relative_to(EVENTS))
    assert name in CHECKS, f"events/{name} has no expectation in CHECKS"
    event = json.loads(path.read_text())
    if "ResponseURL" in event:  # CloudFormation's presigned URL becomes the local recorder
        event["ResponseURL"] = cloudformation.url
    path = tmp_path / path.name
    path.write_text(json.dumps(event))
    # The stack fixture's environment is the one to use, not a developer's .local/stack.env.
    command = [sys.executable, "-m", "localdev.invoke", _function_for(Path(EVENTS / name)), str(path)]
    command += ["--env-file", str(tmp_path / "no-stack.env"), "--verbose"]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=os.environ.copy(), cwd=ROOT
    )
    print(run.stderr)  # the handler's log, shown by pytest when a check fails
    assert run.returncode == 0
    CHECKS[name](json.loads(run.stdout), cloudformation)
