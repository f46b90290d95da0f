"""Write the OpenAPI documents of the REST API, one per REST function, generated from its resolver.

The routes, parameters and models are each handler's own declarations (functions/<name>/app.py), so a
document cannot say anything the code does not do; tests/unit/test_openapi_documents.py fails when a
committed file is stale or misses a route of template.yaml.

    python scripts/openapi.py          # rewrite docs/openapi*.json
    python scripts/openapi.py --check  # exit 1 when one is stale
"""

import argparse
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_ERRORS = (
    'Errors are `{"error": {"code", "message", "retryable"}}`; another tenant\'s companion, user or '
    "memory is 404, exactly like a missing one."
)


@dataclass(frozen=True)
class Api:
    function: str  # the folder under functions/
    document: Path
    title: str
    description: str


APIS = (
    Api(
        "memories",
        ROOT / "docs" / "openapi.json",
        "Companion Memory - memories",
        "The memories of one user of one companion. Authenticate with `Authorization: Bearer` and a "
        "companion key (ck_..., any user of its companion), a user token from POST /auth/token (its own "
        "user only) or an owner key (read and export). " + _ERRORS,
    ),
    Api(
        "companions",
        ROOT / "docs" / "openapi-companions.json",
        "Companion Memory - companions",
        "Companions and their users: create, versions, pause, archive, delete, user erasure, export and "
        "import. Authenticate with `Authorization: Bearer` and an owner key (ok_...); a companion key reads "
        "its own companion. " + _ERRORS,
    ),
    Api(
        "auth",
        ROOT / "docs" / "openapi-auth.json",
        "Companion Memory - keys and tokens",
        "API keys (owner and companion), user tokens for MCP and the memory routes, public keys and "
        "protected-resource metadata. " + _ERRORS,
    ),
    Api(
        "analytics",
        ROOT / "docs" / "openapi-analytics.json",
        "Companion Memory - analytics",
        "Metrics time series, engagement, leaderboard, health and the HTML dashboard of an owner's "
        "companions. Authenticate with `Authorization: Bearer` and an owner key (or the companion's own key "
        "with memories:read). " + _ERRORS,
    ),
)


def document(api: Api) -> str:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    # The auth function's settings need the service's public URL at import; the document does not use it.
    os.environ.setdefault("PUBLIC_BASE_URL", "https://api.example.com")
    spec = importlib.util.spec_from_file_location(
        f"{api.function}_app_openapi", ROOT / "functions" / api.function / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = module.app.get_openapi_json_schema(
        title=api.title,
        version="1",
        description=api.description,
        security_schemes={"bearer": HTTPBearer(bearerFormat="API key or JWT")},
        security=[{"bearer": []}],
    )
    parsed: dict[str, Any] = json.loads(raw)
    return json.dumps(parsed, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a document is stale")
    args = parser.parse_args()
    stale = 0
    for api in APIS:
        text, name = document(api), api.document.relative_to(ROOT)
        if not args.check:
            api.document.write_text(text)
            print(f"wrote {name}")
        elif not api.document.exists() or api.document.read_text() != text:
            print(f"{name} is stale: run `make openapi`", file=sys.stderr)
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
