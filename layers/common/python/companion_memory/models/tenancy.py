"""Who a database transaction acts for: the tenant context row-level security reads."""

from typing import Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator

ALL_USERS = "*"


class TenantScope(BaseModel):
    """The rows a unit of work may see. Fields left unset grant nothing.

    ``user_id`` is one end user of ``companion_id``, or ``ALL_USERS`` for companion-wide work
    (backend exports, upkeep); an end user's own credentials never get ``ALL_USERS``.
    """

    model_config = ConfigDict(frozen=True)

    owner_id: UUID | None = None
    companion_id: UUID | None = None
    user_id: str | None = None

    @model_validator(mode="after")
    def _user_needs_companion(self) -> Self:
        if self.user_id is not None and self.companion_id is None:
            raise ValueError("a user scope needs its companion")
        return self

    def settings(self) -> dict[str, str]:
        """The ``app.*`` settings for set_config; unset fields become '' (read back as NULL)."""
        return {
            "app.owner_id": str(self.owner_id or ""),
            "app.companion_id": str(self.companion_id or ""),
            "app.user_id": self.user_id or "",
        }
