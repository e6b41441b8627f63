"""Scopes: ``namespace:action`` strings, internal ``iotman:<resource>:<action>`` ones and presets."""

from __future__ import annotations

import re

from iotman.errors import DefinitionInvalid

__all__ = ["PRESETS", "SCOPE_PATTERN", "check_scope", "grants", "preset_scopes"]

SCOPE_PATTERN = re.compile(r"[a-z0-9_.*-]+(:[a-z0-9_.*-]+)+")

PRESETS: dict[str, tuple[str, ...]] = {
    "read-only": ("iotman:*:read",),
    "operator": ("iotman:*:read", "iotman:data:write", "iotman:quarantine:read"),
    "full-access": ("iotman:*",),
}


def check_scope(scope: object, field: str = "scope") -> str:
    if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope) or len(scope) > 128:
        raise DefinitionInvalid(
            f"{scope!r} is not a scope: expected namespace:action (lowercase letters, digits, _ . -)",
            code="invalid_scope",
            field=field,
        )
    return scope


def preset_scopes(preset: str) -> tuple[str, ...]:
    try:
        return PRESETS[preset]
    except KeyError:
        raise DefinitionInvalid(
            f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}", code="unknown_preset", field="preset"
        ) from None


def _matches(granted: str, required: str) -> bool:
    if granted == required:
        return True
    g = granted.split(":")
    r = required.split(":")
    for i, part in enumerate(g):
        if part == "*" and i == len(g) - 1 and len(r) >= len(g):
            return all(a in ("*", b) for a, b in zip(g[:i], r[:i], strict=True))
        if i >= len(r) or (part != "*" and part != r[i]):
            return False
    return len(g) == len(r)


def grants(granted: tuple[str, ...] | list[str], required: str) -> bool:
    """Whether any granted scope (``*`` stands for one segment, or all the rest at the end) covers ``required``."""
    return any(_matches(g, required) for g in granted)
