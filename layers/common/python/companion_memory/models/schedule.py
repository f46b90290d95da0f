"""What the scheduled jobs (the cleanup's upkeep, the analytics schedule) walk: companions across tenants.

The walk itself sees ids and statuses only (``scheduled_companions``, migrations/0012); a companion's owner
and config are read in that companion's own tenant context, one at a time (``ports.CompanionDirectory``).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class ScheduledCompanion:
    """A companion a schedule visits, read in its own context: its owner, status and stored config."""

    id: UUID
    owner_id: UUID
    status: str
    config: dict[str, Any]
