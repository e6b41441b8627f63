"""Fuzzing the decoders: any bytes in, only iotman errors out; any JSON value survives storage."""

from __future__ import annotations

import gzip
import zlib

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.connect.body_decoder import decode_body
from iotman.connect.json_codec import dump_json, load_json, parse_json
from iotman.core.source import DecodeMode
from iotman.errors import IotmanError

CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/x-ndjson", "application/msgpack", "", "text/csv", "application/json; x=1"]
)
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "identity", "br"])
MODES = st.sampled_from(list(DecodeMode))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300), ctype=CONTENT_TYPES, encoding=ENCODINGS, mode=MODES, batch=st.booleans())
def test_arbitrary_bytes_give_values_or_iotman_errors(
    body: bytes, ctype: str, encoding: str, mode: DecodeMode, batch: bool
) -> None:
    try:
        decoded = decode_body(body, content_type=ctype, content_encoding=encoding, mode=mode, batch=batch, limit=4096)
    except IotmanError as exc:
        refusal = exc
    else:
        for value in decoded.values:
            assert load_json(dump_json(value)) == value
        return
    assert refusal.code
    assert refusal.message


@settings(max_examples=300)
@given(value=json_values)
def test_json_values_round_trip_through_every_format(value: object) -> None:
    text = dump_json(value)
    assert parse_json(text.encode()) == value
    assert decode_body(text.encode(), content_type="application/json").values == [value]
    assert decode_body(gzip.compress(text.encode()), content_type="", content_encoding="gzip").values == [value]
    auto = decode_body(zlib.compress(text.encode()), content_type="", mode=DecodeMode.AUTO)
    assert auto.values == [value]
    if _fits_msgpack(value):
        packed = msgpack.packb(value)
        assert decode_body(packed, content_type="application/msgpack").values == [value]


def _fits_msgpack(value: object) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64
    if isinstance(value, list):
        return all(_fits_msgpack(v) for v in value)
    if isinstance(value, dict):
        return all(_fits_msgpack(v) for v in value.values())
    return True
