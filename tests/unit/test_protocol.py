"""The WebSocket protocol codec (DESIGN 3.2): lib0 primitives, y-websocket messages, JSON frames, chunks."""

from __future__ import annotations

import base64
import functools
import json
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pycrdt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from prdtool.collab import protocol as p
from prdtool.collab.protocol import (
    MAX_CHUNKS,
    MAX_FRAME_CHARS,
    MAX_FRAME_DATA_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_VAR_UINT,
    Awareness,
    AwarenessEntry,
    ChunkAssembler,
    ChunkInfo,
    ErrorCode,
    Message,
    PermissionDenied,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_awareness,
    encode_frames,
    encode_message,
    error_frame,
    join_chunk_parts,
    parse_frame,
    read_var_bytes,
    read_var_string,
    read_var_uint,
    validate_chunk,
    write_var_bytes,
    write_var_string,
    write_var_uint,
)


@contextmanager
def raises(code: str) -> Iterator[None]:
    """``pytest.raises(ProtocolError)`` that also checks the stable code."""
    with pytest.raises(ProtocolError) as info:
        yield
    assert info.value.code == code, f"expected {code!r}, got {info.value!r}"


def real_doc(text: str = "# Zoë\u2019s PRD 🚀\n\nGoals: ship.\n", **meta: Any) -> Doc:
    doc: Doc[Any] = Doc()
    doc.get("content", type=Text).insert(0, text)
    for key, value in (meta or {"title": "Zoë\u2019s PRD"}).items():
        doc.get("meta", type=Map)[key] = value
    return doc


def real_messages() -> list[bytes]:
    """Valid messages of every kind with real pycrdt payloads."""
    doc = real_doc()
    before = doc.get_state()
    doc.get("content", type=Text).insert(3, "edited ")
    return [
        encode_message(SyncStep1(doc.get_state())),
        encode_message(SyncStep1(Doc().get_state())),
        encode_message(SyncStep2(doc.get_update())),
        encode_message(SyncUpdate(doc.get_update(before))),
        encode_message(encode_awareness([AwarenessEntry(1, 1, {"user": {"name": "Zoë 😀"}}),
                                         AwarenessEntry(2**53, 7, None)])),
        encode_message(encode_awareness([])),
        encode_message(PermissionDenied("read-only 🔒")),
        encode_message(QueryAwareness()),
    ]


# --- lib0 primitives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (16384, b"\x80\x80\x01"),
    (2**32 - 1, b"\xff\xff\xff\xff\x0f"), (2**53, b"\x80\x80\x80\x80\x80\x80\x80\x10"),
])
def test_var_uint_known_vectors(value: int, encoded: bytes) -> None:
    assert write_var_uint(value) == encoded
    assert read_var_uint(encoded) == (value, len(encoded))
    assert read_var_uint(b"\xff" + encoded + b"\xff", 1) == (value, 1 + len(encoded))


@given(st.integers(min_value=0, max_value=MAX_VAR_UINT), st.binary(max_size=4), st.binary(max_size=4))
def test_var_uint_round_trip_and_matches_pycrdt(value: int, prefix: bytes, suffix: bytes) -> None:
    encoded = write_var_uint(value)
    assert encoded == pycrdt.write_var_uint(value)
    assert len(encoded) == max(1, math.ceil(value.bit_length() / 7))
    assert read_var_uint(prefix + encoded + suffix, len(prefix)) == (value, len(prefix) + len(encoded))


@given(st.binary(max_size=12))
@example(b"\x80\x00")
@example(b"\x80" * 10 + b"\x01")
def test_read_var_uint_accepts_exactly_canonical_encodings(data: bytes) -> None:
    try:
        value, pos = read_var_uint(data)
    except ProtocolError as exc:
        assert exc.code in {ErrorCode.TRUNCATED, ErrorCode.BAD_VARUINT}
    else:
        assert write_var_uint(value) == data[:pos]


