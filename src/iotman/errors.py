"""The one error tree of iotman.

Every error carries a stable ``code`` (part of the public contract: clients and
tests match on it), a human ``message`` saying what was wrong, and optionally the
``field`` and ``position`` it concerns plus structured ``details``. Only the
delivery layers (web, cli) map these classes to HTTP statuses or exit codes.

    IotmanError
    ├── BadInput                 the request itself is malformed (HTTP 400)
    │   ├── InvalidJson          body is not JSON; position says where
    │   ├── InvalidBody          body cannot be decoded (encoding, msgpack, deflate)
    │   └── InvalidQuery         a query parameter is wrong
    ├── ValidationFailed         well-formed but not acceptable (HTTP 422)
    │   ├── DefinitionInvalid    a definition field is wrong
    │   └── SchemaRejected       an event fails its source's JSON Schema
    ├── PayloadTooLarge          (HTTP 413)
    ├── UnsupportedMediaType     (HTTP 415)
    ├── NotFound                 (HTTP 404)
    ├── Conflict                 (HTTP 409)
    ├── Unauthenticated          missing or invalid credentials (HTTP 401)
    ├── Forbidden                valid credentials without the right (HTTP 403)
    ├── Unavailable              shutting down or store unreachable (HTTP 503)
    ├── FunctionAborted          a function's $fail / $require (HTTP: the status it gave)
    ├── FunctionFailed           a function's body failed or hit a limit (HTTP 500)
    ├── FunctionCallFailed       a function's $iotman_call was refused (HTTP: the refusal's)
    ├── ConfigurationError       a setting or store URL is wrong (CLI exit 2)
    └── StorageFailure           the store failed unexpectedly (HTTP 500)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadInput",
    "ConfigurationError",
    "Conflict",
    "DefinitionInvalid",
    "Forbidden",
    "FunctionAborted",
    "FunctionCallFailed",
    "FunctionFailed",
    "InvalidBody",
    "InvalidJson",
    "InvalidQuery",
    "IotmanError",
    "NotFound",
    "PayloadTooLarge",
    "SchemaRejected",
    "StorageFailure",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class IotmanError(Exception):
    """Base of every error iotman raises on purpose."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        position: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.position = position
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of an API answer."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.position is not None:
            out["position"] = self.position
        out.update(self.details)
        return out


class BadInput(IotmanError):
    code = "bad_input"


class InvalidJson(BadInput):
    code = "invalid_json"


class InvalidBody(BadInput):
    code = "invalid_body"


class InvalidQuery(BadInput):
    code = "invalid_query"


class ValidationFailed(IotmanError):
    code = "validation_failed"


class DefinitionInvalid(ValidationFailed):
    code = "invalid_definition"


class SchemaRejected(ValidationFailed):
    code = "schema_rejected"


class PayloadTooLarge(IotmanError):
    code = "payload_too_large"


class UnsupportedMediaType(IotmanError):
    code = "unsupported_media_type"


class NotFound(IotmanError):
    code = "not_found"


class Conflict(IotmanError):
    code = "conflict"


class Unauthenticated(IotmanError):
    code = "unauthenticated"


class Forbidden(IotmanError):
    code = "forbidden"


class Unavailable(IotmanError):
    code = "unavailable"


class ConfigurationError(IotmanError):
    code = "invalid_setting"


class StorageFailure(IotmanError):
    code = "storage_failure"


class FunctionAborted(IotmanError):
    """A function stopped itself (``$fail``, or ``$require`` on a falsy value): its answer is
    ``status`` with ``{"error": {"status", "message", "code"}}``; nothing it did is kept."""

    code = "function_aborted"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "code": self.code}


class FunctionFailed(IotmanError):
    """A function's body failed (a JSONata error, a limit): an authoring error, not the caller's."""

    code = "function_failed"


class FunctionCallFailed(IotmanError):
    """A function's ``$iotman_call`` was refused: the function stops with the refusal (its
    status and code), and says which call it was."""

    def __init__(self, cause: IotmanError, call: str) -> None:
        super().__init__(cause.message, code=cause.code, field=cause.field, position=cause.position)
        self.cause = cause
        self.call = call

    def to_dict(self) -> dict[str, Any]:
        return {**self.cause.to_dict(), "call": self.call}
