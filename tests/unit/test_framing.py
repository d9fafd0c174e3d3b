import struct

import pytest

from protocol.framing import FrameError, decode_frame, encode_frame


def test_round_trip_with_payload():
    data = encode_frame({"type": "audio", "speech_id": "2"}, b"\x01\x02")
    frame = decode_frame(data)
    assert frame.header == {"type": "audio", "speech_id": "2"} and frame.payload == b"\x01\x02"


def test_encoding_is_byte_exact():
    body = b'{"type":"status","status":"init_done"}'
    assert encode_frame({"type": "status", "status": "init_done"}) == struct.pack(">I", len(body)) + body


def test_non_ascii_is_utf8_and_length_counts_bytes():
    data = encode_frame({"type": "text", "content": "héllo ☃"})
    (n,) = struct.unpack(">I", data[:4])
    assert n == len(data) - 4 and "héllo ☃".encode() in data


def test_junk_suffix_becomes_payload():
    frame = decode_frame(encode_frame({"type": "create_response"}) + b"undefined")
    assert frame.type == "create_response" and frame.payload == b"undefined"


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "frame_too_short"),
        (b"\x00\x00\x01", "frame_too_short"),
        (struct.pack(">I", 100) + b"{}", "bad_length"),
        (struct.pack(">I", 3) + b"[1]", "bad_json"),
        (struct.pack(">I", 4) + b"{no}", "bad_json"),
        (struct.pack(">I", 2) + b"\xff\xfe", "bad_json"),
        (struct.pack(">I", 2) + b"{}", "missing_type"),
        (struct.pack(">I", 10) + b'{"type":1}', "missing_type"),
    ],
)
def test_malformed_frames(data, code):
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert info.value.code == code and str(info.value)


def _raw(header: bytes) -> bytes:
    return struct.pack(">I", len(header)) + header


@pytest.mark.parametrize("header", [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b'{"type":"text","x":' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"type":"text","n":' + b"9" * 5000 + b"}",
    b'{"type":"text","n":-' + b"9" * 4301 + b"}",
])
def test_hostile_json_is_bad_json_never_another_exception(header):
    with pytest.raises(FrameError) as info:
        decode_frame(_raw(header))
    assert info.value.code == "bad_json" and len(str(info.value)) < 200


def test_nesting_up_to_the_limit_and_long_numbers_below_pythons_limit_pass():
    header = b'{"type":"text","x":' + b"[" * 30 + b"]" * 30 + b',"n":' + b"9" * 4000 + b"}"
    assert decode_frame(_raw(header)).type == "text"


def test_header_larger_than_the_limit_is_refused_before_parsing():
    from protocol.framing import MAX_HEADER_BYTES

    data = struct.pack(">I", MAX_HEADER_BYTES + 1) + b" " * (MAX_HEADER_BYTES + 1)
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert info.value.code == "frame_too_large"
