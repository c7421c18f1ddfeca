"""Exact codec for the PRD WebSocket protocol (DESIGN 3.2): lib0 primitives, y-websocket messages, JSON frames.

Three layers, all pure (no I/O, no AWS, no pycrdt):

1. **lib0 primitives** — ``varUint`` (7-bit groups, least significant first, high bit = "more follows"),
   ``varBytes`` (varUint length + bytes) and ``varString`` (varBytes of UTF-8), byte-for-byte what
   ``lib0/encoding`` writes.
2. **y-websocket messages** — one message per WebSocket frame, exactly as ``y-protocols`` and the
   ``y-websocket`` provider write them::

       sync            varUint 0, then varUint 0 (step 1) + varBytes state vector
                                      | varUint 1 (step 2) + varBytes update
                                      | varUint 2 (update) + varBytes update
       awareness       varUint 1, varBytes payload
                       payload = varUint count, count x (varUint clientID, varUint clock, varString JSON state)
       auth            varUint 2, varUint 0 (permission denied), varString reason
       queryAwareness  varUint 3

   Updates and state vectors are carried opaquely (whoever applies them validates them); awareness
   payloads are parsed eagerly because a server relays them to browsers whose ``JSON.parse`` throws on
   garbage.
3. **JSON frames** — ``{"action": "y", "data": "<base64 message>"}``; a message whose base64 text is
   longer than :data:`MAX_FRAME_DATA_CHARS` is cut into parts sent as
   ``{"action": "y", "data": "<part>", "chunk": {"id": "<id>", "i": k, "n": N}}`` and joined in order of
   ``i`` before base64 decoding.  :class:`ChunkAssembler` joins parts in memory (clients, tests); the
   server keeps parts in DynamoDB (consecutive frames may reach different Lambda containers) and uses
   :func:`validate_chunk` and :func:`join_chunk_parts`.

Strictness.  Every decoder consumes exactly its input and raises :class:`ProtocolError` (a
``ValueError`` with a stable :attr:`ProtocolError.code`, ready for an error frame) on anything a
correct peer would not send: truncated input, varUints that are longer than 10 bytes, larger than
2**53 or not minimally encoded (lib0 tolerates redundant ``0x80`` groups but never writes them; rejecting
them makes decode → encode the identity on everything accepted), invalid UTF-8 (lib0's TextDecoder is
``fatal`` too), unknown message types, trailing bytes, awareness states that are not JSON, base64 that
is not the canonical padded standard alphabet, frames over 128 KiB and malformed chunk metadata.

Limits (and why):

* :data:`MAX_FRAME_CHARS` = 131,072 (128 KiB): API Gateway's WebSocket frame limit; larger frames are
  refused before JSON parsing.
* :data:`MAX_FRAME_DATA_CHARS` = 98,304 (96 KiB, a multiple of 4): DESIGN 3.2; leaves >32 KiB of head
  room for the JSON envelope and chunk metadata.
* :data:`MAX_CHUNKS` = 170: the largest part count whose total base64 stays within 16 MiB
  (170 x 98,304 = 16,711,680 characters, i.e. a y-message of at most :data:`MAX_MESSAGE_BYTES` =
  12,533,760 bytes).  A 105,000-character PRD is a 377 KB snapshot (DESIGN 5), so this is >30x head room
  while bounding what one chunk set can make a receiver buffer.
* :class:`ChunkAssembler` defaults: parts of a set must all arrive within 30 s of the first one
  (``timeout``); at most 8 incomplete sets at once (``max_sets``; a sender writes one message's
  parts back to back, so more than one or two open sets only happens when frames were lost); at most
  2 x 16,711,680 buffered base64 characters over all sets (``max_buffered_chars``: two maximal messages).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeGuard

__all__ = [
    "MAX_BUFFERED_CHARS",
    "MAX_CHUNKS",
    "MAX_CHUNK_ID_CHARS",
    "MAX_CHUNK_SETS",
    "MAX_FRAME_CHARS",
    "MAX_FRAME_DATA_CHARS",
    "MAX_MESSAGE_B64_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_VAR_UINT",
    "MAX_VAR_UINT_BYTES",
    "MESSAGE_AUTH",
    "MESSAGE_AWARENESS",
    "MESSAGE_QUERY_AWARENESS",
    "MESSAGE_SYNC",
    "SYNC_STEP1",
    "SYNC_STEP2",
    "SYNC_UPDATE",
    "Awareness",
    "AwarenessEntry",
    "ChunkAssembler",
    "ChunkInfo",
    "ErrorCode",
    "Frame",
    "Message",
    "PermissionDenied",
    "ProtocolError",
    "QueryAwareness",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "decode_base64",
    "decode_message",
    "encode_awareness",
    "encode_frames",
    "encode_message",
    "error_frame",
    "join_chunk_parts",
    "new_chunk_id",
    "parse_frame",
    "read_var_bytes",
    "read_var_string",
    "read_var_uint",
    "validate_chunk",
    "write_var_bytes",
    "write_var_string",
    "write_var_uint",
]

type BytesLike = bytes | bytearray | memoryview

# --- limits -------------------------------------------------------------------------------------------

MAX_VAR_UINT: Final = 2**53
"""Largest varUint accepted or written (lib0 numbers are IEEE doubles; 2**53 is still exact)."""
MAX_VAR_UINT_BYTES: Final = 10
"""A varUint longer than this is rejected outright (a canonical one <= 2**53 needs at most 8)."""

MAX_FRAME_CHARS: Final = 128 * 1024
"""API Gateway's WebSocket frame limit; longer frame texts are rejected with ``too_large``."""
MAX_FRAME_DATA_CHARS: Final = 98_304
"""Largest ``data`` string in one frame (DESIGN 3.2); longer base64 messages are chunked."""
MAX_CHUNKS: Final = 170
"""Largest part count ``n``: 170 x 98,304 = 16,711,680 base64 characters, within 16 MiB."""
MAX_MESSAGE_B64_CHARS: Final = MAX_CHUNKS * MAX_FRAME_DATA_CHARS
"""Largest base64 text of one message (16,711,680 characters)."""
MAX_MESSAGE_BYTES: Final = MAX_MESSAGE_B64_CHARS // 4 * 3
"""Largest y-websocket message that can be framed (12,533,760 bytes)."""
MAX_CHUNK_ID_CHARS: Final = 64
"""Chunk ids are 1-64 characters of ``[A-Za-z0-9_-]``."""

