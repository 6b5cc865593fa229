"""The wire format (engine/link/protocol.py): round trips, exact reads, clean EOF vs truncation,
size limits, the dtype allowlist, and a fuzz test of the frame parser."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.link import protocol as P
from engine.core.cameras import Camera


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "features": rng.random((1000, 24)).astype(np.float16),
        "labels": rng.integers(-1, 50, 1000).astype(np.int32),
        "mask": rng.random(33) > 0.5,
        "big_endian": np.arange(7, dtype=">f8"),
        "strided": rng.random((10, 6)).astype(np.float32)[:, ::2],
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.int64(7),
        "u8": np.arange(5, dtype=np.uint8),
    }


def test_round_trip_keeps_values_dtypes_and_shapes() -> None:
    arrays = _arrays()
    data = P.frame_bytes(P.request_header(5, "click", {"u": 1.5, "level": "fine"}), arrays)
    (msg,) = P.decode_frames(data)
    assert msg.kind == "request" and msg.id == 5 and msg.command == "click"
    assert msg.header["args"] == {"u": 1.5, "level": "fine"}
    assert "arrays" not in msg.header
    assert list(msg.arrays) == list(arrays)
    for name, a in arrays.items():
        got = msg.arrays[name]
        assert got.shape == np.shape(a), name
        assert np.array_equal(got, a), name
        assert got.dtype.byteorder in ("<", "=", "|"), name
        assert got.flags.c_contiguous and got.flags.aligned, name
    assert msg.arrays["big_endian"].dtype == np.dtype("<f8")


def test_arrays_are_aligned_in_the_payload() -> None:
    data = P.frame_bytes(P.reply_header(1, "x"), {"a": np.zeros(3, np.uint8), "b": np.ones(5, np.float64)})
    _, hlen, plen = P.PREFIX.unpack(data[:16])
    assert plen == 64 + 40  # b starts at the next multiple of 64
    (msg,) = P.decode_frames(data)
    assert np.array_equal(msg.arrays["b"], np.ones(5))


def test_disallowed_dtypes_are_refused_on_both_ends() -> None:
    for bad in (np.array(["a", "b"]), np.array([1 + 2j]), np.array([object()], dtype=object), np.zeros(3, np.uint16)):
        with pytest.raises(TypeError, match="dtype"):
            P.encode_frame(P.reply_header(1, "x"), {"bad": bad})
    # a peer that lists a dtype outside the allowlist
    header = json.dumps({"v": 1, "kind": "reply", "id": 1, "command": "x", "ok": True,
                         "arrays": [{"name": "o", "dtype": "object", "shape": [1], "nbytes": 8}]}).encode()
    with pytest.raises(P.ProtocolError, match="dtype"):
        P.decode_frames(P.PREFIX.pack(P.MAGIC, len(header), 8) + header + bytes(8))


def test_no_pickle_anywhere() -> None:
    src = open(P.__file__, encoding="utf-8").read()
    assert "pickle" not in src.replace("Nothing is ever pickled", "")
    with pytest.raises(TypeError):
        P.encode_frame({"v": 1, "kind": "request", "id": 1, "command": "x", "args": {"a": object()}})
    with pytest.raises(TypeError, match="arrays"):
        P.encode_frame({"v": 1, "kind": "request", "id": 1, "command": "x", "args": {"a": np.zeros(3)}})


def test_clean_eof_versus_truncation() -> None:
    data = P.frame_bytes(P.event_header(3, "train", "progress", {"iteration": 1}), {"x": np.arange(100.0)})
    assert P.decode_frames(b"") == []
    assert len(P.decode_frames(data * 3)) == 3
    for cut in (1, 15, 16, 20, len(data) - 1):
        with pytest.raises(P.TruncatedFrame):
            P.decode_frames(data[:cut])
        with pytest.raises(P.TruncatedFrame):
            P.decode_frames(data + data[:cut])


def test_frame_limits() -> None:
    data = P.frame_bytes(P.reply_header(1, "get_features"), {"f": np.zeros((100, 24), np.float16)})
    with pytest.raises(P.FrameTooLarge):
        P.decode_frames(data, max_frame_bytes=len(data) - 1)
    assert P.decode_frames(data, max_frame_bytes=len(data))
    # a prefix announcing an absurd payload is refused before anything is allocated
    huge = P.PREFIX.pack(P.MAGIC, 10, 2**62)
    with pytest.raises(P.FrameTooLarge):
        P.decode_frames(huge + b"{}" * 5)
    with pytest.raises(P.ProtocolError, match="header length"):
        P.decode_frames(P.PREFIX.pack(P.MAGIC, P.MAX_HEADER_BYTES + 1, 0))


@pytest.mark.parametrize(
    "header, match",
    [
        (b"\xff\xfe not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"kind": "request", "id": 1, "command": "x"}', "version"),
        (b'{"v": 1, "kind": "shout", "id": 1, "command": "x"}', "kind"),
        (b'{"v": 1, "kind": "request", "id": -1, "command": "x"}', "id"),
        (b'{"v": 1, "kind": "request", "id": 1, "command": 5}', "command"),
        (b'{"v": 1, "kind": "request", "id": 1, "command": "x", "arrays": [{"name": "a", "dtype": "float32", "shape": [-1], "nbytes": 4}]}', "shape"),
        (b'{"v": 1, "kind": "request", "id": 1, "command": "x", "arrays": [{"name": "a", "dtype": "float32", "shape": [2], "nbytes": 4}]}', "nbytes"),
    ],
)
def test_malformed_headers_are_protocol_errors(header: bytes, match: str) -> None:
    with pytest.raises(P.ProtocolError, match=match):
        P.decode_frames(P.PREFIX.pack(P.MAGIC, len(header), 0) + header)


def test_payload_length_must_match_the_arrays() -> None:
    header = json.dumps({"v": 1, "kind": "reply", "id": 1, "command": "x", "ok": True,
                         "arrays": [{"name": "a", "dtype": "float32", "shape": [2], "nbytes": 8}]}).encode()
    with pytest.raises(P.ProtocolError, match="payload"):
        P.decode_frames(P.PREFIX.pack(P.MAGIC, len(header), 16) + header + bytes(16))


def test_absurdly_nested_header_is_a_protocol_error() -> None:
    header = b"[" * 60000
    with pytest.raises(P.ProtocolError, match="JSON"):
        P.decode_frames(P.PREFIX.pack(P.MAGIC, len(header), 0) + header)


def test_garbage_is_not_a_frame() -> None:
    with pytest.raises(P.ProtocolError, match="not a Click-Gaussian"):
        P.decode_frames(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_auth_digest_is_keyed_by_token_and_nonce() -> None:
    nonce = "00" * 32
    d = P.auth_digest("secret-token-0123456789", nonce)
    assert P.check_auth("secret-token-0123456789", nonce, d)
    assert not P.check_auth("secret-token-0123456788", nonce, d)
    assert not P.check_auth("secret-token-0123456789", "01" * 32, d)
    assert not P.check_auth("secret-token-0123456789", nonce, None)
    assert not P.check_auth("secret-token-0123456789", nonce, "\udcff")


def test_camera_wire_round_trip() -> None:
    viewmat = np.eye(4)
    viewmat[:3, 3] = (0.1, -0.2, 3.0)
    cam = Camera(viewmat, [[500, 0, 320], [0, 510, 240], [0, 0, 1]], 640, 480, "view7")
    back = P.camera_from_wire(json.loads(json.dumps(P.camera_to_wire(cam))))
    assert np.array_equal(back.viewmat, cam.viewmat) and np.array_equal(back.K, cam.K)
    assert (back.width, back.height, back.name) == (640, 480, "view7")
    bad = P.camera_to_wire(cam)
    bad["viewmat"] = [[1, 2], [3, 4]]
    with pytest.raises(ValueError):
        P.camera_from_wire(bad)
    bad = P.camera_to_wire(cam)
    bad["width"] = 0
    with pytest.raises(ValueError):
        P.camera_from_wire(bad)


def test_large_array_over_a_real_socket_pair() -> None:
    a, b = socket.socketpair()
    feats = np.random.default_rng(1).random((200_000, 24)).astype(np.float16)
    try:
        t = threading.Thread(target=P.send_message, args=(a, P.reply_header(9, "get_features"), {"features": feats}))
        t.start()
        msg = P.recv_message(b)
        t.join(10)
        assert np.array_equal(msg.arrays["features"], feats)
        a.close()
        assert P.recv_message(b) is None  # clean close between frames
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------- fuzzing

_VALID = P.frame_bytes(P.request_header(1, "click", {"u": 3.0}), {"f": np.arange(12, dtype=np.float32).reshape(3, 4)})


def _parse(data: bytes) -> None:
    try:
        msgs = P.decode_frames(data, max_frame_bytes=1 << 20)
    except P.ProtocolError:
        return
    for m in msgs:  # whatever parses is a well-formed message
        assert m.kind in P.KINDS and isinstance(m.id, int) and isinstance(m.command, str)
        for a in m.arrays.values():
            assert a.dtype.name in P.ALLOWED_DTYPES or a.dtype.kind == "b"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_never_escape_protocol_errors(data: bytes) -> None:
    _parse(data)
    _parse(P.MAGIC + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(_VALID)))
def test_fuzz_mutated_valid_frames(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for pos, val in flips:
        data[pos] = val
    _parse(bytes(data[:cut]))
    _parse(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-2**53, 2**53), st.text(max_size=20), st.booleans(),
                                                      st.none(), st.floats(allow_nan=False)), max_size=6),
       st.lists(st.sampled_from(sorted(P.ALLOWED_DTYPES)), max_size=4),
       st.lists(st.integers(0, 5), min_size=0, max_size=3))
def test_fuzz_round_trip_of_valid_messages(args: dict, dtypes: list[str], shape: list[int]) -> None:
    arrays = {f"a{i}": np.ones(shape, dtype=P.ALLOWED_DTYPES[d]) for i, d in enumerate(dtypes)}
    stream = io.BytesIO(P.frame_bytes(P.request_header(2, "cmd", args), arrays))
    msg = P.read_message(stream.readinto)
    assert msg.header["args"] == args
    for k, a in arrays.items():
        assert msg.arrays[k].dtype == a.dtype and msg.arrays[k].shape == a.shape
    assert P.read_message(stream.readinto) is None


def test_prefix_layout_is_documented_size() -> None:
    assert P.PREFIX_BYTES == 16
    assert struct.calcsize("<4sIQ") == 16
