"""Write docs/openapi.json: the OpenAPI document of the REST memory API, generated from its resolver.

The routes, parameters and models are the handler's own declarations (functions/memories/app.py), so the
document cannot say anything the code does not do; tests/unit/test_memories_openapi.py fails when the
committed file is stale.

    python scripts/openapi.py          # rewrite docs/openapi.json
    python scripts/openapi.py --check  # exit 1 when it is stale
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "functions" / "memories" / "app.py"
DOCUMENT = ROOT / "docs" / "openapi.json"


def document() -> str:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    spec = importlib.util.spec_from_file_location("memories_app_openapi", HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = module.app.get_openapi_json_schema(
        title="Companion Memory - memories",
        version="1",
        description=(
            "The memories of one user of one companion. Authenticate with `Authorization: Bearer` and a "
            "companion key (ck_..., any user of its companion), a user token from POST /auth/token (its own "
            'user only) or an owner key (read and export). Errors are `{"error": {"code", "message", '
            '"retryable"}}`; another tenant\'s companion, user or memory is 404, exactly like a missing one.'
        ),
        security_schemes={"bearer": HTTPBearer(bearerFormat="API key or JWT")},
        security=[{"bearer": []}],
    )
    parsed: dict[str, Any] = json.loads(raw)
    return json.dumps(parsed, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/openapi.json is stale")
    args = parser.parse_args()
    text = document()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
