"""The HttpApi Lambda authorizer step: identity sources, the decision, and the result cache.

Pure logic (the gateway invokes the function); behaviour follows API Gateway's REQUEST authorizers with
payload format 2.0: a missing identity source is a 401 without invoking, a simple response's
``isAuthorized`` (or an IAM policy, without simple responses) decides, ``context`` reaches the route.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from localdev.template import Authorizer


class InvalidAuthorizerResponse(ValueError):
    """The authorizer answered something API Gateway rejects (it then answers 500)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    context: dict[str, Any] | None = None


def identity_values(authorizer: Authorizer, route_event: dict[str, Any]) -> list[str] | None:
    """The values of the authorizer's identity sources, or None when one is missing or empty."""
    values: list[str] = []
    for source in authorizer.identity_sources:
        value = _resolve(source, route_event)
        if not value:
            return None
        values.append(value)
    return values


def _resolve(source: str, event: dict[str, Any]) -> str | None:
    prefix, _, name = source.partition(".")
    if prefix == "$request":
        where, _, key = name.partition(".")
        found: str | None = None
        if where == "header":
            found = event.get("headers", {}).get(key.lower())
        elif where == "querystring":
            found = event.get("queryStringParameters", {}).get(key)
        return found
    if prefix == "$context":
        value: Any = event.get("requestContext", {})
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else str(value)
    return None  # $stageVariables: the local $default stage has none


def decide(authorizer: Authorizer, answer: Any, route_arn: str) -> Decision:
    """Read the authorizer's answer: a simple response, or an IAM policy when simple responses are off."""
    if not isinstance(answer, dict):
        raise InvalidAuthorizerResponse("the authorizer did not return an object")
    context = answer.get("context")
    if context is not None and not isinstance(context, dict):
        raise InvalidAuthorizerResponse("context is not an object")
    if authorizer.simple_responses:
        allowed = answer.get("isAuthorized")
        if not isinstance(allowed, bool):
            raise InvalidAuthorizerResponse("isAuthorized is missing or not a boolean")
        return Decision(allowed, context)
    return Decision(_policy_allows(answer.get("policyDocument"), route_arn), context)


def _policy_allows(policy: Any, route_arn: str) -> bool:
    """IAM evaluation reduced to what an authorizer policy can say: an explicit Deny wins over an Allow."""
    if not isinstance(policy, dict) or not isinstance(policy.get("Statement"), list):
        raise InvalidAuthorizerResponse("policyDocument.Statement is missing")
    allowed = False
    for statement in policy["Statement"]:
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        if not any(fnmatchcase("execute-api:Invoke", action) for action in actions):
            continue
        if not any(fnmatchcase(route_arn, resource) for resource in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(item) for item in value or []]


class AuthorizerCache:
    """Authorizer answers per (authorizer, identity values), kept for the authorizer's TTL.

    Denials are cached like grants, as API Gateway does; failures (exceptions, invalid answers) are not.
    Without identity sources or with a TTL of 0, nothing is cached.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, authorizer: Authorizer, identity: list[str]) -> Any | None:
        if not self._enabled(authorizer):
            return None
        key = (authorizer.name, tuple(identity))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, answer = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return answer

    def put(self, authorizer: Authorizer, identity: list[str], answer: Any) -> None:
        if self._enabled(authorizer):
            with self._lock:
                expires = self._clock() + authorizer.ttl_seconds
                self._entries[(authorizer.name, tuple(identity))] = (expires, answer)

    @staticmethod
    def _enabled(authorizer: Authorizer) -> bool:
        return authorizer.ttl_seconds > 0 and bool(authorizer.identity_sources)
