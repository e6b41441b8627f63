"""Frames between the server and the analytics worker: a 4-byte big-endian length and a msgpack map."""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import msgpack

__all__ = ["FRAME_LENGTH", "pack_frame", "read_frame", "write_frame"]

FRAME_LENGTH = struct.Struct(">I")


def pack_frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return FRAME_LENGTH.pack(len(body)) + body


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    stream.write(pack_frame(message))
    stream.flush()


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame, or None at end of stream."""
    head = stream.read(FRAME_LENGTH.size)
    if len(head) < FRAME_LENGTH.size:
        return None
    (size,) = FRAME_LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    message: dict[str, Any] = msgpack.unpackb(body, raw=False)
    return message
