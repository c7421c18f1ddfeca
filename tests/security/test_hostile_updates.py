"""Updates built to hurt: allocation bombs, deep nesting, oversized updates, chunk sets that never
complete.  Each is refused with an error frame; the stored document stays intact; the session and
the function's container go on (a crash of the container would answer with API Gateway's own
"Internal server error" frame instead)."""

from __future__ import annotations

import json
import time

from prdtool.collab.limits import MAX_ACCEPTED_CHUNKS, MAX_OPEN_CHUNK_SETS, MAX_UPDATE_BYTES
from prdtool.collab.protocol import MAX_FRAME_DATA_CHARS, SyncUpdate, encode_message
from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login
from tests.unit.yjs_bytes import any_content_update, deep_any, var_uint


def _prd(alice: Api) -> str:
    created = alice.post("/api/prds", {"title": "Hostile", "markdown": "# Hostile\n\nintact\n"})
    assert created.status_code == 201, created.text
    prd_id = str(created.json()["id"])
    assert alice.put(f"/api/prds/{prd_id}/members/bob", {"role": "editor"}).status_code == 200
    return prd_id


def _refused(client: YClient, frame_id: str, code: str) -> None:
    client.wait_until(lambda: any(e.get("id") == frame_id for e in client.errors), timeout=30,
                      what=f"an error frame for {frame_id}")
    error = next(e for e in client.errors if e.get("id") == frame_id)
    assert error.get("code") == code, error


def _still_works(client: YClient, alice: Api, prd_id: str, marker: str) -> None:
    client.append(marker)
    client.flush(timeout=60)
    markdown = str(alice.get(f"/api/prds/{prd_id}").json()["markdown"])
    assert "intact" in markdown and marker in markdown
    assert not any("Internal server error" in json.dumps(e) for e in client.errors), client.errors


def test_deeply_nested_values_are_refused_without_crashing_the_container(stack: LocalStack, alice: Api) -> None:
    prd_id = _prd(alice)
    with YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as bob:
        # 100,000 nested arrays (200 KB): pycrdt 0.14 overflows its stack applying this (SIGSEGV).
        bomb = any_content_update(deep_any(100_000))
        bob._send(encode_message(SyncUpdate(bomb)), ack_id="deep")
        _refused(bob, "deep", "too_deep")
        _still_works(bob, alice, prd_id, "after the bomb")


def test_allocation_bombs_are_refused(stack: LocalStack, alice: Api) -> None:
    prd_id = _prd(alice)
    with YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as bob:
        claims_many_clients = var_uint(2**50) + b"\x00"
        claims_huge_string = (var_uint(1) + var_uint(1) + var_uint(7) + var_uint(0) + bytes([4]) + var_uint(1)
                              + var_uint(7) + b"content" + var_uint(2**40) + b"ab")
        for name, update in (("clients", claims_many_clients), ("string", claims_huge_string)):
            bob._send(encode_message(SyncUpdate(update)), ack_id=name)
            _refused(bob, name, "bad_update")
        _still_works(bob, alice, prd_id, "after the allocation bombs")


def test_an_oversized_update_is_refused_before_it_is_stored(stack: LocalStack, alice: Api) -> None:
    prd_id = _prd(alice)
    with YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as bob:
        # A real update (a paste), just over the limit: sent in chunks, refused once joined.
        from pycrdt import Doc, Text

        doc: Doc = Doc()
        doc.get("content", type=Text).insert(0, "x" * (MAX_UPDATE_BYTES + 1000))
        bob._send(encode_message(SyncUpdate(doc.get_update())), ack_id="paste")
        _refused(bob, "paste", "too_large")
        _still_works(bob, alice, prd_id, "after the big paste")
    assert "xxxxxxxxxx" not in str(alice.get(f"/api/prds/{prd_id}").json()["markdown"])


def test_chunk_sets_are_bounded(stack: LocalStack, alice: Api) -> None:
    prd_id = _prd(alice)
    with YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob") as bob:
        part = "A" * MAX_FRAME_DATA_CHARS
        too_many = {"action": "y", "data": part, "id": "n",
                    "chunk": {"id": "big", "i": 0, "n": MAX_ACCEPTED_CHUNKS + 1}}
        bob.send_raw(json.dumps(too_many))
        _refused(bob, "n", "too_large")
        # Incomplete sets: one connection may leave MAX_OPEN_CHUNK_SETS waiting; more are refused.
        ids = [f"open{k}" for k in range(MAX_OPEN_CHUNK_SETS + 1)]
        for chunk_id in ids:
            bob.send_raw(json.dumps({"action": "y", "data": part, "id": chunk_id,
                                     "chunk": {"id": chunk_id, "i": 0, "n": 3}}))
            time.sleep(0.5)  # frames of one connection run concurrently; keep the order of arrival
        bob.wait_until(lambda: any(e.get("code") == "chunk_limit" and e.get("id") in ids for e in bob.errors),
                       timeout=30, what="chunk_limit")
        _still_works(bob, alice, prd_id, "after the chunks")
