"""Fuzzing the ingest route in-process: no 5xx, every refusal has a code, the log stays consistent."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.storage.ports import EventQuery
from tests.conftest import Api

REFUSALS = {400, 401, 403, 404, 409, 413, 415, 422}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    ctype=st.sampled_from(["application/json", "application/x-ndjson", "application/msgpack", "text/plain", "x/y"]),
    encoding=st.sampled_from(["", "gzip", "deflate"]),
    batch=st.sampled_from(["", "1"]),
    key=st.one_of(st.none(), st.text(alphabet="abc", min_size=1, max_size=3)),
    path=st.sampled_from(["fuzz", "strict", "missing"]),
)
def test_ingest_never_fails_with_5xx(
    api: Api, body: bytes, ctype: str, encoding: str, batch: str, key: str | None, path: str
) -> None:
    if not api.engine.admin.list_sources(api.ws):
        api.source(name="fuzz", decode="auto", max_body_bytes=150)
        api.source(name="strict", schema={"type": "object", "required": ["v"]})
    headers = {"Content-Encoding": encoding} if encoding else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = api.post(path, body, ctype, headers=headers, params={"batch": batch} if batch else None)
    if response.status_code == 202:
        answer = response.json()
        assert "seq" in answer or "first_seq" in answer
    else:
        assert response.status_code in REFUSALS, response.text
        error = response.json()["error"]
        assert error["code"]
        assert error["message"]
    ws = api.engine.admin.workspace(api.ws)
    rows = api.engine.store.read_events(EventQuery(ws.id, limit=100_000, descending=False))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        json.loads(row.payload)
        json.loads(row.metadata)