CHUNK_TIMEOUT_SECONDS: Final = 30.0
"""Default: an incomplete chunk set is dropped this long after its first part arrived."""
MAX_CHUNK_SETS: Final = 8
"""Default cap on concurrently incomplete chunk sets in one :class:`ChunkAssembler`."""
MAX_BUFFERED_CHARS: Final = 2 * MAX_MESSAGE_B64_CHARS
"""Default cap on base64 characters buffered over all incomplete sets of one :class:`ChunkAssembler`."""

MAX_ERROR_MESSAGE_CHARS: Final = 1_000
""":func:`error_frame` shortens longer messages so an error frame always fits in one frame."""

# --- message type numbers (y-protocols / y-websocket) ----------------------------------------------------

MESSAGE_SYNC: Final = 0
MESSAGE_AWARENESS: Final = 1
MESSAGE_AUTH: Final = 2
MESSAGE_QUERY_AWARENESS: Final = 3

SYNC_STEP1: Final = 0
SYNC_STEP2: Final = 1
SYNC_UPDATE: Final = 2

AUTH_PERMISSION_DENIED: Final = 0

_CHUNK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/=]*")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


class ErrorCode(StrEnum):
    """Stable error codes; they are what a client sees in ``{"action": "error", "code": ...}``."""

    TRUNCATED = "truncated"
    """The input ended inside a value."""
    BAD_VARUINT = "bad_varuint"
    """A varUint longer than 10 bytes, larger than 2**53, not minimally encoded, or negative (writing)."""
    BAD_STRING = "bad_string"
    """A varString that is not valid UTF-8."""
    TRAILING_BYTES = "trailing_bytes"
    """Bytes after the end of a message (or of an awareness payload)."""
    UNKNOWN_MESSAGE = "unknown_message"
    """An unknown message type, sync sub-type or auth sub-type."""
    BAD_AWARENESS = "bad_awareness"
    """An awareness state that is not JSON (as ``JSON.parse`` reads it) or cannot be written as JSON."""
    INVALID_JSON = "invalid_json"
    """A frame that is not JSON."""
    INVALID_FRAME = "invalid_frame"
    """A frame that is JSON but not an object with a string ``action`` (and, for ``y``, string ``data``)."""
    BAD_BASE64 = "bad_base64"
    """``data`` (or joined chunk parts) that is not canonical padded standard base64."""
    TOO_LARGE = "too_large"
    """A frame over 128 KiB, a ``data`` string over 98,304 characters, or a message too big to frame."""
    BAD_CHUNK = "bad_chunk"
    """Malformed or inconsistent chunk metadata, or parts that do not add up."""
    CHUNK_LIMIT = "chunk_limit"
    """A :class:`ChunkAssembler` limit (open sets, buffered characters) was reached."""


