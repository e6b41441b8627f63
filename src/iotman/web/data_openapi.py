"""OpenAPI description of the hot /data routes (plain Starlette, so FastAPI cannot describe them)."""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_PATHS"]

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                            "position": {"type": "integer"},
                        },
                    }
                },
            }
        }
    }
}

_PATH_PARAMS: list[dict[str, Any]] = [
    {"name": "ws", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"}},
    {"name": "path", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}},
]


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "refused; see error.code", **_ERROR} for s in statuses}


DATA_PATHS: dict[str, Any] = {
    "post": {
        "tags": ["data"],
        "summary": "Append one event, or a batch (NDJSON, or a JSON array with ?batch=1)",
        "operationId": "ingest",
        "parameters": [
            *_PATH_PARAMS,
            {"name": "batch", "in": "query", "required": False, "schema": {"type": "string", "enum": ["1"]}},
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "202": {
                "description": "durably appended",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "seq": {"type": "integer"},
                                "ids": {"type": "array", "items": {"type": "string"}},
                                "first_seq": {"type": "integer"},
                                "last_seq": {"type": "integer"},
                            },
                        }
                    }
                },
            },
            **_errors(400, 401, 403, 404, 409, 413, 415, 422),
        },
    },
    "get": {
        "tags": ["data"],
        "summary": "Read a source with read_access (newest first, paged; NDJSON with Accept: application/x-ndjson)",
        "operationId": "read",
        "parameters": [
            *_PATH_PARAMS,
            {"name": "from", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "to", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
            {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
            {"name": "after_seq", "in": "query", "required": False, "schema": {"type": "integer"}},
            {"name": "before_seq", "in": "query", "required": False, "schema": {"type": "integer"}},
        ],
        "responses": {
            "200": {
                "description": "a page",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "data": {"type": "array"},
                                "next_page": {"type": ["string", "null"]},
                            },
                        }
                    }
                },
            },
            **_errors(400, 401, 403, 404),
        },
    },
}
