"""docs/openapi*.json are what the REST functions' resolvers generate (`make openapi`, never by hand), and
each covers every route template.yaml gives its function."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.openapi import APIS, Api

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_documents_are_the_ones_the_routes_generate() -> None:
    # A child process: importing the handlers builds (and caches) their settings, which must not leak into
    # the other tests of this session.
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("api", APIS, ids=lambda api: api.function)
def test_every_route_of_the_function_is_in_its_document(api: Api) -> None:
    from localdev.template import default

    template = default()
    function = next(f for f in template.functions.values() if f.code_uri == ROOT / "functions" / api.function)
    own = [route for route in template.routes if route.function == function.logical_id]
    routes = {(route.method, route.path) for route in own}
    documented = {
        (method.upper(), path)
        for path, operations in json.loads(api.document.read_text())["paths"].items()
        for method in operations
    }
    assert routes == documented
    if api.function != "auth":  # the public keys and resource metadata are public by design
        assert all(route.auth is not None for route in own)
