"""POST /api/v1/workspaces/{ws}/test/{jsonpath|constructor|jsonata|tag_rule|view} (SPEC §8)."""

# no `from __future__ import annotations`: FastAPI resolves the parameter annotations at runtime

from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import Response

from iotman.engine.engine import Engine
from iotman.errors import DefinitionInvalid

__all__ = ["add_test_tool_routes"]


def add_test_tool_routes(app: FastAPI, engine: Engine, caller: Any, body_type: Any) -> None:
    tools = engine.test_tools

    def run(ws: str, tool: str, body: Any) -> Response:
        engine.admin.workspace(ws)
        if not isinstance(body, dict):
            raise DefinitionInvalid("the body must be a JSON object", code="invalid_request")
        tool_fn = {
            "jsonpath": tools.jsonpath,
            "constructor": tools.constructor,
            "jsonata": tools.jsonata,
            "tag_rule": tools.tag_rule,
            "view": tools.view,
        }[tool]
        result = tool_fn(body)
        return Response(orjson.dumps(result), media_type="application/json")

    def jsonpath(ws: str, _: caller, body: body_type) -> Response:
        return run(ws, "jsonpath", body)

    def constructor(ws: str, _: caller, body: body_type) -> Response:
        return run(ws, "constructor", body)

    def tag_rule(ws: str, _: caller, body: body_type) -> Response:
        return run(ws, "tag_rule", body)

    def jsonata(ws: str, _: caller, body: body_type) -> Response:
        return run(ws, "jsonata", body)

    def view(ws: str, _: caller, body: body_type) -> Response:
        return run(ws, "view", body)

    base = "/api/v1/workspaces/{ws}/test/"
    routes = (
        ("jsonpath", jsonpath),
        ("constructor", constructor),
        ("jsonata", jsonata),
        ("tag_rule", tag_rule),
        ("view", view),
    )
    for name, endpoint in routes:
        app.add_api_route(base + name, endpoint, methods=["POST"], tags=["test tools"], summary=f"Test a {name}")
