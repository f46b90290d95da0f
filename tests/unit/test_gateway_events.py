"""The events the local gateway builds, how it picks a route, and how it maps a handler's answer."""

import base64
import json
from datetime import UTC, datetime

import pytest

from localdev import events
from localdev.events import HttpRequest, InvalidLambdaResponse, map_response, match_route
from localdev.template import Route

NOW = datetime(2026, 1, 15, 9, 30, 0, tzinfo=UTC)


def _route(path: str, method: str = "GET") -> Route:
    return Route(function="Fn", method=method, path=path)


def _event(request: HttpRequest, route: Route) -> dict[str, object]:
    match = match_route([route], request.method, request.raw_path)
    assert match is not None
    return events.http_api_event(
        request, match, api_id="abc123defg", region="us-east-1", now=NOW, request_id="r"
    )


# ------------------------------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/pets/dog", "GET /pets/dog"),  # a literal path beats a path variable
        ("GET", "/pets/cat", "GET /pets/{name}"),  # a path variable beats a greedy one
        ("POST", "/pets/cat", "ANY /pets/{name}"),  # ANY catches the methods not declared
        ("GET", "/pets/cat/toys", "GET /pets/{proxy+}"),  # the longer literal prefix wins among greedy ones
        ("GET", "/other/thing", "ANY /{proxy+}"),
        ("DELETE", "/pets/dog", "ANY /pets/{name}"),  # an exact path with another method does not match
    ],
)
def test_the_most_specific_route_wins_as_in_api_gateway(method: str, path: str, expected: str) -> None:
    routes = [
        _route("/{proxy+}", "ANY"),
        _route("/pets/{proxy+}"),
        _route("/pets/{name}", "ANY"),
        _route("/pets/{name}"),
        _route("/pets/dog"),
    ]
    match = match_route(routes, method, path)
    assert match is not None
    assert match.route_key == expected


def test_an_exact_method_beats_any_on_the_same_path() -> None:
    routes = [_route("/mcp", "ANY"), _route("/mcp", "POST")]
    post, get = match_route(routes, "POST", "/mcp"), match_route(routes, "GET", "/mcp")
    assert post is not None
    assert post.route.method == "POST"
    assert get is not None
    assert get.route.method == "ANY"


def test_the_default_route_catches_what_nothing_else_matches() -> None:
    routes = [_route("$default", "ANY"), _route("/health")]
    match = match_route(routes, "PUT", "/anything/at/all")
    assert match is not None
    assert match.route_key == "$default"
    assert match_route(routes, "GET", "/health") is not None


def test_no_route_means_no_match() -> None:
    assert match_route([_route("/health")], "GET", "/healthz") is None
    assert match_route([_route("/items/{id}")], "GET", "/items/") is None  # a variable is never empty
    assert match_route([_route("/items/{proxy+}")], "GET", "/items") is None  # nor is a greedy one


def test_path_parameters_are_decoded_and_greedy_ones_keep_their_slashes() -> None:
    match = match_route([_route("/c/{companion_id}/files/{proxy+}")], "GET", "/c/a%20b/files/x/y%2Fz")
    assert match is not None
    assert match.path_parameters == {"companion_id": "a b", "proxy": "x/y/z"}


# ------------------------------------------------------------------------------------------ events


def test_an_http_api_event_has_the_payload_2_0_shape() -> None:
    request = HttpRequest(
        "GET",
        "/items/42",
        "a=1&a=2&b=x%20y",
        headers=(("Host", "h"), ("User-Agent", "ua"), ("X-Multi", "1"), ("x-multi", "2")),
        source_ip="10.0.0.1",
    )
    event = _event(request, _route("/items/{id}"))
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["headers"] == {"host": "h", "user-agent": "ua", "x-multi": "1,2"}
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "cookies" not in event
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "abc123defg",
        "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123defg",
        "http": {
            "method": "GET",
            "path": "/items/42",
            "protocol": "HTTP/1.1",
            "sourceIp": "10.0.0.1",
            "userAgent": "ua",
        },
        "requestId": "r",
        "routeKey": "GET /items/{id}",
        "stage": "$default",
        "time": "15/Jan/2026:09:30:00 +0000",
        "timeEpoch": 1768469400000,
    }


