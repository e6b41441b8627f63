from __future__ import annotations

import gzip
import zlib

import msgpack
import pytest

from iotman.connect.body_decoder import decode_body
from iotman.core.source import DecodeMode
from iotman.errors import BadInput, InvalidBody, PayloadTooLarge, UnsupportedMediaType


def test_auto_mode_detection_order() -> None:
    packed = msgpack.packb({"a": 1})
    assert decode_body(zlib.compress(packed), content_type="", mode=DecodeMode.AUTO).values == [{"a": 1}]
    assert decode_body(packed, content_type="", mode=DecodeMode.AUTO).values == [{"a": 1}]
    assert decode_body(b" 5 ", content_type="", mode=DecodeMode.AUTO).values == [5]


def test_ndjson_lines_and_batch_flag() -> None:
    decoded = decode_body(b"1\n\n[2]\n", content_type="application/x-ndjson; charset=utf-8")
    assert decoded.values == [1, [2]]
    assert decoded.batch
    assert decode_body(b"[1,2]", content_type="application/json", batch=True).values == [1, 2]
    assert not decode_body(b"[1,2]", content_type="application/json").batch


def test_limits_apply_after_decompression() -> None:
    body = gzip.compress(b"[" + b"0," * 10_000 + b"0]")
    with pytest.raises(PayloadTooLarge):
        decode_body(body, content_type="application/json", content_encoding="gzip", limit=1000)
    with pytest.raises(PayloadTooLarge):
        decode_body(zlib.compress(b"1" * 5000), content_type="", mode=DecodeMode.AUTO, limit=1000)


def test_truncated_and_garbage_encodings() -> None:
    with pytest.raises(InvalidBody):
        decode_body(zlib.compress(b'{"a": 1}')[:-3], content_type="", content_encoding="deflate")
    with pytest.raises(InvalidBody):
        decode_body(b"\x1f\x8bgarbage", content_type="", content_encoding="gzip")
    with pytest.raises(UnsupportedMediaType):
        decode_body(b"{}", content_type="", content_encoding="compress")


def test_msgpack_values_must_have_a_json_form() -> None:
    for value in ({1: "int key"}, {"b": b"bytes"}, [float("inf")]):
        with pytest.raises(InvalidBody):
            decode_body(msgpack.packb(value), content_type="application/msgpack")
    with pytest.raises(InvalidBody, match="more than one"):
        decode_body(msgpack.packb(1) + msgpack.packb(2), content_type="application/msgpack")


def test_empty_bodies() -> None:
    with pytest.raises(BadInput, match="empty"):
        decode_body(b"", content_type="application/json")
    with pytest.raises(BadInput, match="no events"):
        decode_body(b"\n\n", content_type="application/x-ndjson")
