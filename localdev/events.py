"""The events API Gateway (HttpApi, payload 2.0) and Lambda function URLs send, and their response mapping.

Pure functions, no sockets: the local gateway feeds them what it received, and unit tests feed them
hand-made requests. Shapes follow AWS's documented payloads; keys AWS omits when empty are omitted here too.
"""

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from localdev.lambda_runtime import ACCOUNT_ID
from localdev.template import Route

DEFAULT_STAGE = "$default"
API_PAYLOAD_LIMIT = 10 * 1024 * 1024  # HttpApi's request payload quota
URL_PAYLOAD_LIMIT = 6 * 1024 * 1024  # a function URL carries at most Lambda's synchronous payload

# Bodies of these types reach the function as text; everything else is base64, as API Gateway does.
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/x-www-form-urlencoded",
        "application/graphql",
    }
)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str  # as sent, still percent-encoded
    raw_query: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # as sent: any case, names may repeat
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]

    @property
    def route_key(self) -> str:
        return "$default" if self.route.path == "$default" else f"{self.route.method} {self.route.path}"


class InvalidLambdaResponse(ValueError):
    """The function answered something API Gateway could not turn into an HTTP response."""


def stable_id(seed: str, length: int) -> str:
    """A deterministic lower-case id (like an API id or a function URL id) derived from a logical id."""
    return base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode().lower()[:length]


def api_domain(api_id: str, region: str) -> str:
    return f"{api_id}.execute-api.{region}.amazonaws.com"


def url_domain(url_id: str, region: str) -> str:
    return f"{url_id}.lambda-url.{region}.on.aws"


# ------------------------------------------------------------------------------------------ routing


def match_route(routes: tuple[Route, ...] | list[Route], method: str, raw_path: str) -> RouteMatch | None:
    """The route API Gateway would pick: the most specific path, then an exact method over ANY,
    greedy ``{proxy+}`` routes after every full match, and ``$default`` last."""
    segments = [unquote(segment) for segment in raw_path.split("/")[1:]]
    best: tuple[tuple[int, ...], RouteMatch] | None = None
    for route in routes:
        if route.method not in (method.upper(), "ANY"):
            continue
        if route.path == "$default":
            params: dict[str, str] | None = {}
            rank: tuple[int, ...] = (3,)
        else:
            params, rank = _match_path(route.path, segments)
        if params is None:
            continue
        # Path specificity decides first; among equal paths the declared method beats ANY.
        key = (*rank, int(route.method == "ANY"))
        if best is None or key < best[0]:
            best = (key, RouteMatch(route, params))
    return best[1] if best else None


def _match_path(pattern: str, segments: list[str]) -> tuple[dict[str, str] | None, tuple[int, ...]]:
    """Path parameters when ``segments`` fit ``pattern``, and a rank (lower = more specific)."""
    parts = pattern.split("/")[1:]
    params: dict[str, str] = {}
    ranks: list[int] = []
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[index:]
            if not rest or rest == [""]:
                return None, ()
            params[part[1:-2]] = "/".join(rest)
            return params, (1, *ranks, 2)  # every greedy match ranks after every full match
        if index >= len(segments):
            return None, ()
        if part.startswith("{") and part.endswith("}"):
            if not segments[index]:
                return None, ()
            params[part[1:-1]] = segments[index]
            ranks.append(1)
        elif part == segments[index]:
            ranks.append(0)
        else:
            return None, ()
    if len(parts) != len(segments):
        return None, ()
    return params, (0, *ranks)


# ------------------------------------------------------------------------------------------ events


def http_api_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    api_id: str,
    region: str,
    stage: str = DEFAULT_STAGE,
    now: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The HttpApi payload 2.0 event for a matched route (the authorizer context is added by the caller)."""
    event = _base_event(
        request,
        route_key=match.route_key,
        account_id=ACCOUNT_ID,
        api_id=api_id,
        domain=api_domain(api_id, region),
        stage=stage,
        now=now,
        # API Gateway's request ids are short base64 strings, not UUIDs.
        request_id=request_id or base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
    )
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    return event


def function_url_event(
    request: HttpRequest,
    *,
    url_id: str,
    region: str,
    now: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The function URL event (payload 2.0, route ``$default``); AuthType NONE carries no authorizer."""
    return _base_event(
        request,
        route_key="$default",
        account_id="anonymous",  # what AWS sends when the URL's AuthType is NONE
        api_id=url_id,
        domain=url_domain(url_id, region),
        stage=DEFAULT_STAGE,
        now=now,
        request_id=request_id or str(uuid.uuid4()),
    )


def authorizer_event(route_event: dict[str, Any], route_arn: str, identity: list[str]) -> dict[str, Any]:
    """The REQUEST authorizer event (payload 2.0) for a route event: the same request, without its body."""
    event = {key: value for key, value in route_event.items() if key not in ("body", "isBase64Encoded")}
    return {"version": "2.0", "type": "REQUEST", "routeArn": route_arn, "identitySource": identity, **event}


def route_arn(region: str, api_id: str, stage: str, method: str, raw_path: str) -> str:
    return f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{api_id}/{stage}/{method.upper()}{raw_path}"


def _base_event(
    request: HttpRequest,
    *,
    route_key: str,
    account_id: str,
    api_id: str,
    domain: str,
    stage: str,
    now: datetime | None,
    request_id: str,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    headers, cookies = normalise_headers(request.headers)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": request.method.upper(),
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if request.body:
        body, encoded = encode_body(request.body, headers.get("content-type"))
        event["body"] = body
        event["isBase64Encoded"] = encoded
    else:
        event["isBase64Encoded"] = False
    return event


def normalise_headers(raw: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], list[str]]:
    """Headers lower-cased with repeats comma-joined, and the cookies split out (payload 2.0 moves them)."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in raw:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers, cookies


def query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded query parameters; a repeated name's values comma-joined, as payload 2.0 does."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """The event's ``body`` and ``isBase64Encoded``: text types as text, anything else base64."""
    mime = (content_type or "").split(";")[0].strip().lower()
    textual = mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))
    if textual:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # declared text but not UTF-8: only base64 carries it intact
    return base64.b64encode(body).decode("ascii"), True


# ------------------------------------------------------------------------------------------ responses


def map_response(result: Any) -> HttpResponse:
    """Turn a handler's return value into the HTTP response, as payload 2.0 integrations do.

    A dict with ``statusCode`` is a full response; anything else is JSON for a 200, the way API Gateway
    and function URLs treat a function that returns plain data.
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        return HttpResponse(200, (("content-type", "application/json"),), json.dumps(result).encode())
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidLambdaResponse(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise InvalidLambdaResponse(f"multiValueHeaders[{name!r}] is not a list")
        headers.extend((str(name), _header_value(value)) for value in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise InvalidLambdaResponse("cookies is not a list")
    headers.extend(("set-cookie", str(cookie)) for cookie in cookies)
    return HttpResponse(status, tuple(headers), _response_body(result))


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidLambdaResponse(f"header value {value!r} is not a string")


def _response_body(result: dict[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidLambdaResponse("body is not a string")
    if result.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError as error:
            raise InvalidLambdaResponse("body is not valid base64") from error
    return body.encode("utf-8")


def error_response(status: int, message: str) -> HttpResponse:
    """API Gateway's own error answers: a JSON ``message``."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, (("content-type", "application/json"),), body)
