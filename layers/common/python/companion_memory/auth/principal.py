"""Who is calling: the principal behind an owner key, a companion key or a user token, and what it may do.

REST functions read it from the Lambda authorizer's context (``principal_from_authorizer_context``) without
loading the JWT stack; ``auth.authenticator`` turns a credential into one (the authorizer and the MCP
function). What a principal may touch is decided by ``domain/memory_access.py`` (REST and MCP alike):
cross-tenant requests are answered 404 "not found", exactly like a missing resource.
"""

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from companion_memory.auth.context import (
    INVALID_CREDENTIAL,
    MISSING_CREDENTIAL,
    authorizer_context,
    rejected_by_authorizer,
    rejection,
)
from companion_memory.errors import Forbidden, Unauthorized

PrincipalKind = Literal["owner", "companion", "user"]


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: PrincipalKind
    owner_id: UUID
    companion_id: UUID | None = None
    user_id: str | None = None
    scopes: frozenset[str]
    key_id: UUID | None = None
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal (never a secret)."""
        if self.kind == "user":
            return f"user:{self.user_id}"
        return f"{self.kind}_key:{self.key_id}"

    def to_context(self) -> dict[str, str]:
        """The authorizer's simple-response ``context``: flat strings, as API Gateway passes them on."""
        return {
            "authenticated": "true",
            "kind": self.kind,
            "owner_id": str(self.owner_id),
            "companion_id": str(self.companion_id or ""),
            "user_id": self.user_id or "",
            "scopes": " ".join(sorted(self.scopes)),
            "key_id": str(self.key_id or ""),
            "token_id": self.token_id or "",
        }

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> "Principal":
        return cls(
            kind=context["kind"],
            owner_id=UUID(context["owner_id"]),
            companion_id=UUID(context["companion_id"]) if context.get("companion_id") else None,
            user_id=context.get("user_id") or None,
            scopes=frozenset(str(context.get("scopes", "")).split()),
            key_id=UUID(context["key_id"]) if context.get("key_id") else None,
            token_id=context.get("token_id") or None,
        )


def principal_from_authorizer_context(event: dict[str, Any]) -> Principal:
    """The principal the Lambda authorizer put on a REST request (payload 2.0, simple responses)."""
    if rejected_by_authorizer(event):
        raise rejection(event)
    context = authorizer_context(event)
    if not isinstance(context, dict) or "kind" not in context:
        # A route without the authorizer must never be treated as authenticated.
        raise Unauthorized(MISSING_CREDENTIAL)
    try:
        return Principal.from_context(context)
    except (KeyError, ValueError) as error:
        raise Unauthorized(INVALID_CREDENTIAL) from error


def require(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden("The credential does not grant this operation", details={"required_scope": scope})
