"""Auth: POST /auth/token (companion key -> user JWT), API key management with an owner key (its companions'
keys, and the organisation's own owner keys), the JWKS and the OAuth protected-resource metadata (RFC 9728) of
the MCP endpoint."""

from typing import Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from companion_memory import wiring
from companion_memory.auth.principal import principal_from_authorizer_context
from companion_memory.auth.tokens import ALL_SCOPES
from companion_memory.config import IdentitySettings, settings_for
from companion_memory.http.resolver import build_resolver, json_response
from companion_memory.models.identity import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyList,
    ApiKeyRotate,
    IssuedApiKey,
    OwnerKeyCreate,
    TokenRequest,
    TokenResponse,
)
from companion_memory.observability import logger, metrics, tracer

settings = settings_for(IdentitySettings)
settings.issuer  # noqa: B018 (fail at init, closed, when the public URL is not configured)
app = build_resolver()
_NO_STORE = {"Cache-Control": "no-store"}


@app.post("/auth/token", summary="Exchange a companion key for a user token")
def issue_token(request: TokenRequest) -> Response[TokenResponse]:
    # This route has no gateway authorizer: it authenticates the companion key itself (and answers 401).
    principal = wiring.authenticator().authenticate_bearer(app.current_event.headers.get("authorization"))
    return json_response(200, wiring.identity_service().issue_user_token(principal, request), _NO_STORE)


@app.post("/companions/<companion_id>/api-keys", summary="Create a companion key (shown once)")
def create_api_key(companion_id: UUID, request: ApiKeyCreate) -> Response[IssuedApiKey]:
    issued = wiring.identity_service().create_api_key(_principal(), companion_id, request)
    return json_response(201, issued, _NO_STORE)


@app.get("/companions/<companion_id>/api-keys", summary="List a companion's keys (no secrets)")
def list_api_keys(companion_id: UUID) -> ApiKeyList:
    return ApiKeyList(api_keys=wiring.identity_service().list_api_keys(_principal(), companion_id))


@app.post("/companions/<companion_id>/api-keys/<key_id>/revoke", summary="Revoke a key")
def revoke_api_key(companion_id: UUID, key_id: UUID) -> ApiKey:
    return wiring.identity_service().revoke_api_key(_principal(), companion_id, key_id)


@app.post(
    "/companions/<companion_id>/api-keys/<key_id>/rotate", summary="Rotate a key (old one kept for a grace)"
)
def rotate_api_key(
    companion_id: UUID, key_id: UUID, request: ApiKeyRotate | None = None
) -> Response[IssuedApiKey]:
    grace = (request or ApiKeyRotate()).grace_seconds
    issued = wiring.identity_service().rotate_api_key(_principal(), companion_id, key_id, grace)
    return json_response(201, issued, _NO_STORE)


@app.post("/owner/api-keys", summary="Create another owner key of the caller's organisation (shown once)")
def create_owner_key(request: OwnerKeyCreate) -> Response[IssuedApiKey]:
    return json_response(201, wiring.identity_service().create_owner_key(_principal(), request), _NO_STORE)


@app.get("/owner/api-keys", summary="List the organisation's owner keys (no secrets)")
def list_owner_keys() -> ApiKeyList:
    return ApiKeyList(api_keys=wiring.identity_service().list_owner_keys(_principal()))


@app.post("/owner/api-keys/<key_id>/revoke", summary="Revoke an owner key (never the last usable one)")
def revoke_owner_key(key_id: UUID) -> ApiKey:
    return wiring.identity_service().revoke_owner_key(_principal(), key_id)


@app.post("/owner/api-keys/<key_id>/rotate", summary="Rotate an owner key (old one kept for a grace)")
def rotate_owner_key(key_id: UUID, request: ApiKeyRotate | None = None) -> Response[IssuedApiKey]:
    grace = (request or ApiKeyRotate()).grace_seconds
    issued = wiring.identity_service().rotate_owner_key(_principal(), key_id, grace)
    return json_response(201, issued, _NO_STORE)


@app.get("/.well-known/jwks.json", summary="Public keys that verify user tokens")
def jwks() -> Response[dict[str, Any]]:
    return json_response(200, wiring.identity_service().jwks(), {"Cache-Control": "public, max-age=300"})


@app.get("/.well-known/oauth-protected-resource", summary="RFC 9728 metadata of the MCP resource")
@app.get("/.well-known/oauth-protected-resource/mcp", summary="RFC 9728 metadata (path-suffixed form)")
def protected_resource() -> Response[dict[str, Any]]:
    metadata = {
        "resource": settings.mcp_resource,
        "authorization_servers": [settings.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": sorted(ALL_SCOPES - {"admin"}),
        "jwks_uri": f"{settings.issuer}/.well-known/jwks.json",
        "resource_name": "Companion Memory",
    }
    return json_response(200, metadata, {"Cache-Control": "public, max-age=300"})


def _principal() -> Any:
    return principal_from_authorizer_context(app.current_event.raw_event)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
