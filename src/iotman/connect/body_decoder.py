"""Request bodies to JSON values: content encodings, media types and the source's ``decode`` mode.

Rules (docs/ingest.md):
- ``Content-Encoding: gzip | deflate`` is undone first, bounded by the body limit.
- ``application/x-ndjson`` is a batch, one JSON value a line.
- ``application/msgpack`` is MessagePack.
- anything else follows the source's ``decode``: ``json``; ``msgpack``; ``deflate``
  (zlib or raw DEFLATE, then JSON); ``auto`` (zlib header -> inflate, then a first
  byte >= 0x80 -> MessagePack, else JSON).
- with ``?batch=1`` the decoded value must be an array; its items are the events.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from iotman.connect.json_codec import check_finite, has_long_numbers, parse_json
from iotman.core.source import DecodeMode
from iotman.errors import BadInput, InvalidBody, PayloadTooLarge, UnsupportedMediaType

__all__ = ["DecodedBody", "decode_body", "inflate", "media_type"]

_NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines"})
_MSGPACK = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
# x-www-form-urlencoded: what `curl -d` sends by default; the body is read by the source mode all the same
_SOURCE_MODE = frozenset(
    {"", "application/json", "text/json", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded"}
)


@dataclass(slots=True)
class DecodedBody:
    values: list[Any]
    batch: bool


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _bounded_inflate(data: bytes, wbits: int, limit: int, what: str, *, members: bool = False) -> bytes:
    """Inflate at most ``limit`` bytes; gzip may hold several members (RFC 1952), read them all.

    Bytes after the compressed data are refused, never silently dropped: a batch is
    all-or-nothing.
    """
    out = bytearray()
    remaining = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(remaining, limit + 1 - len(out))
        except zlib.error as exc:
            raise InvalidBody(f"body is not valid {what} data: {exc}", code="invalid_encoding") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the decompressed body exceeds the limit of {limit} bytes", details={"limit": limit})
        if not inflater.eof:
            raise InvalidBody(f"body is truncated {what} data", code="invalid_encoding")
        remaining = inflater.unused_data
        if not remaining:
            return bytes(out)
        if members and remaining[:2] == b"\x1f\x8b":
            continue
        raise InvalidBody(f"body has {len(remaining)} bytes after the end of the {what} data", code="trailing_data")


def inflate(data: bytes, limit: int) -> bytes:
    """zlib-wrapped or raw DEFLATE, bounded by ``limit`` bytes of output."""
    if _is_zlib(data):
        return _bounded_inflate(data, 15, limit, "zlib/DEFLATE")
    return _bounded_inflate(data, -15, limit, "DEFLATE")


def _is_zlib(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def undo_content_encoding(body: bytes, content_encoding: str, limit: int) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        if body[:2] != b"\x1f\x8b":
            raise InvalidBody("Content-Encoding is gzip but the body is not gzip data", code="invalid_encoding")
        try:
            return _bounded_inflate(body, 16 + 15, limit, "gzip", members=True)
        except gzip.BadGzipFile as exc:  # pragma: no cover - zlib reports first
            raise InvalidBody(f"body is not valid gzip data: {exc}", code="invalid_encoding") from None
    if encoding == "deflate":
        return inflate(body, limit)
    raise UnsupportedMediaType(
        f"Content-Encoding {content_encoding!r} is not supported; use gzip or deflate",
        code="unsupported_content_encoding",
        field="Content-Encoding",
    )


def _unpack_msgpack(data: bytes) -> Any:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    except msgpack.ExtraData:
        hint = "; the body looks like JSON: send it as application/json" if data.lstrip()[:1] in (b"{", b"[") else ""
        raise InvalidBody(f"body holds more than one MessagePack value{hint}", code="invalid_msgpack") from None
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
        reason = str(exc) or type(exc).__name__
        if data.lstrip()[:1] in (b"{", b"[", b'"'):
            reason += "; the body looks like JSON: send it as application/json"
        raise InvalidBody(f"body is not valid MessagePack: {reason}", code="invalid_msgpack") from None
    problem = _json_problem(value)
    if problem:
        raise InvalidBody(f"MessagePack value cannot be JSON: {problem}", code="invalid_msgpack")
    return value


def _json_problem(value: Any, depth: int = 0) -> str | None:
    if depth > 512:
        return "nested too deeply"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"map key {key!r} is not a string"
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary data has no JSON form"
    if isinstance(value, float) and not check_finite(value):
        return "NaN and infinities have no JSON form"
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return f"{type(value).__name__} has no JSON form"


_BOM = b"\xef\xbb\xbf"


def _decode_single(data: bytes, mode: DecodeMode, limit: int) -> Any:
    if mode is DecodeMode.JSON:
        return parse_json(data[3:] if data.startswith(_BOM) else data)
    if mode is DecodeMode.MSGPACK:
        return _unpack_msgpack(data)
    if mode is DecodeMode.DEFLATE:
        return parse_json(inflate(data, limit))
    # auto
    if _is_zlib(data):
        data = _bounded_inflate(data, 15, limit, "zlib/DEFLATE")
    if data.startswith(_BOM):  # a UTF-8 byte order mark announces text (JSON), not MessagePack
        return parse_json(data[3:])
    if data[:1] and data[0] >= 0x80:
        return _unpack_msgpack(data)
    return parse_json(data)


def _ndjson(data: bytes) -> list[Any]:
    if not has_long_numbers(data):
        # hot path: one orjson call a line; any error is reported by the careful loop below
        loads = orjson.loads
        try:
            return [loads(line) for line in data.split(b"\n") if line and not line.isspace()]
        except orjson.JSONDecodeError:
            pass
    values = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        stripped = line.strip()
        if stripped:
            values.append(parse_json(stripped, where="body", line=number))
    return values


def decode_body(
    body: bytes,
    *,
    content_type: str,
    content_encoding: str = "",
    mode: DecodeMode = DecodeMode.JSON,
    batch: bool = False,
    limit: int = 1 << 20,
) -> DecodedBody:
    data = undo_content_encoding(body, content_encoding, limit)
    kind = media_type(content_type)
    if kind in _NDJSON:
        values = _ndjson(data)
        if not values:
            raise BadInput("the NDJSON batch holds no events", code="empty_batch")
        return DecodedBody(values, True)
    if not data.strip():
        raise BadInput("the body is empty; send one JSON value", code="empty_body")
    if kind in _MSGPACK:
        value = _unpack_msgpack(data)
    elif kind in _SOURCE_MODE or kind.endswith("+json"):
        value = _decode_single(data, mode, limit)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind!r} is not accepted; use application/json, application/x-ndjson or application/msgpack",
            field="Content-Type",
        )
    if not batch:
        return DecodedBody([value], False)
    if not isinstance(value, list):
        raise BadInput("with ?batch=1 the body must be a JSON array of events", code="batch_not_array")
    if not value:
        raise BadInput("the batch holds no events", code="empty_batch")
    return DecodedBody(value, True)
