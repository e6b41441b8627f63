"""Trigger definitions (SPEC §4.3): a function fired for each matching event of a source."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iotman.core.definition_fields import UrlName

__all__ = ["TriggerDefinition"]


class TriggerDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/triggers`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="Letters, digits, `_`, `-`.")
    source: str = Field(description="The source whose events it watches (events appended after it is created).")
    condition: str = Field(
        default="true",
        description="JSONata over `{payload, metadata, received_at, tags, source, id, seq}`; truthy fires.",
    )
    function: str = Field(description="The function fired, with the event envelope as its input.")
    reply_to: str | None = Field(
        default=None,
        description='A source each firing appends `{"trigger", "event_id", "ok", "result" | "error"}` to.',
    )
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)
