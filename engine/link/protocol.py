"""The wire format between the Blender extension (client) and the engine (server).

Defined once, imported by both ends. Standard library + numpy only (torch-free): the client
runs inside Blender's Python.

Frame layout (all integers little-endian)::

    offset 0   4 bytes   magic  b"CGSP"
    offset 4   uint32    H = header length in bytes (1 .. MAX_HEADER_BYTES)
    offset 8   uint64    P = payload length in bytes
    offset 16  H bytes   header: one JSON object, UTF-8
    offset 16+H P bytes  payload: the raw bytes of the frame's arrays, back to back

The header object always has::

    "v":       protocol version (int, PROTOCOL_VERSION)
    "kind":    "request" | "reply" | "event"
    "id":      request id (int >= 0) chosen by the client; replies and events carry the id of the
               request they answer (the server's unsolicited greeting uses id 0)
    "command": the command name (str)
    "arrays":  [{"name": str, "dtype": str, "shape": [int, ...], "nbytes": int}, ...]

plus, by kind::

    request: "args":   {...}           command arguments (JSON)
    reply:   "ok": true,  "result": {...}
             "ok": false, "error": {"type": str, "message": str, "traceback": str}
    event:   "event":  str (e.g. "progress", "challenge"), "data": {...}

Arrays: C-contiguous, little-endian, dtype from :data:`ALLOWED_DTYPES` only (bool, uint8, int32,
int64, float16, float32, float64). Array i starts at the first multiple of
:data:`ARRAY_ALIGN` bytes at or after the end of array i-1 (the first at offset 0), so the
receiver can view every array in place (no copy) with natural alignment; the gap bytes are
zero. P equals the end of the last array. Nothing is ever pickled.

Reading: :func:`read_message` reads exactly 16 + H + P bytes with ``recv_into``: the header
into a buffer of its announced size, the payload into one preallocated (uninitialised) numpy
buffer that the received arrays are views of — no copy after the kernel's. End of stream
before the first byte of a frame is a clean close (``None``); end of stream anywhere inside a
frame is :class:`TruncatedFrame`; a frame longer than the reader's limit is
:class:`FrameTooLarge` (raised from the 16-byte prefix, before anything is allocated;
:data:`DEFAULT_MAX_FRAME_BYTES` 4 GiB, :data:`PRE_AUTH_MAX_FRAME_BYTES` 64 KiB before the
hello). Every :class:`ProtocolError` leaves the stream at an unknown position: the connection
must be closed.

Handshake (see :mod:`engine.serve.server`): on connect the server sends an event ``challenge`` with a
random ``nonce`` (hex) and its protocol version; the client answers with the request ``hello``
whose ``auth`` is ``hmac_sha256(token, nonce)`` (hex, see :func:`auth_digest`), so the token
itself never crosses the socket. A peer speaking another protocol version gets an error reply
of type ``ProtocolVersionError``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.cameras import Camera
from ..core.errors import EngineError

PROTOCOL_VERSION = 1
MAGIC = b"CGSP"
PREFIX = struct.Struct("<4sIQ")  # magic, header length, payload length
PREFIX_BYTES = PREFIX.size  # 16
MAX_HEADER_BYTES = 16 * 1024 * 1024
ARRAY_ALIGN = 64
DEFAULT_MAX_FRAME_BYTES = 4 * 1024**3  # whole frame (prefix + header + payload)
PRE_AUTH_MAX_FRAME_BYTES = 64 * 1024  # what a server accepts before the hello succeeds
KINDS = ("request", "reply", "event")
#: the mask sources ``set_masks_source`` accepts (factories: :mod:`engine.masks.registry`)
MASK_SOURCE_KINDS = ("builtin", "sam", "folder")

#: dtype name on the wire -> numpy dtype (little-endian)
ALLOWED_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "uint8": np.dtype(np.uint8),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
_MAX_NDIM = 8
#: Bound on an array's extent: the product of its dimensions (zeros counted as one) times its
#: item size. Far above any frame limit, far below where numpy's size arithmetic overflows.
MAX_ARRAY_EXTENT_BYTES = 2**48
_SMALL_SEND = 256 * 1024  # buffers smaller than this are joined into one send


class ProtocolError(EngineError):
    """The peer sent something that is not a valid frame; the connection is unusable."""


class TruncatedFrame(ProtocolError):
    """The stream ended in the middle of a frame."""


class FrameTooLarge(ProtocolError):
    """A frame is larger than the reader allows."""


@dataclass
class Message:
    """One decoded frame: its JSON ``header`` (without the ``arrays`` list) and its arrays by
    name (numpy views into the received buffer, writable, C-contiguous, little-endian)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.header["kind"]

    @property
    def id(self) -> int:
        return self.header["id"]

    @property
    def command(self) -> str:
        return self.header["command"]


