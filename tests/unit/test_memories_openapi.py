"""docs/openapi.json is what the memory routes generate: written by `make openapi`, never by hand."""

import json
from pathlib import Path

from scripts.openapi import DOCUMENT, document

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_openapi_document_is_the_one_the_routes_generate() -> None:
    assert DOCUMENT.read_text() == document(), "docs/openapi.json is stale: run `make openapi`"


def test_every_memory_route_of_the_template_is_in_the_document() -> None:
    from localdev.template import default

    template = default()
    memories = next(f for f in template.functions.values() if f.code_uri == ROOT / "functions" / "memories")
    routes = {
        (route.method, route.path) for route in template.routes if route.function == memories.logical_id
    }
    documented = {
        (method.upper(), path)
        for path, operations in json.loads(DOCUMENT.read_text())["paths"].items()
        for method in operations
    }
    assert routes == documented
    assert all(route.auth is not None for route in template.routes if route.function == memories.logical_id)
