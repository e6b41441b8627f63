"""CORS answer headers of export endpoints (``cors_origins``)."""

from __future__ import annotations

__all__ = ["cors_headers"]


def cors_headers(allowed: tuple[str, ...], origin: str | None) -> dict[str, str]:
    """CORS answer headers when the request's Origin is allowed (``*`` allows any)."""
    if not allowed or origin is None:
        return {}
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}