# --------------------------------------------------------------------------- header helpers


def request_header(request_id: int, command: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": "request", "id": int(request_id), "command": command,
            "args": dict(args or {})}


def reply_header(request_id: int, command: str, result: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": "reply", "id": int(request_id), "command": command,
            "ok": True, "result": dict(result or {})}


def error_header(request_id: int, command: str, type_name: str, message: str, traceback: str = "") -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": "reply", "id": int(request_id), "command": command,
            "ok": False, "error": {"type": type_name, "message": message, "traceback": traceback}}


def event_header(request_id: int, command: str, event: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "kind": "event", "id": int(request_id), "command": command,
            "event": event, "data": dict(data or {})}


def auth_digest(token: str, nonce_hex: str) -> str:
    """hex HMAC-SHA256 of the challenge nonce (bytes from hex) keyed by the token (UTF-8)."""
    return hmac.new(token.encode("utf-8"), bytes.fromhex(nonce_hex), hashlib.sha256).hexdigest()


def check_auth(token: str, nonce_hex: str, digest: object) -> bool:
    """Constant-time check of a hello's ``auth`` value."""
    if not isinstance(digest, str):
        return False
    return hmac.compare_digest(auth_digest(token, nonce_hex).encode("ascii"),
                               digest.encode("utf-8", "replace"))


def camera_to_wire(camera: Camera) -> dict[str, Any]:
    """A camera as JSON: ``viewmat`` 4x4 world-to-camera and ``K`` 3x3 (nested lists, OpenCV
    convention, see :mod:`engine.core.cameras`), ``width``/``height`` in pixels, ``name``."""
    return {"viewmat": np.asarray(camera.viewmat, dtype=np.float64).tolist(),
            "K": np.asarray(camera.K, dtype=np.float64).tolist(),
            "width": int(camera.width), "height": int(camera.height), "name": camera.name}


