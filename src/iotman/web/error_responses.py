"""Errors to HTTP answers: ``{"error": {"code", "message", "field"?, "position"?, ...}}``."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from iotman import errors

__all__ = ["error_response", "status_of"]

_STATUS: tuple[tuple[type[errors.IotmanError], int], ...] = (
    (errors.BadInput, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.ValidationFailed, 422),
    (errors.Unavailable, 503),
    (errors.StorageFailure, 500),
)


def status_of(exc: errors.IotmanError) -> int:
    if isinstance(exc, errors.FunctionAborted):
        return exc.status
    if isinstance(exc, errors.FunctionCallFailed):
        return status_of(exc.cause)
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: errors.IotmanError, headers: dict[str, str] | None = None) -> Response:
    status = status_of(exc)
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="iotman"')
    return Response(
        orjson.dumps({"error": exc.to_dict()}), status_code=status, media_type="application/json", headers=all_headers
    )
