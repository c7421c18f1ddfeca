"""The protocol codec against the real JavaScript libraries (yjs, y-protocols, lib0 in Node).

``tests/interop/ymessages.mjs generate`` writes messages with y-protocols' own encoders; we decode them and
re-encode them byte for byte.  ``ymessages.mjs apply`` feeds messages written by our encoder to y-protocols
exactly as the y-websocket provider does, and reports what the Y.Doc and Awareness ended up holding.
Needs Node; ``node_modules`` is installed from the lock file on first use (``npm ci``).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from prdtool.collab.protocol import (
    Awareness,
    AwarenessEntry,
    ChunkAssembler,
    ErrorCode,
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
    parse_frame,
    read_var_string,
    read_var_uint,
    write_var_string,
    write_var_uint,
)

pytestmark = pytest.mark.interop

INTEROP = Path(__file__).resolve().parents[1] / "interop"

type RunNode = Callable[[str, Any], Any]


def b64(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


@pytest.fixture(scope="session")
def node() -> RunNode:
    """Runs ``ymessages.mjs <command>`` (JSON in on stdin, JSON out); installs node_modules once."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the Yjs interop tests")
    if not (INTEROP / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(INTEROP), "--no-audit", "--no-fund"],
                       check=True, capture_output=True, timeout=240)

    def run(command: str, payload: Any = None) -> Any:
        done = subprocess.run(["node", str(INTEROP / "ymessages.mjs"), command], cwd=INTEROP,
                              input=json.dumps(payload) if payload is not None else "", text=True,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


@pytest.fixture(scope="session")
def generated(node: RunNode) -> dict[str, Any]:
    return dict(node("generate", None))


def cases(generated: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = [c for c in generated["cases"] if c["kind"] == kind]
    assert found, kind
    return found


def content(doc: Doc) -> tuple[str, dict[str, Any]]:
    return str(doc.get("content", type=Text)), dict(doc.get("meta", type=Map).to_py() or {})


def test_the_pinned_libraries_are_the_ones_running(generated: dict[str, Any]) -> None:
    pins = json.loads((INTEROP / "package.json").read_text())["dependencies"]
    assert generated["versions"] == pins
    assert pins["yjs"].startswith("13.") and pins["y-protocols"].startswith("1.0.")


# --- JS → Python -----------------------------------------------------------------------------------------------


def test_sync_step1_from_yjs(generated: dict[str, Any]) -> None:
    for case in cases(generated, "sync_step1"):
        message = b64(case["message"])
        decoded = decode_message(message)
        assert decoded == SyncStep1(b64(case["state_vector"])), case["name"]
        assert encode_message(decoded) == message
    empty = next(c for c in generated["cases"] if c["name"] == "sync_step1_empty_doc")
    assert b64(empty["message"]) == bytes([0, 0, 1, 0])  # an empty state vector is varUint 0
    assert b64(empty["state_vector"]) == Doc().get_state()


def test_sync_step2_from_yjs_applies_in_pycrdt(generated: dict[str, Any]) -> None:
    for case in cases(generated, "sync_step2"):
        message = b64(case["message"])
        decoded = decode_message(message)
        assert decoded == SyncStep2(b64(case["update"])), case["name"]
        assert encode_message(decoded) == message
        doc: Doc[Any] = Doc()
        if "base_update" in case:
            doc.apply_update(b64(case["base_update"]))
        doc.apply_update(decoded.update)
        assert content(doc) == (case["text"], case["meta"]), case["name"]
    empty = next(c for c in generated["cases"] if c["name"] == "sync_step2_empty_doc")
    assert b64(empty["update"]) == b"\x00\x00"


def test_sync_updates_from_yjs_replay_in_pycrdt(generated: dict[str, Any]) -> None:
    doc: Doc[Any] = Doc()
    for case in cases(generated, "sync_update"):
        message = b64(case["message"])
        decoded = decode_message(message)
        assert decoded == SyncUpdate(b64(case["update"]))
        assert encode_message(decoded) == message
        doc.apply_update(decoded.update)
    full = next(c for c in generated["cases"] if c["name"] == "sync_step2_full")
    assert content(doc) == (full["text"], full["meta"])


def test_awareness_from_y_protocols(generated: dict[str, Any]) -> None:
    for case in cases(generated, "awareness"):
        message = b64(case["message"])
        decoded = decode_message(message)
        assert isinstance(decoded, Awareness)
        assert encode_message(decoded) == message
        expected = [AwarenessEntry(e["client_id"], e["clock"], e["state"]) for e in case["entries"]]
        assert decoded.entries() == expected, case["name"]
        # Our JSON writer spells these states exactly as JSON.stringify did.
        assert encode_awareness(expected) == decoded
    removed = next(c for c in generated["cases"] if c["name"] == "awareness_one_removed")
    entries = decode_message(b64(removed["message"]))
    assert isinstance(entries, Awareness)
    gone = entries.entries()[1]
    assert (gone.client_id, gone.clock, gone.state) == (2**32 - 1, 2, None)
    assert b'\x04null' in entries.payload


def test_auth_and_query_awareness_from_y_protocols(generated: dict[str, Any]) -> None:
    (denied,) = cases(generated, "permission_denied")
    assert decode_message(b64(denied["message"])) == PermissionDenied(denied["reason"])
    assert encode_message(PermissionDenied(denied["reason"])) == b64(denied["message"])
    (query,) = cases(generated, "query_awareness")
    assert b64(query["message"]) == b"\x03" == encode_message(QueryAwareness())


def test_chunk_frames_written_by_javascript(generated: dict[str, Any]) -> None:
    (case,) = [c for c in generated["cases"] if "frames" in c]
    message = b64(case["message"])
    frames = case["frames"]
    assert len(frames) == 3
    # Our framing is byte-identical to JSON.stringify of the same objects ...
    assert encode_frames(message, chunk_id_factory=lambda: "js-chunk-1") == frames
    # ... and we reassemble theirs in any order.
    for order in ([2, 1, 0], [1, 2, 0], [0, 1, 2]):
        assembler = ChunkAssembler()
        results = [assembler.add(parse_frame(frames[k]), now=0) for k in order]
        assert results == [None, None, message]
    decoded = decode_message(message)
    assert isinstance(decoded, SyncStep2)
    doc: Doc[Any] = Doc()
    doc.apply_update(decoded.update)
    assert content(doc) == (case["text"], case["meta"])


def test_lib0_primitives(generated: dict[str, Any]) -> None:
    prims = generated["primitives"]
    for item in prims["var_uint"]:
        raw = b64(item["bytes"])
        assert write_var_uint(item["value"]) == raw, item
        assert read_var_uint(raw) == (item["value"], len(raw))
    for item in prims["var_string"]:
        raw = b64(item["bytes"])
        value: str = item["value"]
        assert write_var_string(value) == raw, value[:40]
        # TextEncoder turned lone surrogates into U+FFFD, so that is what comes back.
        expected = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        assert read_var_string(raw) == (expected, len(raw))
    for item in prims["lenient_reads"]:
        # lib0 reads redundant zero groups; we refuse them (nobody writes them).
        assert item["value"] in (0, 127)
        with pytest.raises(ProtocolError) as info:
            read_var_uint(b64(item["bytes"]))
        assert info.value.code == ErrorCode.BAD_VARUINT


# --- Python → JS ---------------------------------------------------------------------------------------------


def test_our_messages_apply_in_y_protocols(node: RunNode) -> None:
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    meta = doc.get("meta", type=Map)
    text.insert(0, "# Zoë\u2019s PRD 🚀\n\n東京 — goals\n")
    meta["title"] = "Zoë\u2019s PRD 🚀"
    full = doc.get_update()
    before = doc.get_state()
    text.insert(len(text), "- ship ✓\n")  # pycrdt Text offsets are UTF-8 byte offsets
    del text[0:2]
    meta["status"] = "review"
    incremental = doc.get_update(before)

    big: Doc[Any] = Doc()
    rng = random.Random(5)
    big.get("content", type=Text).insert(0, "".join(rng.choice("abcdefgh ünï😀\n") for _ in range(150_000)))
    big_message = encode_message(SyncStep2(big.get_update()))
    big_frames = encode_frames(big_message)
    assert len(big_frames) >= 2

    alice = {"user": {"name": "Zoë 😀", "color": "#ff8800"}, "cursor": {"anchor": 1, "head": 4}}
    steps = [
        {"message": encode_message(SyncStep2(full))},
        {"message": encode_message(SyncUpdate(incremental))},
        {"message": encode_message(SyncStep1(Doc().get_state()))},
        {"message": encode_message(SyncStep1(doc.get_state()))},
        {"message": encode_message(encode_awareness([AwarenessEntry(7, 1, alice)]))},
        {"message": encode_message(encode_awareness([AwarenessEntry(4294967295, 2, {"user": {"name": "東京"}})]))},
        {"message": encode_message(encode_awareness([AwarenessEntry(4294967295, 3, None)]))},  # removal
        {"message": encode_message(PermissionDenied("read-only — 🔒"))},
        {"message": encode_message(QueryAwareness())},
    ]
    wire: list[dict[str, Any]] = [{"message": base64.b64encode(s["message"]).decode()} for s in steps]
    wire.append({"frames": big_frames})
    out = node("apply", {"steps": wire})

    results = out["results"]
    assert [r["error"] for r in results] == [None] * len(results)
    assert all(r["consumed"] for r in results)
    assert [r["type"] for r in results] == [0, 0, 0, 0, 1, 1, 1, 2, 3, 0]
    assert content(doc)[1] == {"title": "Zoë\u2019s PRD 🚀", "status": "review"}
    # The last step, a chunked step 2 (DESIGN 3.2 frames, joined by the JS side), merged a second
    # document's content into the same Y.Text.
    merged: Doc[Any] = Doc()
    merged.apply_update(doc.get_update())
    merged.apply_update(big.get_update())
    assert (out["text"], out["meta"]) == content(merged)
    assert len(out["text"]) == len(str(text)) + 150_000

    # Their step 2 answer to our empty step 1 rebuilds the document in pycrdt.  To our up-to-date step 1
    # it carries no structs (first varUint 0) but still the whole delete set: Yjs always sends it.
    reply = decode_message(b64(results[2]["reply"]))
    assert isinstance(reply, SyncStep2)
    rebuilt: Doc[Any] = Doc()
    rebuilt.apply_update(reply.update)
    assert content(rebuilt) == content(doc)
    up_to_date = decode_message(b64(results[3]["reply"]))
    assert isinstance(up_to_date, SyncStep2)
    assert up_to_date.update[0] == 0 and up_to_date.update != b"\x00\x00"
    rebuilt.apply_update(up_to_date.update)
    assert content(rebuilt) == content(doc)

    assert out["awareness"] == [{"client_id": 7, "state": alice}]
    assert out["awareness_clocks"] == [{"client_id": 7, "clock": 1}, {"client_id": 4294967295, "clock": 3}]
    assert results[7]["denied"] == "read-only — 🔒"
    assert results[8]["query"] is True

