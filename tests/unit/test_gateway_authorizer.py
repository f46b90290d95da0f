"""The Lambda authorizer step: identity sources, reading the answer, caching it."""

import pytest

from localdev.authorizer import AuthorizerCache, InvalidAuthorizerResponse, decide, identity_values
from localdev.template import Authorizer

SIMPLE = Authorizer(
    name="Auth", function="AuthFn", identity_sources=("$request.header.Authorization",), simple_responses=True
)
ARN = "arn:aws:execute-api:us-east-1:123456789012:abc/$default/GET/items/1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identity_sources_are_read_from_headers_query_and_context() -> None:
    authorizer = Authorizer(
        name="A",
        function="F",
        identity_sources=(
            "$request.header.Authorization",
            "$request.querystring.key",
            "$context.http.sourceIp",
        ),
    )
    event = {
        "headers": {"authorization": "Bearer t"},
        "queryStringParameters": {"key": "k"},
        "requestContext": {"http": {"sourceIp": "10.0.0.1"}},
    }
    assert identity_values(authorizer, event) == ["Bearer t", "k", "10.0.0.1"]


@pytest.mark.parametrize("headers", [{}, {"authorization": ""}])
def test_a_missing_or_empty_identity_source_means_no_identity(headers: dict[str, str]) -> None:
    assert identity_values(SIMPLE, {"headers": headers}) is None


def test_a_simple_response_decides_and_carries_its_context() -> None:
    decision = decide(SIMPLE, {"isAuthorized": True, "context": {"user": "u1"}}, ARN)
    assert decision.allowed
    assert decision.context == {"user": "u1"}
    assert not decide(SIMPLE, {"isAuthorized": False}, ARN).allowed


@pytest.mark.parametrize(
    "answer", [None, "yes", {"isAuthorized": "true"}, {}, {"isAuthorized": True, "context": "c"}]
)
def test_an_invalid_simple_response_is_refused(answer: object) -> None:
    with pytest.raises(InvalidAuthorizerResponse):
        decide(SIMPLE, answer, ARN)


def _policy(*statements: tuple[str, str]) -> dict[str, object]:
    return {
        "principalId": "u",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
                for effect, resource in statements
            ],
        },
    }


def test_without_simple_responses_an_iam_policy_decides_and_deny_wins() -> None:
    iam = Authorizer(name="Iam", function="F", identity_sources=SIMPLE.identity_sources)
    wildcard = "arn:aws:execute-api:us-east-1:123456789012:abc/*/GET/items/*"
    assert decide(iam, _policy(("Allow", wildcard)), ARN).allowed
    assert not decide(iam, _policy(("Allow", "arn:aws:execute-api:*:*:abc/*/POST/*")), ARN).allowed
    assert not decide(iam, _policy(("Allow", wildcard), ("Deny", ARN)), ARN).allowed
    with pytest.raises(InvalidAuthorizerResponse):
        decide(iam, {"isAuthorized": True}, ARN)


def test_answers_are_cached_per_identity_for_the_ttl() -> None:
    # Given a cache with a 300 s authorizer and one answer stored for token a
    clock = FakeClock()
    cache = AuthorizerCache(clock)
    cache.put(SIMPLE, ["a"], {"isAuthorized": True})
    # Then the answer is found for a, not for b, and disappears after the TTL
    assert cache.get(SIMPLE, ["a"]) == {"isAuthorized": True}
    assert cache.get(SIMPLE, ["b"]) is None
    clock.now += 299
    assert cache.get(SIMPLE, ["a"]) is not None
    clock.now += 1
    assert cache.get(SIMPLE, ["a"]) is None


@pytest.mark.parametrize(
    "authorizer",
    [
        Authorizer(name="NoTtl", function="F", identity_sources=SIMPLE.identity_sources, ttl_seconds=0),
        Authorizer(name="NoSources", function="F"),
    ],
)
def test_a_zero_ttl_or_no_identity_source_disables_the_cache(authorizer: Authorizer) -> None:
    cache = AuthorizerCache(FakeClock())
    cache.put(authorizer, [], {"isAuthorized": True})
    assert cache.get(authorizer, []) is None


def test_two_authorizers_never_share_answers() -> None:
    other = Authorizer(name="Other", function="AuthFn", identity_sources=SIMPLE.identity_sources)
    cache = AuthorizerCache(FakeClock())
    cache.put(SIMPLE, ["a"], {"isAuthorized": True})
    assert cache.get(other, ["a"]) is None
