"""What the REST memory routes document besides their own models: the one error body, per status."""

from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable: clients may branch on it (validation_failed, not_found, ...)")
    message: str
    retryable: bool = Field(description="True when the same request may succeed later (429, 503)")
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    error: ErrorDetail


def _error(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    400: _error("The request is not valid (code validation_failed)"),
    401: _error("Missing or bad credential"),
    403: _error("The credential lacks the scope, or the user lacks the permission, or is blocked"),
    404: _error("No such companion, user or memory for this credential (another tenant's look the same)"),
    409: _error("The memory changed since the version you read"),
    429: _error("Rate limit or quota; Retry-After says when to retry"),
    503: _error("A dependency is unavailable; retry with backoff"),
}


def answers(model: type[BaseModel], *statuses: int) -> dict[int, OpenAPIResponse]:
    """A route's documented answers: ``model`` on each success status, and the error body on the rest.
    (Declaring any response replaces Powertools' default success entry, so it is named here.)"""
    success: dict[int, OpenAPIResponse] = {
        status: {
            "description": "Created" if status == 201 else "OK",
            "content": {"application/json": {"model": model}},
        }
        for status in statuses
    }
    return {**success, **ERROR_RESPONSES}
