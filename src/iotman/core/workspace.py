"""Workspaces: the unit of isolation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from iotman.errors import DefinitionInvalid

__all__ = ["SLUG_PATTERN", "Workspace", "check_slug"]

SLUG_PATTERN = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    slug: str
    uuid: str
    created_at_us: int


def check_slug(slug: object) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise DefinitionInvalid(
            "slug must be 1 to 64 characters of a-z, 0-9 and '-'",
            code="invalid_slug",
            field="slug",
        )
    return slug
