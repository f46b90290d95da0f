"""The HttpApi Lambda authorizer (payload 2.0, simple responses) of every REST route.

Accepts owner keys, companion keys and user tokens from the Authorization header only (the identity source;
a token in the query string is never read). The principal reaches the route as the response's ``context``.
A bad credential is admitted too, with a context that says so: a simple response can only deny with 403,
and the issue's contract is 401; the REST resolver answers such requests 401 before any route code runs.
API Gateway caches each answer (good or bad) per Authorization value for the template's ReauthorizeEvery.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.auth.context import UNAUTHENTICATED_CONTEXT, inactive_companion_context
from companion_memory.config import IdentitySettings, settings_for
from companion_memory.errors import CompanionInactive, DependencyUnavailable, Unauthorized
from companion_memory.observability import logger, metrics, tracer

settings_for(IdentitySettings).issuer  # noqa: B018 (fail at init when the public URL is not configured)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    header = (event.get("headers") or {}).get("authorization")
    try:
        principal = wiring.authenticator().authenticate_bearer(header)
    except Unauthorized:
        return {"isAuthorized": True, "context": UNAUTHENTICATED_CONTEXT}
    except CompanionInactive as error:
        # A good credential of a paused/archived companion: refused by the resolver with the reason's code.
        return {"isAuthorized": True, "context": inactive_companion_context(error.code)}
    except DependencyUnavailable:
        # Raising makes API Gateway answer 500 and cache nothing; an answer would be cached as a 401.
        logger.warning("authorizer dependency unavailable")
        raise
    return {"isAuthorized": True, "context": principal.to_context()}
