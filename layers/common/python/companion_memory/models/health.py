from typing import Literal

from pydantic import BaseModel, Field


class DependencyHealth(BaseModel):
    status: Literal["up", "down"]
    latency_ms: float = Field(description="Time the probe took, in milliseconds")
    error: str | None = Field(default=None, description="Why the probe failed (no secrets, no traces)")


class HealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    dependencies: dict[str, DependencyHealth]

    @property
    def healthy(self) -> bool:
        return self.status == "ok"
