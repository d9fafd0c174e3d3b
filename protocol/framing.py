"""Binary framing of the Voi protocol: ``uint32 big-endian N | N bytes of JSON | payload``.

Every message in both directions is one binary websocket frame. The JS client appends the junk bytes
``undefined`` to control messages; that is simply a payload that message types without one ignore.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from common.errors import CodedError
from common.safe_json import parse_json

HEADER_LENGTH_BYTES = 4
MAX_HEADER_BYTES = 4 << 20  # the JSON of one message: room for the largest image data URL (protocol/limits.py)
_LENGTH = struct.Struct(">I")


class FrameError(CodedError, ValueError):
    """A frame that cannot be decoded. ``code`` is the machine-readable error code sent to the client."""

    default_code = "bad_frame"


@dataclass(frozen=True)
class Frame:
    """One decoded message: its JSON header (always has a string ``type``) and the raw bytes after it."""

    header: dict[str, Any]
    payload: bytes = field(default=b"", repr=False)

    @property
    def type(self) -> str:
        return self.header["type"]


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Encode one message. The JSON is compact UTF-8 (non-ASCII kept as UTF-8, not escaped)."""
    body = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body + payload


def decode_frame(data: bytes) -> Frame:
    """Decode one binary frame, raising FrameError with a human-readable reason when it is malformed."""
    if len(data) < HEADER_LENGTH_BYTES:
        raise FrameError(f"frame of {len(data)} bytes is shorter than its 4-byte length prefix", "frame_too_short")
    (length,) = _LENGTH.unpack_from(data)
    end = HEADER_LENGTH_BYTES + length
    if end > len(data):
        raise FrameError(
            f"frame declares {length} bytes of JSON but only {len(data) - HEADER_LENGTH_BYTES} follow the prefix",
            "bad_length",
        )
    if length > MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {length} bytes exceeds the {MAX_HEADER_BYTES}-byte limit", "frame_too_large")
    try:
        header = parse_json(data[HEADER_LENGTH_BYTES:end])
    except ValueError as exc:  # bad UTF-8 or JSON, too deep, a number too long: never anything else
        raise FrameError(f"frame header is not acceptable JSON: {exc}", "bad_json") from None
    if not isinstance(header, dict):
        raise FrameError(f"frame header must be a JSON object, got {type(header).__name__}", "bad_json")
    msg_type = header.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise FrameError("frame header has no string 'type' field", "missing_type")
    return Frame(header=header, payload=bytes(data[end:]))