def test_cookies_leave_the_headers_for_their_own_list() -> None:
    request = HttpRequest("GET", "/x", headers=(("Cookie", "a=1; b=2"), ("cookie", "c=3")))
    event = _event(request, _route("/x"))
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        ("application/json", False),
        ("text/plain; charset=utf-8", False),
        ("application/vnd.api+json", False),
        ("application/x-www-form-urlencoded", False),
        ("application/octet-stream", True),
        ("image/png", True),
        (None, True),
    ],
)
def test_bodies_are_text_for_text_types_and_base64_otherwise(content_type: str | None, encoded: bool) -> None:
    headers = (("content-type", content_type),) if content_type else ()
    event = _event(HttpRequest("POST", "/x", headers=headers, body=b'{"k":"v"}'), _route("/x", "POST"))
    assert event["isBase64Encoded"] is encoded
    body = str(event["body"])
    assert (base64.b64decode(body) if encoded else body.encode()) == b'{"k":"v"}'


def test_declared_text_that_is_not_utf8_travels_as_base64() -> None:
    event = _event(
        HttpRequest("POST", "/x", headers=(("content-type", "text/plain"),), body=b"\xff"),
        _route("/x", "POST"),
    )
    assert event["isBase64Encoded"] is True
    assert event["body"] == "/w=="


def test_a_function_url_event_has_no_route_or_authorizer() -> None:
    event = events.function_url_event(
        HttpRequest("POST", "/mcp", body=b"{}", headers=(("content-type", "application/json"),)),
        url_id="u" * 32,
        region="eu-west-1",
        now=NOW,
    )
    assert event["routeKey"] == "$default"
    context = event["requestContext"]
    assert context["domainName"] == "u" * 32 + ".lambda-url.eu-west-1.on.aws"
    assert context["routeKey"] == "$default"
    assert context["stage"] == "$default"
    assert context["accountId"] == "anonymous"
    assert "authorizer" not in context
    assert "pathParameters" not in event
    assert event["body"] == "{}"


def test_the_authorizer_event_is_the_request_without_its_body() -> None:
    route_event = _event(
        HttpRequest("POST", "/x", headers=(("content-type", "text/plain"),), body=b"secret"),
        _route("/x", "POST"),
    )
    arn = events.route_arn("us-east-1", "abc123defg", "$default", "POST", "/x")
    event = events.authorizer_event(route_event, arn, ["token"])
    assert event["type"] == "REQUEST"
    assert event["version"] == "2.0"
    assert event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:abc123defg/$default/POST/x"
    assert event["identitySource"] == ["token"]
    assert "body" not in event
    assert "isBase64Encoded" not in event
    assert event["headers"] == route_event["headers"]


# ------------------------------------------------------------------------------------------ responses


def test_a_full_response_maps_status_headers_cookies_and_body() -> None:
    response = map_response(
        {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-n": 1},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "cookies": ["s=1; HttpOnly"],
            "body": "hello",
        }
    )
    assert response.status == 201
    assert response.headers == (
        ("content-type", "text/plain"),
        ("x-n", "1"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("set-cookie", "s=1; HttpOnly"),
    )
    assert response.body == b"hello"


def test_a_base64_body_is_decoded() -> None:
    response = map_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}
    )
    assert response.body == b"\x00\xff"


@pytest.mark.parametrize("result", [{"a": 1}, [1, 2], "text", None, {"status": 404}])
def test_an_answer_without_status_code_is_a_200_with_the_answer_as_json(result: object) -> None:
    response = map_response(result)
    assert response.status == 200
    assert ("content-type", "application/json") in response.headers
    assert json.loads(response.body) == result


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "two hundred"},
        {"statusCode": 999},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "!!", "isBase64Encoded": True},
        {"statusCode": 200, "headers": {"x": {"nested": 1}}},
        {"statusCode": 200, "cookies": "a=1"},
    ],
)
def test_a_malformed_answer_is_refused(result: object) -> None:
    with pytest.raises(InvalidLambdaResponse):
        map_response(result)


def test_gateway_errors_are_a_json_message() -> None:
    response = events.error_response(404, "Not Found")
    assert response.status == 404
    assert response.body == b'{"message":"Not Found"}'