def camera_from_wire(obj: Mapping[str, Any]) -> Camera:
    """Inverse of :func:`camera_to_wire`. Checks the wire form only (fields present, matrix
    shapes, finite numbers, integer sizes within 1..32768); whether the camera can be rendered
    (invertible pose, positive focal lengths) is :func:`engine.core.cameras.validate_camera`'s.

    Raises:
        ValueError/TypeError/KeyError: one line naming the field and the problem.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a camera must be a JSON object, got {type(obj).__name__}")
    mats = {}
    for key, shape in (("viewmat", (4, 4)), ("K", (3, 3))):
        if key not in obj:
            raise KeyError(f"the camera has no {key!r}")
        try:
            m = np.asarray(obj[key], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{key} must be a {shape[0]}x{shape[1]} matrix of numbers") from None
        if m.shape != shape:
            raise ValueError(f"{key} must be {shape[0]}x{shape[1]}, got shape {list(m.shape)}")
        if not np.isfinite(m).all():
            raise ValueError(f"{key} has NaN or infinite values")
        mats[key] = m
    for key in ("width", "height"):
        if key not in obj:
            raise KeyError(f"the camera has no {key!r}")
        value = obj[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{key} must be an integer, got {short_repr(value)}")
        if not 0 < value <= 32768:
            raise ValueError(f"{key} must be within 1..32768 pixels, got {value}")
    return Camera(mats["viewmat"], mats["K"], obj["width"], obj["height"], str(obj.get("name", "")))


# --------------------------------------------------------------------------- encoding


def _json_default(obj: object) -> object:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        raise TypeError("numpy arrays travel as frame arrays, not inside the JSON header")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _wire_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    key = arr.dtype.name if arr.dtype.kind != "b" else "bool"
    if key not in ALLOWED_DTYPES:
        raise TypeError(f"array {name!r} has dtype {arr.dtype}, allowed: {', '.join(ALLOWED_DTYPES)}")
    if arr.ndim > _MAX_NDIM:
        raise TypeError(f"array {name!r} has {arr.ndim} dimensions (at most {_MAX_NDIM})")
    return np.require(arr, dtype=ALLOWED_DTYPES[key], requirements="C")  # keeps 0-d shape


def _padding(end: int) -> int:
    return (-end) % ARRAY_ALIGN


def encode_frame(header: Mapping[str, Any], arrays: Mapping[str, object] | None = None) -> list[bytes | memoryview]:
    """The buffers of one frame, in order (their concatenation is the frame). Array data is not
    copied: the list holds memoryviews of the (contiguous, little-endian) arrays."""
    wire = [(str(name), _wire_array(str(name), a)) for name, a in (arrays or {}).items()]
    specs = []
    bufs: list[bytes | memoryview] = []
    offset = 0
    for name, arr in wire:
        pad = _padding(offset)
        if pad:
            bufs.append(bytes(pad))
            offset += pad
        specs.append({"name": name, "dtype": "bool" if arr.dtype.kind == "b" else arr.dtype.name,
                      "shape": [int(s) for s in arr.shape], "nbytes": int(arr.nbytes)})
        if arr.nbytes:
            bufs.append(memoryview(arr).cast("B"))
        offset += arr.nbytes
    hdr = dict(header)
    hdr["arrays"] = specs
    head = json.dumps(hdr, separators=(",", ":"), default=_json_default, allow_nan=True).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"frame header is {len(head)} bytes (at most {MAX_HEADER_BYTES}); send big data as arrays")
    return [PREFIX.pack(MAGIC, len(head), offset), head, *bufs]


def frame_bytes(header: Mapping[str, Any], arrays: Mapping[str, object] | None = None) -> bytes:
    """One whole frame as bytes (for tests and small messages)."""
    return b"".join(bytes(b) for b in encode_frame(header, arrays))


def send_message(sock: Any, header: Mapping[str, Any], arrays: Mapping[str, object] | None = None) -> int:
    """Write one frame to a socket (``sendall``); small pieces are joined so a frame costs few
    system calls, large arrays are sent from their own memory without copying. Not thread-safe:
    callers sharing a socket hold a lock. Returns the frame size in bytes."""
    return send_buffers(sock, encode_frame(header, arrays))


def send_buffers(sock: Any, bufs: list[bytes | memoryview]) -> int:
    """Write the buffers of one frame (from :func:`encode_frame`); see :func:`send_message`."""
    total = 0
    pending: list[bytes | memoryview] = []
    pending_size = 0
    for b in bufs:
        n = len(b)
        total += n
        if n < _SMALL_SEND:
            pending.append(b)
            pending_size += n
            continue
        if pending:
            sock.sendall(b"".join(pending))
            pending, pending_size = [], 0
        sock.sendall(b)
    if pending:
        sock.sendall(b"".join(pending))
    return total


# --------------------------------------------------------------------------- decoding


def _read_exact(read_into: Callable[[memoryview], int], view: memoryview, started: bool) -> bool:
    """Fill ``view`` completely. Returns False on end of stream before the first byte when
    ``started`` is False (clean close); raises TruncatedFrame on end of stream after that."""
    got = 0
    n = len(view)
    while got < n:
        k = read_into(view[got:])
        if not k:
            if got == 0 and not started:
                return False
            raise TruncatedFrame(f"connection closed in the middle of a frame ({got} of {n} bytes of a part read)")
        got += k
    return True


def parse_prefix(prefix: bytes | bytearray | memoryview, max_frame_bytes: int) -> tuple[int, int]:
    """(header length, payload length) from the 16-byte prefix, validated against the limits."""
    magic, hlen, plen = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"not a Click-Gaussian engine frame (starts with {bytes(magic)!r}, expected {MAGIC!r})")
    if hlen == 0 or hlen > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header length {hlen} is outside 1..{MAX_HEADER_BYTES}")
    total = PREFIX_BYTES + hlen + plen
    if total > max_frame_bytes:
        raise FrameTooLarge(f"frame of {total} bytes exceeds the limit of {max_frame_bytes} bytes")
    return hlen, plen


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a peer's values go into one-line messages and
    the log, where a megabyte-long name must not arrive whole."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_shape(name: str, shape: object, dtype: np.dtype) -> tuple[int, ...]:
    """An array entry's shape as a tuple, or ProtocolError naming the array and the problem.

    Besides non-negative integer dimensions, the extent (the product of the dimensions with
    zeros counted as one, times the item size) is bounded: numpy refuses to even shape an empty
    buffer as ``[0, 2**62]``, and a peer must not be able to turn that into an exception outside
    the protocol's family."""
    name = short_repr(name)
    if not isinstance(shape, list):
        raise ProtocolError(f"array {name}: shape must be a list of integers, got {short_repr(shape)}")
    if len(shape) > _MAX_NDIM:
        raise ProtocolError(f"array {name}: shape has {len(shape)} dimensions (at most {_MAX_NDIM})")
    extent = dtype.itemsize
    for s in shape:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ProtocolError(f"array {name}: shape {short_repr(shape)} has a dimension that is not a non-negative integer")
        extent *= max(s, 1)
        if extent > MAX_ARRAY_EXTENT_BYTES:
            raise ProtocolError(f"array {name}: shape {short_repr(shape)} is absurdly large (its extent exceeds "
                                f"{MAX_ARRAY_EXTENT_BYTES} bytes even where it holds no data)")
    return tuple(shape)