@pytest.mark.parametrize(("data", "code"), [
    (b"", "truncated"),
    (b"\x80", "truncated"),
    (b"\xff\xff\xff", "truncated"),
    (b"\x80\x00", "bad_varuint"),  # lib0 reads 0 here; nobody writes it
    (b"\xff\x80\x00", "bad_varuint"),
    (b"\x80" * 10 + b"\x00", "bad_varuint"),  # longer than 10 bytes
    (b"\x80" * 11, "bad_varuint"),
    (b"\x81\x80\x80\x80\x80\x80\x80\x10", "bad_varuint"),  # 2**53 + 1
    (b"\xff" * 8 + b"\x01", "bad_varuint"),
    (b"\xff" * 20, "bad_varuint"),
])
def test_read_var_uint_rejects(data: bytes, code: str) -> None:
    with raises(code):
        read_var_uint(data)


def test_write_var_uint_rejects_out_of_range() -> None:
    for bad in (-1, MAX_VAR_UINT + 1, 2**64):
        with raises("bad_varuint"):
            write_var_uint(bad)
    with pytest.raises(TypeError):
        write_var_uint(True)
    with pytest.raises(TypeError):
        write_var_uint(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        read_var_uint(b"\x00", -1)


@given(st.binary(max_size=300), st.binary(max_size=3))
def test_var_bytes_round_trip(data: bytes, suffix: bytes) -> None:
    encoded = write_var_bytes(data)
    assert read_var_bytes(encoded + suffix) == (data, len(encoded))
    assert write_var_bytes(bytearray(data)) == write_var_bytes(memoryview(data)) == encoded


@given(st.text(max_size=200))
@example("Zoë 😀 東京 \u2028 \x00")
def test_var_string_round_trip(text: str) -> None:
    encoded = write_var_string(text)
    raw = text.encode("utf-8")
    assert encoded == write_var_uint(len(raw)) + raw  # byte length, not character length
    assert read_var_string(encoded) == (text, len(encoded))


def test_var_string_surrogates_encode_as_javascript_does() -> None:
    # TextEncoder replaces lone surrogates with U+FFFD and joins pairs held as two code units.
    assert write_var_string("a\ud800b") == write_var_string("a\ufffdb")
    assert write_var_string("\ud83d\ude00") == write_var_string("😀")
    assert write_var_string("\udc00\ud83d\ude00\ud83d") == write_var_string("\ufffd😀\ufffd")


@pytest.mark.parametrize(("data", "code"), [
    (b"\x03ab", "truncated"),
    (b"\x80", "truncated"),
    (b"\x02\xc3\x28", "bad_string"),
    (b"\x03\xed\xa0\x80", "bad_string"),  # an encoded surrogate (CESU-8)
    (b"\x02\xc0\xaf", "bad_string"),  # overlong UTF-8
])
def test_read_var_string_rejects(data: bytes, code: str) -> None:
    with raises(code):
        read_var_string(data)


# --- y-websocket messages -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
uints = st.integers(min_value=0, max_value=MAX_VAR_UINT)
entries_strategy = st.lists(st.builds(AwarenessEntry, uints, uints, json_values), max_size=5)
messages_strategy: st.SearchStrategy[Message] = st.one_of(
    st.builds(SyncStep1, st.binary(max_size=200)),
    st.builds(SyncStep2, st.binary(max_size=200)),
    st.builds(SyncUpdate, st.binary(max_size=200)),
    entries_strategy.map(encode_awareness),
    st.builds(PermissionDenied, st.text(max_size=50)),
    st.just(QueryAwareness()),
)


@given(messages_strategy)
def test_message_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


@given(entries_strategy)
def test_awareness_entries_round_trip(entries: list[AwarenessEntry]) -> None:
    assert encode_awareness(entries).entries() == entries


@given(st.binary(max_size=40))
@example(b"\x01\x08\x01\x05\x03\x04null")
@example(b"\x00\x00\x00")
def test_decode_accepts_only_what_encodes_back_identically(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)
    else:
        assert encode_message(msg) == data


@pytest.mark.parametrize("index", range(8))
def test_every_truncation_of_a_valid_message_is_truncated(index: int) -> None:
    data = real_messages()[index]
    decode_message(data)
    for cut in range(len(data)):
        with raises("truncated"):
            decode_message(data[:cut])


@pytest.mark.parametrize("index", range(8))
def test_trailing_bytes_are_rejected(index: int) -> None:
    data = real_messages()[index]
    for extra in (b"\x00", b"\x03", b"garbage"):
        with raises("trailing_bytes"):
            decode_message(data + extra)


@pytest.mark.parametrize("data", [
    b"\x04", b"\x7f", b"\x80\x01", write_var_uint(2**40), b"\x00\x03\x00", b"\x00\x7f\x00", b"\x02\x01\x00",
])
def test_unknown_message_types(data: bytes) -> None:
    with raises("unknown_message"):
        decode_message(data)


def awareness_message(payload: bytes) -> bytes:
    return b"\x01" + write_var_bytes(payload)


def one_state(text: str | bytes) -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return b"\x01\x05\x01" + write_var_bytes(raw)


@pytest.mark.parametrize("state", [
    "", "{", "nul", "undefined", "NaN", "-Infinity", "Infinity", "[1,]", "{'a':1}", "\ufeffnull", "null null",
    "[" * 100_000, "\"\x01\"",
])
def test_awareness_state_must_be_json(state: str) -> None:
    with raises("bad_awareness"):
        decode_message(awareness_message(one_state(state)))
    with raises("bad_awareness"):
        Awareness(one_state(state)).entries()
    with raises("bad_awareness"):
        encode_message(Awareness(one_state(state)))


@pytest.mark.parametrize(("payload", "code"), [
    (b"", "truncated"),
    (b"\x01", "truncated"),
    (b"\x02\x05\x01\x04null", "truncated"),  # says two entries, holds one
    (write_var_uint(2**50) + b"\x00\x00\x00", "truncated"),  # absurd count
    (b"\x01\x05\x01\x04null\x00", "trailing_bytes"),
    (b"\x00\x00", "trailing_bytes"),
    (one_state(b"\"\xff\""), "bad_string"),
    (b"\x01\x80\x00\x01\x04null", "bad_varuint"),
])
def test_awareness_payload_rejects(payload: bytes, code: str) -> None:
    with raises(code):
        decode_message(awareness_message(payload))


def test_awareness_removal_is_json_null() -> None:
    msg = encode_awareness([AwarenessEntry(5, 3, None)])
    assert msg.payload == b"\x01\x05\x03\x04null"
    assert encode_message(msg) == b"\x01\x08\x01\x05\x03\x04null"
    assert decode_message(encode_message(msg)) == msg
    assert msg.entries() == [AwarenessEntry(5, 3, None)]


def test_awareness_states_are_written_as_json_stringify_writes_them() -> None:
    state = {"user": {"name": "Zoë 😀 \"q\"\n\\", "color": "#ff8800"}, "cursor": None, "n": [1, -2, True]}
    payload = encode_awareness([AwarenessEntry(1, 2, state)]).payload
    text = '{"user":{"name":"Zoë 😀 \\"q\\"\\n\\\\","color":"#ff8800"},"cursor":null,"n":[1,-2,true]}'
    assert payload == b"\x01\x01\x02" + write_var_string(text)
    # Lone surrogates are escaped (JSON.stringify since ES2019); pairs held as two code points are joined.
    lone = encode_awareness([AwarenessEntry(1, 2, {"s": "a\ud800b", "p": "\ud83d\ude00"})]).payload
    assert lone == b"\x01\x01\x02" + write_var_string('{"s":"a\\ud800b","p":"😀"}')
    assert encode_awareness([AwarenessEntry(1, 2, {"s": "a\ud800b"})]).entries()[0].state == {"s": "a\ud800b"}


@pytest.mark.parametrize("state", [float("nan"), float("inf"), {1, 2}, object(), {"a": b"bytes"}])
def test_awareness_states_that_are_not_json_are_refused(state: Any) -> None:
    with raises("bad_awareness"):
        encode_awareness([AwarenessEntry(1, 1, state)])


def test_awareness_ids_out_of_range_are_refused() -> None:
    with raises("bad_varuint"):
        encode_awareness([AwarenessEntry(-1, 1, None)])
    with raises("bad_varuint"):
        encode_awareness([AwarenessEntry(1, 2**53 + 1, None)])


def test_sync_messages_match_pycrdt() -> None:
    doc = real_doc()
    state = doc.get_state()
    update = doc.get_update()
    assert pycrdt.create_sync_message(doc) == encode_message(SyncStep1(state))
    assert pycrdt.create_update_message(update) == encode_message(SyncUpdate(update))
    assert decode_message(pycrdt.create_sync_message(doc)) == SyncStep1(state)
    assert decode_message(pycrdt.create_update_message(update)) == SyncUpdate(update)

    # pycrdt answers our step 1 (from an empty doc) with a step 2 we can read and apply.
    fresh: Doc[Any] = Doc()
    reply = pycrdt.handle_sync_message(encode_message(SyncStep1(fresh.get_state()))[1:], doc)
    assert reply is not None
    step2 = decode_message(reply)
    assert isinstance(step2, SyncStep2)
    fresh.apply_update(step2.update)
    assert str(fresh.get("content", type=Text)) == str(doc.get("content", type=Text))
    assert fresh.get("meta", type=Map).to_py() == {"title": "Zoë\u2019s PRD"}

    # ... and applies our step 2 and update messages.
    other: Doc[Any] = Doc()
    assert pycrdt.handle_sync_message(encode_message(SyncStep2(update))[1:], other) is None
    before = other.get_state()
    doc.get("content", type=Text).insert(0, "prefix ")
    pycrdt.handle_sync_message(encode_message(SyncUpdate(doc.get_update(before)))[1:], other)
    assert str(other.get("content", type=Text)) == str(doc.get("content", type=Text))


def test_awareness_matches_pycrdt() -> None:
    doc: Doc[Any] = Doc(client_id=2**52 + 5)  # yrs picks 53-bit client ids; Yjs picks uint32
    awareness = pycrdt.Awareness(doc)
    awareness.set_local_state({"user": {"name": "alice", "color": "#123456"}, "cursor": None})
    payload = awareness.encode_awareness_update([doc.client_id])
    message = pycrdt.create_awareness_message(payload)
    decoded = decode_message(message)
    assert decoded == Awareness(payload)
    entry = AwarenessEntry(doc.client_id, 1, {"user": {"name": "alice", "color": "#123456"}, "cursor": None})
    assert decoded.entries() == [entry]
    assert encode_message(encode_awareness([entry])) == message  # identical for ASCII states

    other: Doc[Any] = Doc()
    receiver = pycrdt.Awareness(other)
    receiver.apply_awareness_update(encode_awareness([entry]).payload, "test")
    assert receiver.states[doc.client_id] == entry.state
    receiver.apply_awareness_update(encode_awareness([AwarenessEntry(doc.client_id, 2, None)]).payload, "test")
    assert doc.client_id not in receiver.states


def test_permission_denied_and_query_awareness_bytes() -> None:
    assert encode_message(PermissionDenied("no")) == b"\x02\x00\x02no"
    assert encode_message(QueryAwareness()) == b"\x03"
    assert decode_message(b"\x02\x00\x00") == PermissionDenied("")
    with raises("bad_string"):
        decode_message(b"\x02\x00\x01\xff")


def test_encode_message_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        encode_message("not a message")  # type: ignore[arg-type]


def test_protocol_error_is_a_value_error_with_a_frame() -> None:
    with pytest.raises(ValueError) as info:
        decode_message(b"")
    exc = info.value
    assert isinstance(exc, ProtocolError) and exc.code == "truncated"
    assert json.loads(exc.to_frame()) == {"action": "error", "code": "truncated", "message": exc.message}


# --- frames ------------------------------------------------------------------------------------------------


def test_small_message_is_one_plain_frame() -> None:
    message = encode_message(SyncUpdate(real_doc().get_update()))
    frames = encode_frames(message)
    assert frames == [json.dumps({"action": "y", "data": base64.b64encode(message).decode()}, separators=(",", ":"))]
    frame = parse_frame(frames[0])
    assert (frame.action, frame.chunk, frame.message) == ("y", None, message)
    assert ChunkAssembler().add(frame) == message


def test_chunking_threshold_is_98304_base64_characters() -> None:
    at_limit = bytes(MAX_FRAME_DATA_CHARS // 4 * 3)
    assert len(encode_frames(at_limit)) == 1
    assert len(json.loads(encode_frames(at_limit)[0])["data"]) == MAX_FRAME_DATA_CHARS
    over = encode_frames(at_limit + b"\x01")
    assert [json.loads(f)["chunk"]["n"] for f in over] == [2, 2]
    assert [len(json.loads(f)["data"]) for f in over] == [MAX_FRAME_DATA_CHARS, 4]


MEGABYTE = random.Random(7).randbytes(1_000_000)


def test_a_megabyte_message_is_chunked_within_limits() -> None:
    frames = encode_frames(MEGABYTE, chunk_id_factory=lambda: "big-1")
    b64_len = len(base64.b64encode(MEGABYTE))
    assert len(frames) == math.ceil(b64_len / MAX_FRAME_DATA_CHARS) == 14
    for k, text in enumerate(frames):
        assert len(text.encode("utf-8")) <= MAX_FRAME_CHARS
        frame = parse_frame(text)
        assert frame.chunk == ChunkInfo("big-1", k, 14)
        assert frame.message is None and frame.data is not None and len(frame.data) <= MAX_FRAME_DATA_CHARS
    parts = [json.loads(f)["data"] for f in frames]
    assert join_chunk_parts(parts) == MEGABYTE


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(14)), resent=st.lists(st.integers(0, 13), max_size=4))
def test_chunks_reassemble_in_any_order(order: list[int], resent: list[int]) -> None:
    frames = [parse_frame(f) for f in encode_frames(MEGABYTE)]
    assembler = ChunkAssembler()
    arrivals = resent + order  # identical resends are ignored while the set is open
    results = [assembler.add(frames[k], now=0.0) for k in arrivals]
    complete_at = next(n for n in range(len(arrivals)) if len(set(arrivals[: n + 1])) == 14)
    assert results[complete_at] == MEGABYTE
    assert [r for n, r in enumerate(results) if n != complete_at] == [None] * (len(results) - 1)
    # A resend after completion starts a new set that simply expires.
    assert assembler.pending == (1 if complete_at < len(arrivals) - 1 else 0)
    assembler.expire(now=31.0)
    assert assembler.pending == 0 and assembler.buffered_chars == 0