class ProtocolError(ValueError):
    """Input that breaks the protocol; :attr:`code` is stable, :attr:`message` is for humans."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message: str = message

    def to_frame(self) -> str:
        """This error as an error frame (:func:`error_frame`)."""
        return error_frame(self.code, self.message)


# --- lib0 primitives ------------------------------------------------------------------------------------


def write_var_uint(n: int) -> bytes:
    """lib0 ``writeVarUint``: 7-bit groups, least significant first, high bit set on all but the last."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"varUint must be an int, not {type(n).__name__}")
    if n < 0 or n > MAX_VAR_UINT:
        raise ProtocolError(ErrorCode.BAD_VARUINT, f"varUint out of range 0..2**53: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def read_var_uint(data: BytesLike, pos: int = 0) -> tuple[int, int]:
    """lib0 ``readVarUint`` at ``pos``: ``(value, position after it)``; strict (see module docstring)."""
    if pos < 0:
        raise ValueError("pos must not be negative")
    end = len(data)
    start = pos
    value = 0
    shift = 0
    while True:
        if pos - start >= MAX_VAR_UINT_BYTES:
            raise ProtocolError(ErrorCode.BAD_VARUINT, f"varUint longer than {MAX_VAR_UINT_BYTES} bytes")
        if pos >= end:
            raise ProtocolError(ErrorCode.TRUNCATED, "input ends inside a varUint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if value > MAX_VAR_UINT:
            raise ProtocolError(ErrorCode.BAD_VARUINT, "varUint larger than 2**53")
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise ProtocolError(ErrorCode.BAD_VARUINT, "varUint is not minimally encoded")
            return value, pos


def write_var_bytes(data: BytesLike) -> bytes:
    """lib0 ``writeVarUint8Array``: varUint length, then the bytes."""
    return write_var_uint(len(data)) + bytes(data)


def read_var_bytes(data: BytesLike, pos: int = 0) -> tuple[bytes, int]:
    """lib0 ``readVarUint8Array`` at ``pos``: ``(bytes, position after them)``."""
    length, pos = read_var_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError(ErrorCode.TRUNCATED, f"input ends inside a {length}-byte array")
    return bytes(data[pos:end]), end


def _utf8(text: str) -> bytes:
    """UTF-8 as JavaScript's ``TextEncoder`` makes it from the same UTF-16 string.

    Surrogate pairs held as two code points become one character, and lone surrogates become U+FFFD,
    exactly as ``TextEncoder.encodeInto`` (used by lib0 ``writeVarString``) does.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8")


def write_var_string(text: str) -> bytes:
    """lib0 ``writeVarString``: varUint *byte* length, then the UTF-8 bytes."""
    return write_var_bytes(_utf8(text))


def read_var_string(data: BytesLike, pos: int = 0) -> tuple[str, int]:
    """lib0 ``readVarString`` at ``pos``: ``(text, position after it)``; invalid UTF-8 is rejected."""
    raw, pos = read_var_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_STRING, f"varString is not UTF-8 ({exc.reason})") from None


# --- y-websocket messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """Sync step 1: "this is what I have" — the sender's encoded state vector."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """Sync step 2: the update the step-1 sender is missing (an answer to :class:`SyncStep1`)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental document update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state; ``state=None`` (JSON ``null``) means the client is gone."""

    client_id: int
    clock: int
    state: Any | None


@dataclass(frozen=True, slots=True)
class Awareness:
    """An awareness message; ``payload`` is y-protocols' ``encodeAwarenessUpdate`` output.

    Relay ``payload`` as it came (re-encoding parsed entries is only byte-identical when the JSON
    texts were written as ``JSON.stringify`` would, see :func:`encode_awareness`).
    """

    payload: bytes

    def entries(self) -> list[AwarenessEntry]:
        """The entries of the payload; :class:`ProtocolError` if it is malformed."""
        data = self.payload
        count, pos = read_var_uint(data, 0)
        # Each entry takes at least 3 bytes; refuse an absurd count before looping over it.
        if count * 3 > len(data) - pos:
            raise ProtocolError(ErrorCode.TRUNCATED, f"awareness payload too short for {count} entries")
        entries: list[AwarenessEntry] = []
        for _ in range(count):
            client_id, pos = read_var_uint(data, pos)
            clock, pos = read_var_uint(data, pos)
            text, pos = read_var_string(data, pos)
            entries.append(AwarenessEntry(client_id, clock, _parse_state(text)))
        if pos != len(data):
            raise ProtocolError(ErrorCode.TRAILING_BYTES, f"{len(data) - pos} bytes after the awareness entries")
        return entries


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    """An auth message (y-protocols ``auth.writePermissionDenied``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for the receiver's known awareness states (no payload)."""


type Message = SyncStep1 | SyncStep2 | SyncUpdate | Awareness | PermissionDenied | QueryAwareness


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_state(text: str) -> Any | None:
    """``JSON.parse`` semantics: strict JSON only (no NaN/Infinity, no BOM, no empty text)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_AWARENESS, f"awareness state is not JSON ({exc})") from None


def _stringify_state(state: Any | None) -> str:
    """``JSON.stringify`` as closely as Python's json allows (identical for strings, ints, lists, dicts).

    Numbers with a fractional part or exponent may be spelled differently (Python ``1.0`` vs JS ``1``);
    both sides read them as the same value.
    """
    try:
        text = json.dumps(state, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_AWARENESS, f"awareness state cannot be written as JSON ({exc})") from None
    if _LONE_SURROGATE.search(text):
        # Join pairs held as two code points, then escape what is left as JSON.stringify does.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def encode_awareness(entries: Sequence[AwarenessEntry]) -> Awareness:
    """An :class:`Awareness` message for ``entries`` (y-protocols ``encodeAwarenessUpdate``'s layout).

    A server removing a client sends ``AwarenessEntry(client_id, clock, None)``; ``None`` is written
    as the JSON text ``null``, which every y-protocols receiver treats as removal.  (The receiver only
    acts when ``clock`` is newer than what it knows, or equal and it still holds a state.)
    """
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        parts.append(write_var_uint(entry.client_id))
        parts.append(write_var_uint(entry.clock))
        parts.append(write_var_string(_stringify_state(entry.state)))
    return Awareness(b"".join(parts))


def encode_message(msg: Message) -> bytes:
    """The y-websocket bytes of ``msg`` (exactly what y-protocols writes for it)."""
    match msg:
        case SyncStep1(state_vector=sv):
            return bytes((MESSAGE_SYNC, SYNC_STEP1)) + write_var_bytes(sv)
        case SyncStep2(update=update):
            return bytes((MESSAGE_SYNC, SYNC_STEP2)) + write_var_bytes(update)
        case SyncUpdate(update=update):
            return bytes((MESSAGE_SYNC, SYNC_UPDATE)) + write_var_bytes(update)
        case Awareness(payload=payload):
            msg.entries()  # never write what we would refuse to read
            return bytes((MESSAGE_AWARENESS,)) + write_var_bytes(payload)
        case PermissionDenied(reason=reason):
            return bytes((MESSAGE_AUTH, AUTH_PERMISSION_DENIED)) + write_var_string(reason)
        case QueryAwareness():
            return bytes((MESSAGE_QUERY_AWARENESS,))
    raise TypeError(f"not a y-websocket message: {type(msg).__name__}")


def decode_message(data: BytesLike) -> Message:
    """Parse one whole y-websocket message; :class:`ProtocolError` unless it is exactly one valid message."""
    kind, pos = read_var_uint(data, 0)
    msg: Message
    if kind == MESSAGE_SYNC:
        sub, pos = read_var_uint(data, pos)
        if sub not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown sync message type {sub}")
        payload, pos = read_var_bytes(data, pos)
        msg = (SyncStep1 if sub == SYNC_STEP1 else SyncStep2 if sub == SYNC_STEP2 else SyncUpdate)(payload)
    elif kind == MESSAGE_AWARENESS:
        payload, pos = read_var_bytes(data, pos)
        awareness = Awareness(payload)
        awareness.entries()  # validate eagerly: receivers' JSON.parse throws on garbage
        msg = awareness
    elif kind == MESSAGE_AUTH:
        sub, pos = read_var_uint(data, pos)
        if sub != AUTH_PERMISSION_DENIED:
            raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown auth message type {sub}")
        reason, pos = read_var_string(data, pos)
        msg = PermissionDenied(reason)
    elif kind == MESSAGE_QUERY_AWARENESS:
        msg = QueryAwareness()
    else:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown message type {kind}")
    if pos != len(data):
        raise ProtocolError(ErrorCode.TRAILING_BYTES, f"{len(data) - pos} bytes after the message")
    return msg


# --- JSON frames ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """A frame's ``chunk`` metadata: part ``i`` (0-based) of ``n`` of the message ``id``."""

    id: str
    i: int
    n: int


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed, shape-checked frame.

    ``fields`` is the whole JSON object (other actions, e.g. ``ping``, read what they need from it).
    For ``action == "y"``: ``data`` is the base64 text (a whole message, or one part when ``chunk`` is
    set) and, without ``chunk``, ``message`` holds the decoded y-websocket bytes (not yet parsed: see
    :func:`decode_message`).
    """

    action: str
    fields: Mapping[str, Any]
    data: str | None = None
    chunk: ChunkInfo | None = None
    message: bytes | None = None


def new_chunk_id() -> str:
    """A random chunk id (16 characters of the URL-safe alphabet, 96 bits)."""
    return secrets.token_urlsafe(12)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_chunk(chunk: Any) -> ChunkInfo:
    """Check a frame's ``chunk`` object: string id (1-64 of ``[A-Za-z0-9_-]``), ints ``0 <= i < n <= 170``.

    Other keys are ignored (room for later additions).
    """
    if not isinstance(chunk, dict):
        raise ProtocolError(ErrorCode.BAD_CHUNK, "chunk must be an object")
    chunk_id, i, n = chunk.get("id"), chunk.get("i"), chunk.get("n")
    if not isinstance(chunk_id, str) or not _CHUNK_ID.fullmatch(chunk_id):
        raise ProtocolError(ErrorCode.BAD_CHUNK, "chunk.id must be 1-64 characters of [A-Za-z0-9_-]")
    if not _is_int(i) or not _is_int(n):
        raise ProtocolError(ErrorCode.BAD_CHUNK, "chunk.i and chunk.n must be integers")
    if not 0 <= i < n <= MAX_CHUNKS:
        raise ProtocolError(ErrorCode.BAD_CHUNK, f"chunk needs 0 <= i < n <= {MAX_CHUNKS} (got i={i}, n={n})")
    return ChunkInfo(chunk_id, i, n)


def decode_base64(text: str) -> bytes:
    """Strict base64: standard alphabet, correct padding, nothing else, canonical (unused bits zero)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_BASE64, f"data is not base64 ({exc})") from None
    if text.endswith("=") and base64.b64encode(raw).decode("ascii") != text:
        raise ProtocolError(ErrorCode.BAD_BASE64, "data is not canonical base64 (non-zero padding bits)")
    return raw


def parse_frame(text: str | bytes) -> Frame:
    """Parse and shape-check one frame (see :class:`Frame`); any problem is a :class:`ProtocolError`.

    Checks, in order: size (> 128 KiB → ``too_large``), JSON (``invalid_json``), an object with a
    string ``action`` (``invalid_frame``).  For ``y``: string ``data`` (``invalid_frame``) of at most
    98,304 characters (``too_large``); with ``chunk``: :func:`validate_chunk` (``bad_chunk``) and base64
    characters only (``bad_base64``); without: strict base64 (``bad_base64``).
    """
    size = len(text)
    if isinstance(text, str) and size <= MAX_FRAME_CHARS and not text.isascii():
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_CHARS:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frames are limited to {MAX_FRAME_CHARS} bytes")
    try:
        obj = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a frame must be a JSON object") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("action"), str):
        raise ProtocolError(ErrorCode.INVALID_FRAME, 'a frame must be a JSON object with a string "action"')
    action: str = obj["action"]
    if action != "y":
        return Frame(action, obj)
    data = obj.get("data")
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.INVALID_FRAME, 'a "y" frame needs a string "data"')
    if len(data) > MAX_FRAME_DATA_CHARS:
        raise ProtocolError(ErrorCode.TOO_LARGE, f'"data" is limited to {MAX_FRAME_DATA_CHARS} characters; chunk it')
    if "chunk" in obj:
        chunk = validate_chunk(obj["chunk"])
        if not data.isascii() or not _BASE64_CHARS.fullmatch(data):
            raise ProtocolError(ErrorCode.BAD_BASE64, "chunk data holds non-base64 characters")
        return Frame(action, obj, data, chunk)
    return Frame(action, obj, data, None, decode_base64(data))


def _y_frame(data: str, chunk: ChunkInfo | None = None) -> str:
    frame: dict[str, Any] = {"action": "y", "data": data}
    if chunk is not None:
        frame["chunk"] = {"id": chunk.id, "i": chunk.i, "n": chunk.n}
    return json.dumps(frame, separators=(",", ":"))


def encode_frames(message: BytesLike, *, chunk_id_factory: Callable[[], str] = new_chunk_id) -> list[str]:
    """The JSON text frames carrying ``message``: one frame, or ``ceil(len(b64) / 98,304)`` chunk frames.

    Every frame is far below 128 KiB.  ``too_large`` if the base64 text would need more than
    :data:`MAX_CHUNKS` parts; ``chunk_id_factory`` must return a valid chunk id.
    """
    b64 = base64.b64encode(message).decode("ascii")
    if len(b64) <= MAX_FRAME_DATA_CHARS:
        return [_y_frame(b64)]
    if len(b64) > MAX_MESSAGE_B64_CHARS:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"a {len(message)}-byte message exceeds {MAX_MESSAGE_BYTES} bytes")
    chunk_id = chunk_id_factory()
    if not isinstance(chunk_id, str) or not _CHUNK_ID.fullmatch(chunk_id):
        raise ValueError(f"chunk_id_factory returned an invalid chunk id: {chunk_id!r}")
    n = -(-len(b64) // MAX_FRAME_DATA_CHARS)
    return [
        _y_frame(b64[k * MAX_FRAME_DATA_CHARS : (k + 1) * MAX_FRAME_DATA_CHARS], ChunkInfo(chunk_id, k, n))
        for k in range(n)
    ]


def join_chunk_parts(parts: Sequence[str]) -> bytes:
    """Join a complete, ordered set of chunk ``data`` parts and decode it (``bad_chunk``/``bad_base64``)."""
    if not 0 < len(parts) <= MAX_CHUNKS:
        raise ProtocolError(ErrorCode.BAD_CHUNK, f"a chunk set has 1..{MAX_CHUNKS} parts, not {len(parts)}")
    for part in parts:
        if not isinstance(part, str) or len(part) > MAX_FRAME_DATA_CHARS:
            raise ProtocolError(ErrorCode.BAD_CHUNK, f"chunk parts are strings of at most {MAX_FRAME_DATA_CHARS}")
    return decode_base64("".join(parts))


def error_frame(code: str, message: str) -> str:
    """``{"action":"error","code":...,"message":...}`` as JSON text (message cut at 1,000 characters)."""
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return json.dumps({"action": "error", "code": str(code), "message": message},
                      separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class _PartialSet:
    n: int
    started: float
    parts: dict[int, str] = field(default_factory=dict)
    chars: int = 0


class ChunkAssembler:
    """Joins chunked ``y`` frames in memory (one per connection; clients and tests).

    :meth:`add` returns the decoded message once all ``n`` parts of an id are in (joined by ``i``,
    base64-decoded after joining), else ``None``.  A part that contradicts its set (different ``n``, or
    the same ``i`` with different data) drops the whole set with ``bad_chunk``; an identical repeated
    part is ignored.  A set is dropped ``timeout`` seconds after its first part.  A new set beyond
    ``max_sets`` open ones is refused with ``chunk_limit`` (the part is not kept); a part that would
    take the buffered total over ``max_buffered_chars`` drops its set with ``chunk_limit``.
    ``clock`` is only consulted when ``now`` is not passed.
    """

    def __init__(
        self,
        *,
        timeout: float = CHUNK_TIMEOUT_SECONDS,
        max_sets: int = MAX_CHUNK_SETS,
        max_buffered_chars: int = MAX_BUFFERED_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_sets = max_sets
        self.max_buffered_chars = max_buffered_chars
        self._clock = clock
        self._sets: dict[str, _PartialSet] = {}
        self._buffered = 0

    @property
    def pending(self) -> int:
        """Number of incomplete sets held."""
        return len(self._sets)

    @property
    def buffered_chars(self) -> int:
        """Base64 characters held over all incomplete sets."""
        return self._buffered

    def _drop(self, chunk_id: str) -> None:
        dropped = self._sets.pop(chunk_id, None)
        if dropped is not None:
            self._buffered -= dropped.chars

    def expire(self, now: float | None = None) -> list[str]:
        """Drop sets whose first part is more than ``timeout`` seconds old; their ids."""
        now = self._clock() if now is None else now
        stale = [chunk_id for chunk_id, s in self._sets.items() if now - s.started > self.timeout]
        for chunk_id in stale:
            self._drop(chunk_id)
        return stale

    def add(self, frame: Frame, now: float | None = None) -> bytes | None:
        """Take one ``y`` frame; the whole message when this frame completes it (or is unchunked)."""
        if frame.action != "y" or frame.data is None:
            raise ProtocolError(ErrorCode.INVALID_FRAME, 'only "y" frames carry chunks')
        if frame.chunk is None:
            return frame.message if frame.message is not None else decode_base64(frame.data)
        now = self._clock() if now is None else now
        self.expire(now)
        info, data = frame.chunk, frame.data
        if len(data) > MAX_FRAME_DATA_CHARS:
            raise ProtocolError(ErrorCode.TOO_LARGE, f'"data" is limited to {MAX_FRAME_DATA_CHARS} characters')
        partial = self._sets.get(info.id)
        if partial is None:
            if len(self._sets) >= self.max_sets:
                raise ProtocolError(ErrorCode.CHUNK_LIMIT, f"more than {self.max_sets} incomplete chunk sets")
            partial = self._sets[info.id] = _PartialSet(info.n, now)
        elif partial.n != info.n:
            self._drop(info.id)
            raise ProtocolError(ErrorCode.BAD_CHUNK, f"chunk {info.id!r} said n={partial.n}, now n={info.n}")
        seen = partial.parts.get(info.i)
        if seen is not None:
            if seen != data:
                self._drop(info.id)
                raise ProtocolError(ErrorCode.BAD_CHUNK, f"chunk {info.id!r} part {info.i} arrived with other data")
            return None
        if self._buffered + len(data) > self.max_buffered_chars:
            self._drop(info.id)
            raise ProtocolError(ErrorCode.CHUNK_LIMIT, f"more than {self.max_buffered_chars} buffered characters")
        partial.parts[info.i] = data
        partial.chars += len(data)
        self._buffered += len(data)
        if len(partial.parts) < partial.n:
            return None
        self._drop(info.id)
        return join_chunk_parts([partial.parts[k] for k in range(partial.n)])