def parse_header(raw: bytes | bytearray | memoryview, payload_len: int) -> tuple[dict[str, Any], list[tuple[str, np.dtype, tuple[int, ...], int, int]]]:
    """Decode and validate a header; returns it (without "arrays") and the array layout
    [(name, dtype, shape, offset, nbytes)]."""
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise ProtocolError(f"frame header is not valid UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    v = header.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("frame header has no integer protocol version 'v'")
    if header.get("kind") not in KINDS:
        raise ProtocolError(f"frame header 'kind' must be one of {KINDS}")
    rid = header.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
        raise ProtocolError("frame header 'id' must be a non-negative integer")
    if not isinstance(header.get("command"), str):
        raise ProtocolError("frame header 'command' must be a string")
    specs = header.pop("arrays", [])
    if not isinstance(specs, list):
        raise ProtocolError("frame header 'arrays' must be a list")
    layout = []
    names = set()
    offset = 0
    for spec in specs:
        if not isinstance(spec, dict):
            raise ProtocolError("an array entry in the frame header is not an object")
        name, dt, shape, nbytes = spec.get("name"), spec.get("dtype"), spec.get("shape"), spec.get("nbytes")
        if not isinstance(name, str) or name in names:
            raise ProtocolError(f"array name {short_repr(name)} is missing, not a string or repeated")
        names.add(name)
        if not isinstance(dt, str) or dt not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {short_repr(name)} has dtype {short_repr(dt)}; allowed: {', '.join(ALLOWED_DTYPES)}")
        dtype = ALLOWED_DTYPES[dt]
        dims = _check_shape(name, shape, dtype)
        count = math.prod(dims)
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes != count * dtype.itemsize:
            raise ProtocolError(f"array {short_repr(name)}: nbytes {short_repr(nbytes)} does not match dtype {dt} and shape {list(dims)} "
                                f"({count * dtype.itemsize} bytes)")
        offset += _padding(offset)
        layout.append((name, dtype, dims, offset, nbytes))
        offset += nbytes
    if offset != payload_len:
        raise ProtocolError(f"frame payload is {payload_len} bytes but its arrays need {offset}")
    return header, layout


def read_message(read_into: Callable[[memoryview], int], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message | None:
    """Read one frame from a byte stream. ``read_into(view) -> int`` fills a prefix of ``view``
    and returns how many bytes it wrote (0 = end of stream): ``socket.recv_into`` or a binary
    file's ``readinto``. Returns None on a clean end of stream between frames."""
    prefix = bytearray(PREFIX_BYTES)
    if not _read_exact(read_into, memoryview(prefix), started=False):
        return None
    hlen, plen = parse_prefix(prefix, max_frame_bytes)
    raw = bytearray(hlen)
    _read_exact(read_into, memoryview(raw), started=True)
    header, layout = parse_header(raw, plen)  # validate before allocating the payload
    payload = np.empty(plen, dtype=np.uint8)  # not zeroed: every byte is read below
    if plen:
        _read_exact(read_into, memoryview(payload), started=True)
    arrays = {}
    for name, dtype, shape, offset, nbytes in layout:
        try:
            arrays[name] = payload[offset:offset + nbytes].view(dtype).reshape(shape)
        except ValueError as exc:  # parse_header should have caught it; the wire still gets a ProtocolError
            raise ProtocolError(f"array {short_repr(name)} cannot be shaped {list(shape)} ({exc})") from None
    return Message(header, arrays)


def recv_message(sock: Any, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message | None:
    """:func:`read_message` on a socket."""
    return read_message(sock.recv_into, max_frame_bytes)


def decode_frames(data: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[Message]:
    """All frames in a byte string (raises ProtocolError if it is not exactly whole frames)."""
    stream = io.BytesIO(data)
    out = []
    while True:
        msg = read_message(stream.readinto, max_frame_bytes)
        if msg is None:
            return out
        out.append(msg)