def test_default_chunk_ids_are_random_and_valid() -> None:
    ids = {json.loads(encode_frames(MEGABYTE)[0])["chunk"]["id"] for _ in range(3)}
    assert len(ids) == 3
    for chunk_id in ids:
        validate_chunk({"id": chunk_id, "i": 0, "n": 1})


def test_encode_frames_limits() -> None:
    largest = bytes(MAX_MESSAGE_BYTES)
    frames = encode_frames(largest)
    assert len(frames) == MAX_CHUNKS
    assert all(len(f) <= MAX_FRAME_CHARS for f in frames)
    with raises("too_large"):
        encode_frames(largest + b"\x00")
    for bad_id in ("", "x" * 65, "has space", "ü"):
        with pytest.raises(ValueError):
            encode_frames(bytes(100_000), chunk_id_factory=functools.partial(str, bad_id))


def y_frame(data: Any, **extra: Any) -> str:
    return json.dumps({"action": "y", "data": data, **extra})


@pytest.mark.parametrize(("text", "code"), [
    ("x" * (MAX_FRAME_CHARS + 1), "too_large"),
    (y_frame("A" * MAX_FRAME_CHARS), "too_large"),
    ('{"action":"y","data":"' + "ü" * 70_000 + '"}', "too_large"),  # 70,000 characters but 140,000+ bytes
    (y_frame("QUFB" * (MAX_FRAME_DATA_CHARS // 4 + 1)), "too_large"),  # data over 98,304, unchunked
    (y_frame("QUFB" * (MAX_FRAME_DATA_CHARS // 4 + 1), chunk={"id": "a", "i": 0, "n": 2}), "too_large"),
    ("", "invalid_json"),
    ("not json", "invalid_json"),
    ('{"action": "y", "data": "AA=="', "invalid_json"),
    ("[" * 100_000, "invalid_json"),
    ("[]", "invalid_frame"),
    ("1", "invalid_frame"),
    ('"y"', "invalid_frame"),
    ("null", "invalid_frame"),
    ("{}", "invalid_frame"),
    ('{"action": 1}', "invalid_frame"),
    ('{"action": null}', "invalid_frame"),
    ('{"action": "y"}', "invalid_frame"),
    (y_frame(None), "invalid_frame"),
    (y_frame(123), "invalid_frame"),
    (y_frame(["AA=="]), "invalid_frame"),
    (y_frame("AA="), "bad_base64"),
    (y_frame("AA"), "bad_base64"),
    (y_frame("AB=="), "bad_base64"),  # non-zero padding bits: not canonical
    (y_frame("AAB="), "bad_base64"),
    (y_frame("AA==AA=="), "bad_base64"),
    (y_frame(" AA=="), "bad_base64"),
    (y_frame("AA==\n"), "bad_base64"),
    (y_frame("-_8="), "bad_base64"),  # base64url is not accepted
    (y_frame("ÀÀ=="), "bad_base64"),
    (y_frame("A"), "bad_base64"),
    (y_frame("AA A", chunk={"id": "a", "i": 0, "n": 2}), "bad_base64"),
    (y_frame("AA-_", chunk={"id": "a", "i": 0, "n": 2}), "bad_base64"),
])
def test_parse_frame_rejects(text: str, code: str) -> None:
    with raises(code):
        parse_frame(text)


@pytest.mark.parametrize("chunk", [
    None, "a", [], 1, {}, {"i": 0, "n": 1}, {"id": "", "i": 0, "n": 1}, {"id": "x" * 65, "i": 0, "n": 1},
    {"id": "a b", "i": 0, "n": 1}, {"id": "a/b", "i": 0, "n": 1}, {"id": "ü", "i": 0, "n": 1},
    {"id": 5, "i": 0, "n": 1}, {"id": "a", "n": 1}, {"id": "a", "i": 0}, {"id": "a", "i": -1, "n": 1},
    {"id": "a", "i": 1, "n": 1}, {"id": "a", "i": 0, "n": 0}, {"id": "a", "i": 0, "n": MAX_CHUNKS + 1},
    {"id": "a", "i": True, "n": 2}, {"id": "a", "i": 0, "n": True}, {"id": "a", "i": 0.0, "n": 2},
    {"id": "a", "i": "0", "n": 2}, {"id": "a", "i": 0, "n": 2.5},
])
def test_bad_chunk_metadata(chunk: Any) -> None:
    with raises("bad_chunk"):
        parse_frame(y_frame("AAAA", chunk=chunk))
    with raises("bad_chunk"):
        validate_chunk(chunk)


def test_chunk_metadata_boundaries() -> None:
    assert validate_chunk({"id": "A-z_9" * 12 + "abcd", "i": MAX_CHUNKS - 1, "n": MAX_CHUNKS, "x": 1}) == ChunkInfo(
        "A-z_9" * 12 + "abcd", MAX_CHUNKS - 1, MAX_CHUNKS)
    frame = parse_frame(y_frame("AB", chunk={"id": "a", "i": 0, "n": 3}))  # parts need not be decodable alone
    assert (frame.data, frame.chunk, frame.message) == ("AB", ChunkInfo("a", 0, 3), None)


def test_parse_frame_other_actions_and_bytes() -> None:
    frame = parse_frame('{"action": "ping", "id": 7}')
    assert (frame.action, frame.fields, frame.data, frame.message) == ("ping", {"action": "ping", "id": 7}, None, None)
    assert parse_frame(b'{"action":"y","data":"Aw=="}').message == b"\x03"
    with raises("invalid_json"):
        parse_frame(b'{"action":"\xff"}')
    assert parse_frame(y_frame("")).message == b""
    assert parse_frame(y_frame("A" * MAX_FRAME_DATA_CHARS)).message == b"\x00" * (MAX_FRAME_DATA_CHARS // 4 * 3)


def test_join_chunk_parts_rejects() -> None:
    with raises("bad_chunk"):
        join_chunk_parts([])
    with raises("bad_chunk"):
        join_chunk_parts(["AAAA"] * (MAX_CHUNKS + 1))
    with raises("bad_chunk"):
        join_chunk_parts(["A" * (MAX_FRAME_DATA_CHARS + 4)])
    with raises("bad_base64"):
        join_chunk_parts(["AA", "A"])
    assert join_chunk_parts(["A", "A", "=="]) == b"\x00"


# --- chunk assembler -----------------------------------------------------------------------------------------


def chunk_frames(message: bytes, chunk_id: str = "c1") -> list[p.Frame]:
    return [parse_frame(f) for f in encode_frames(message, chunk_id_factory=lambda: chunk_id)]


BIG = random.Random(3).randbytes(200_000)  # 266,668 base64 characters: 3 parts


def test_assembler_duplicate_part_with_other_data_drops_the_set() -> None:
    frames = chunk_frames(BIG)
    assembler = ChunkAssembler()
    assert assembler.add(frames[0], now=0) is None
    assert assembler.add(frames[0], now=0) is None  # identical resend: ignored
    assert assembler.buffered_chars == MAX_FRAME_DATA_CHARS
    forged = parse_frame(y_frame("B" * 8, chunk={"id": "c1", "i": 0, "n": 3}))
    with raises("bad_chunk"):
        assembler.add(forged, now=0)
    assert assembler.pending == 0 and assembler.buffered_chars == 0


def test_assembler_inconsistent_n_drops_the_set() -> None:
    frames = chunk_frames(BIG)
    assembler = ChunkAssembler()
    assembler.add(frames[0], now=0)
    with raises("bad_chunk"):
        assembler.add(parse_frame(y_frame("AAAA", chunk={"id": "c1", "i": 1, "n": 4})), now=0)
    assert assembler.pending == 0
    # The rest of the set can no longer complete it; it starts a new set that expires.
    assert assembler.add(frames[1], now=1) is None
    assert assembler.add(frames[2], now=1) is None
    assert assembler.expire(now=40) == ["c1"]


def test_assembler_expiry() -> None:
    frames = chunk_frames(BIG)
    now = [100.0]
    assembler = ChunkAssembler(clock=lambda: now[0])
    assert assembler.add(frames[0]) is None
    now[0] = 130.0
    assert assembler.expire() == []  # exactly 30 s: still fine
    assert assembler.add(frames[1]) is None
    now[0] = 130.5
    assert assembler.expire() == ["c1"]  # counted from the first part, not the last
    assert assembler.pending == 0 and assembler.buffered_chars == 0
    # add() expires by itself: a late last part starts a fresh, incomplete set.
    assembler2 = ChunkAssembler(timeout=5)
    assembler2.add(frames[0], now=0)
    assembler2.add(frames[1], now=1)
    assert assembler2.add(frames[2], now=6) is None
    assert assembler2.pending == 1 and assembler2.buffered_chars == len(frames[2].data or "")
    # Parts within the timeout complete.
    assembler3 = ChunkAssembler()
    assert [assembler3.add(f, now=t) for f, t in zip(frames, (0, 10, 29.9), strict=True)] == [None, None, BIG]


def test_assembler_caps_open_sets() -> None:
    assembler = ChunkAssembler(max_sets=3)
    for k in range(3):
        assembler.add(chunk_frames(BIG, f"s{k}")[0], now=0)
    with raises("chunk_limit"):
        assembler.add(chunk_frames(BIG, "s3")[0], now=0)
    assert assembler.pending == 3
    # Parts of open sets are still taken, and completing one frees a slot.
    frames = chunk_frames(BIG, "s0")
    assert assembler.add(frames[1], now=0) is None
    assert assembler.add(frames[2], now=0) == BIG
    assert assembler.add(chunk_frames(BIG, "s3")[0], now=0) is None
    # Expiry frees slots too.
    assert sorted(assembler.expire(now=31)) == ["s1", "s2", "s3"]


def test_assembler_caps_buffered_characters() -> None:
    assembler = ChunkAssembler(max_buffered_chars=3 * MAX_FRAME_DATA_CHARS)
    a, b = chunk_frames(BIG, "a"), chunk_frames(BIG, "b")
    assembler.add(a[0], now=0)
    assembler.add(a[1], now=0)
    assembler.add(b[0], now=0)
    with raises("chunk_limit"):
        assembler.add(b[1], now=0)
    assert assembler.pending == 1 and assembler.buffered_chars == 2 * MAX_FRAME_DATA_CHARS  # "b" dropped
    assert assembler.add(a[2], now=0) == BIG
    assert assembler.buffered_chars == 0


def test_assembler_survives_a_flood_of_never_completing_chunks() -> None:
    assembler = ChunkAssembler()
    rng = random.Random(11)
    refused = 0
    part = "A" * MAX_FRAME_DATA_CHARS
    for k in range(3_000):
        chunk = {"id": f"f{rng.randrange(10_000)}", "i": rng.randrange(MAX_CHUNKS - 1), "n": MAX_CHUNKS}
        try:
            assembler.add(parse_frame(y_frame(part, chunk=chunk)), now=k * 0.01)
        except ProtocolError as exc:
            assert exc.code in {"chunk_limit", "bad_chunk"}
            refused += 1
        assert assembler.pending <= p.MAX_CHUNK_SETS
        assert assembler.buffered_chars <= p.MAX_BUFFERED_CHARS
    assert refused > 0
    assembler.expire(now=10_000)
    assert assembler.pending == 0 and assembler.buffered_chars == 0


def test_assembler_bad_base64_across_parts_and_other_frames() -> None:
    assembler = ChunkAssembler()
    assembler.add(parse_frame(y_frame("AAA", chunk={"id": "x", "i": 0, "n": 2})), now=0)
    with raises("bad_base64"):
        assembler.add(parse_frame(y_frame("AAA", chunk={"id": "x", "i": 1, "n": 2})), now=0)
    assert assembler.pending == 0
    with raises("invalid_frame"):
        assembler.add(parse_frame('{"action": "ping"}'))


# --- error frames ------------------------------------------------------------------------------------------------


def test_error_frame() -> None:
    text = error_frame("bad_base64", "data is not base64 — ü")
    assert text == '{"action":"error","code":"bad_base64","message":"data is not base64 — ü"}'
    long = json.loads(error_frame(ErrorCode.TOO_LARGE, "x" * 5_000))
    assert long["code"] == "too_large" and len(long["message"]) == 1_000 and long["message"].endswith("…")
