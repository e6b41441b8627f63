"""Cron job definitions (SPEC §4.4): a function run on a schedule, once per tick."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iotman.core.definition_fields import UrlName

__all__ = ["CronJobDefinition"]


class CronJobDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/cron-jobs`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="Letters, digits, `_`, `-`.")
    schedule: str | None = Field(default=None, description="A 5-field cron expression (`0 * * * *`).")
    timezone: str = Field(default="UTC", description="The time zone the schedule is read in (`Europe/Paris`).")
    every_seconds: int | None = Field(default=None, ge=1, le=31_536_000, description="Instead of a schedule.")
    function: str = Field(description="The function run at each tick.")
    input: Any = Field(default=None, description="The function's input (`$`, `$input`).")
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError(f"{value!r} is not a 5-field cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (IANA names, such as Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _one_way(self) -> CronJobDefinition:
        if (self.schedule is None) == (self.every_seconds is None):
            raise ValueError("give either schedule or every_seconds")
        return self

    def last_tick_us(self, now_us: int) -> int:
        """The latest tick at or before ``now_us``."""
        if self.every_seconds is not None:
            step = self.every_seconds * 1_000_000
            return now_us - now_us % step
        assert self.schedule is not None
        now = datetime.fromtimestamp(now_us / 1_000_000, ZoneInfo(self.timezone))
        if croniter.match(self.schedule, now.replace(second=0, microsecond=0)) and now.second == 0 == now.microsecond:
            return now_us
        previous: datetime = croniter(self.schedule, now).get_prev(datetime)
        return int(previous.astimezone(UTC).timestamp() * 1_000_000)

    def next_tick_us(self, now_us: int) -> int:
        """The first tick after ``now_us``."""
        if self.every_seconds is not None:
            step = self.every_seconds * 1_000_000
            return now_us - now_us % step + step
        assert self.schedule is not None
        now = datetime.fromtimestamp(now_us / 1_000_000, ZoneInfo(self.timezone))
        following: datetime = croniter(self.schedule, now).get_next(datetime)
        return int(following.astimezone(UTC).timestamp() * 1_000_000)
