"""Real-time co-editing through the local stack with real Yjs clients (pycrdt).

Every test checks content, on the clients and on the server (`GET /api/prds/{id}`, which is the
stored snapshot plus every stored update).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from prdtool.collab.protocol import SyncUpdate, encode_frames, encode_message
from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient, frame
from tests.integration.fixtures import Api

pytestmark = pytest.mark.e2e
Factory = Callable[..., YClient]


def server_markdown(api: Api, prd_id: str) -> str:
    response = api.get(f"/api/prds/{prd_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["markdown"])


def test_two_editors_typing_at_once_converge(client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    a, b = client_factory("alice"), client_factory("bob")

    def type_words(client: YClient, tag: str) -> None:
        for i in range(25):
            client.append(f"{tag}{i} ")
            time.sleep(0.01)

    threads = [threading.Thread(target=type_words, args=(c, t)) for c, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"a{i}" for i in range(25)} | {f"b{i}" for i in range(25)}
    for client in (a, b):
        client.flush()  # durable once acknowledged; unacknowledged updates are resent
    for client in (a, b):
        client.resync()  # gap repair, as every provider does: relays are best effort and unordered
    for client in (a, b):
        client.wait_until(lambda c=client: expected <= set(c.content().split()), what="all 50 words")
    a.wait_until(lambda: a.content() == b.content(), what="identical content")
    assert server_markdown(alice, prd["id"]) == a.content()


def test_a_late_joiner_gets_everything(client_factory: Factory, prd: dict[str, Any]) -> None:
    a = client_factory("alice")
    a.append("Written before anyone else came.\n")
    a.flush()  # stored before the joiner arrives
    late = client_factory("carol")  # a viewer may read
    assert late.content() == a.content()
    assert "Written before anyone else came." in late.content()


def test_a_viewer_cannot_edit(client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    editor, viewer = client_factory("bob"), client_factory("carol")
    before = server_markdown(alice, prd["id"])
    viewer.append("carol was here")
    viewer.wait_until(lambda: any(e.get("code") == "read_only" for e in viewer.errors), what="read_only error")
    editor.append("bob was here")
    viewer.wait_until(lambda: "bob was here" in viewer.content(), what="bob's edit")
    after = server_markdown(alice, prd["id"])
    assert "carol was here" not in after and "carol was here" not in editor.content()
    assert after == before + "bob was here"


def test_clients_in_sync_answering_with_known_deletions_are_not_editing(
        client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    """A step 2 carries the client's whole delete set: a viewer in sync is not refused (its client
    would resend forever, "Saving..."), and an editor in sync is not stored as an author."""
    writer = client_factory("alice")
    writer.append("abc")
    writer.flush()
    writer.delete(len(writer.content()) - 1, 1)  # the document now has a deletion (the "c")
    writer.flush()
    viewer, editor = client_factory("carol"), client_factory("bob")
    for client in (viewer, editor):
        client.close()
        client.connect()  # its step 2 answers the server's step 1 with the delete set it holds
        client.resync()
    time.sleep(1)  # an answer to a refused step 2 would have arrived by now
    assert not viewer.errors and not editor.errors, (viewer.errors, editor.errors)
    saved = alice.post(f"/api/prds/{prd['id']}/versions", {"name": "after sync", "message": "check authors"})
    assert saved.status_code == 201, saved.text
    assert "bob" not in saved.json().get("authors", []), saved.json()
    assert server_markdown(alice, prd["id"]).endswith("ab")


def test_offline_edits_upload_on_reconnect(client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    a, b = client_factory("alice"), client_factory("bob")
    b.close()  # the network drops
    b.append("typed while offline. ")
    a.append("typed while bob was away. ")
    b.connect()  # full resync both ways
    for client in (a, b):
        client.wait_until(lambda c=client: "typed while offline." in c.content()
                          and "typed while bob was away." in c.content(), what="both offline edits")
    assert a.content() == b.content() == server_markdown(alice, prd["id"])


def test_a_one_megabyte_document_syncs_in_chunks(client_factory: Factory, alice: Api, prd: dict[str, Any]) -> None:
    a, b = client_factory("alice"), client_factory("bob")
    big = ("Requirement: the system shall do the right thing, reliably. " * 17_500)[:1_000_000]
    a.append(big)
    b.wait_until(lambda: len(b.content()) >= 1_000_000, timeout=60, what="the 1 MB paste")
    assert b.content() == a.content()
    assert server_markdown(alice, prd["id"]) == a.content()
    late = client_factory("carol")  # its sync step 2 (> 1 MB) arrives chunked too
    assert late.content() == a.content()


def test_a_retried_update_is_stored_and_relayed_once(client_factory: Factory, alice: Api,
                                                      prd: dict[str, Any]) -> None:
    a, b = client_factory("alice"), client_factory("bob")
    with a.lock:
        before = a.doc.get_state()
        a._remote = True  # make the edit without the client sending it; we send it by hand twice
        try:
            a.append("exactly once ")
        finally:
            a._remote = False
        update = a.doc.get_update(before)
    frames = encode_frames(encode_message(SyncUpdate(update)))
    relayed_update = encode_message(SyncUpdate(update))
    b.wait_until(lambda: len(b.received) >= 2, what="bob's initial sync (step 2 + the server's step 1)")
    for _ in range(3):  # a Lambda retry or a client resending after a reconnect
        for f in frames:
            a.send_raw(json.dumps({**json.loads(f), "id": "retry-1"}))
    a.wait_until(lambda: a.acks.count("retry-1") == 3, what="three acks")
    b.wait_until(lambda: "exactly once" in b.content(), what="the update")
    time.sleep(0.5)
    relays = [f for f in b.received if json.loads(f).get("data") == base64.b64encode(relayed_update).decode()]
    assert len(relays) == 1, "relayed once"
    assert server_markdown(alice, prd["id"]).count("exactly once") == 1


HOSTILE = {
    "not json": ("{{{", "invalid_json"),
    "no action": (json.dumps({"data": "AAA="}), "invalid_frame"),
    "bad base64": (frame("y", data="!!!not base64!!!"), "bad_base64"),
    "truncated y-message": (frame("y", data=base64.b64encode(b"\x00\x02\x05ab").decode()), "truncated"),
    "unknown y-message": (frame("y", data=base64.b64encode(b"\x09\x00").decode()), "unknown_message"),
    "garbage update": (frame("y", data=base64.b64encode(b"\x00\x02\x03\xff\xff\xff").decode()), "bad_update"),
    "unknown action": (frame("teleport"), "unknown_action"),
    "oversized data": (frame("y", data="A" * 100_000), "too_large"),
    "bad chunk": (frame("y", data="AAAA", chunk={"id": "x", "i": 5, "n": 2}), "bad_chunk"),
}


def test_hostile_frames_are_answered_and_change_nothing(client_factory: Factory, alice: Api,
                                                        prd: dict[str, Any]) -> None:
    a, b = client_factory("alice"), client_factory("bob")
    a.append("intact ")
    b.wait_until(lambda: "intact" in b.content())
    before = server_markdown(alice, prd["id"])
    for name, (text, code) in HOSTILE.items():
        count = len(a.errors)
        a.send_raw(text)
        a.wait_until(lambda n=count: len(a.errors) > n, what=f"an error for {name}")
        assert a.errors[-1]["code"] == code, (name, a.errors[-1])
    # a flood of chunk sets that never complete: dropped (they expire), the session goes on
    for i in range(40):
        a.send_raw(frame("y", data="AAAA", chunk={"id": f"never{i}", "i": 0, "n": 3}))
    a.send_raw(frame("ping", id="still-here"))
    a.append("still editing")
    b.wait_until(lambda: "still editing" in b.content(), what="an edit after the hostile frames")
    assert server_markdown(alice, prd["id"]) == before + "still editing"
    assert not b.errors, "the peer saw none of it"


def test_presence_is_relayed_and_removed_when_a_peer_leaves(client_factory: Factory) -> None:
    a, b = client_factory("alice"), client_factory("bob")
    a.set_presence({"user": {"name": "alice", "color": "#c33"}, "cursor": {"anchor": 3}})
    b.wait_until(lambda: a.doc.client_id in b.awareness, what="alice's presence")
    assert b.awareness[a.doc.client_id]["user"]["name"] == "alice"
    time.sleep(1.2)  # let the connection item record the client id
    a.close()
    b.wait_until(lambda: a.doc.client_id not in b.awareness, what="alice's presence removed")
    b.wait_until(lambda: any(n.get("type") == "peer-left" and n.get("username") == "alice" for n in b.notices))


def test_edits_are_saved_by_the_write_queue(client_factory: Factory, stack: LocalStack, alice: Api,
                                             prd: dict[str, Any]) -> None:
    """About 5 s after the edits, the consumer folds them into the snapshot and records the editor."""
    from tests.e2e.storage import pending_updates

    b = client_factory("bob")
    for i in range(20):
        b.append(f"edit {i}. ")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        meta = alice.get(f"/api/prds/{prd['id']}").json()
        if meta["updated_by"] == "bob" and pending_updates(stack, prd["id"]) == 0:
            break
        time.sleep(0.5)
    assert meta["updated_by"] == "bob", meta
    assert pending_updates(stack, prd["id"]) == 0, "all updates folded into the snapshot"
    assert server_markdown(alice, prd["id"]) == b.content()


@pytest.mark.skipif(os.environ.get("CI_SHORT") == "1", reason="long-running race")
def test_concurrent_writers_racing_compaction_lose_nothing(client_factory: Factory, stack: LocalStack,
                                                            alice: Api, prd: dict[str, Any]) -> None:
    from tests.e2e.storage import compact_in_loop

    writers = [client_factory(name) for name in ("alice", "bob", "alice", "bob")]
    stop = threading.Event()
    compactor = threading.Thread(target=compact_in_loop, args=(stack, prd["id"], stop), daemon=True)
    compactor.start()

    def write(client: YClient, tag: str) -> None:
        for i in range(30):
            client.append(f"{tag}-{i} ")

    threads = [threading.Thread(target=write, args=(c, f"w{k}")) for k, c in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"w{k}-{i}" for k in range(4) for i in range(30)}
    for writer in writers:
        writer.flush(timeout=60)  # every update acknowledged, i.e. durably stored
    for writer in writers:
        writer.wait_until(lambda w=writer: expected <= set(w.content().split()), timeout=60, what="every word")
    stop.set()
    compactor.join(timeout=30)
    words = server_markdown(alice, prd["id"]).split()
    assert expected <= set(words), sorted(expected - set(words))[:10]
    assert len([w for w in words if w.startswith("w")]) == len(expected), "no word duplicated"


def test_a_rename_through_the_api_reaches_live_editors(client_factory: Factory, bob: Api,
                                                       prd: dict[str, Any]) -> None:
    a = client_factory("alice")
    a.append("unchanged content")
    response = bob.patch(f"/api/prds/{prd['id']}", {"title": "Renamed while open"})
    assert response.status_code == 200, response.text
    a.wait_until(lambda: a.meta.get("title") == "Renamed while open", what="the new title in Y.Map('meta')")
    assert a.content().endswith("unchanged content")  # an edit of meta, not a rebuilt document


def test_compaction_keeps_updates_that_arrived_before_their_predecessor(stack: LocalStack, alice: Api,
                                                                         prd: dict[str, Any]) -> None:
    """Concurrent invocations can store one client's updates out of order; a compaction in between
    must not drop the early-arriving successor (nor a delete of text not seen yet)."""
    from pycrdt import Doc, Text

    from prdtool.collab import store
    from tests.e2e.storage import bound_to

    with bound_to(stack):
        writer: Doc[Any] = Doc()
        writer.apply_update(store.read(prd["id"]).update_since(None))
        text = writer.get("content", type=Text)
        steps = []
        for change in ("insert one", "insert two", "delete one"):
            before = writer.get_state()
            if change == "insert one":
                text.insert(len(text), "one ")
            elif change == "insert two":
                text.insert(len(text), "two ")
            else:
                start = str(text).index("one ")
                del text[start : start + 4]
            steps.append(writer.get_update(before))
        store.append_update(prd["id"], steps[1], origin="alice")  # "two " before "one "
        store.append_update(prd["id"], steps[2], origin="alice")  # and the delete of "one "
        assert store.compact(prd["id"]).folded == 2
        store.append_update(prd["id"], steps[0], origin="alice")  # the predecessor, late
        assert store.compact(prd["id"]).folded == 1
    assert server_markdown(alice, prd["id"]) == str(text)
    assert server_markdown(alice, prd["id"]).endswith("two ") and "one" not in server_markdown(alice, prd["id"])


def test_the_fan_out_reuses_its_list_of_peers_until_a_connection_comes_or_goes(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relayed update reads the PRD's roster version, not every connection item; the list is
    queried again exactly when a connection was registered or removed in between."""
    from prdtool.collab import connections, relay
    from tests.e2e.storage import bound_to

    queries: list[str] = []
    real_of_prd = connections.of_prd

    def counted(prd_id: str, **kwargs: Any) -> list[connections.Connection]:
        queries.append(prd_id)
        return real_of_prd(prd_id, **kwargs)

    monkeypatch.setattr(connections, "of_prd", counted)
    prd_id = f"roster-{time.time_ns()}"
    expires = int(time.time()) + 600

    def join(connection_id: str) -> None:
        connections.register_connection(connections.Connection(connection_id, prd_id, "alice", "editor"),
                                        token_expires_at=expires)

    def ids(exclude: str | None = None) -> list[str]:
        return sorted(c.connection_id for c in relay.update_peers(prd_id, exclude=exclude))

    with bound_to(stack, "WebSocketFunction"):
        assert connections.roster_version(prd_id) is None
        assert ids() == [] and len(queries) == 1  # no roster yet: queried (and nothing to cache)
        join("c1")
        join("c2")
        assert ids(exclude="c1") == ["c2"] and len(queries) == 2
        for _ in range(3):
            assert ids(exclude="c1") == ["c2"]
        assert len(queries) == 2  # the same roster: the list was reused
        join("c3")
        assert ids(exclude="c1") == ["c2", "c3"] and len(queries) == 3
        assert connections.remove("c2") is not None
        assert ids(exclude="c1") == ["c3"] and len(queries) == 4
        assert ids() == ["c1", "c3"] and len(queries) == 4


def test_a_newcomer_receives_every_relayed_update_while_senders_reuse_their_peers(client_factory: Factory,
                                                                                  prd: dict[str, Any]) -> None:
    """Each Lambda environment keeps its own list of peers; a connection opened after they were
    cached must still get every update relayed after its sync, with no resync of its own."""
    alice, bob = client_factory("alice"), client_factory("bob")
    for n in range(8):  # several edits, so that several environments cache the two-person list
        alice.append(f"a{n} ")
        bob.wait_until(lambda n=n: f"a{n} " in bob.content(), what=f"edit a{n}")
    newcomer = client_factory("bob")
    newcomer.wait_until(lambda: "a7 " in newcomer.content(), what="the document at sync")
    expected = newcomer.content()
    for n in range(8):  # one at a time: relays of one sender may overtake each other (see resync)
        alice.append(f"b{n} ")
        expected += f"b{n} "
        newcomer.wait_until(lambda want=expected: newcomer.content() == want,
                            what=f"relayed edit b{n}, without a resync")
    assert alice.content() == expected


def test_a_connection_still_completing_its_handshake_is_not_forgotten_when_it_answers_410(
        client_factory: Factory, stack: LocalStack, prd: dict[str, Any]) -> None:
    """API Gateway answers 410 to a post to a connection whose $connect ran (it is registered) but
    whose handshake is not complete.  Forgetting it then left a newcomer that never received an
    update (seen as ~10 % of deliveries lost when 50 editors joined a busy PRD at once).  Only a
    connection older than the grace period is forgotten on 410."""
    from prdtool.collab import connections, relay
    from tests.e2e.storage import bound_to

    alice = client_factory("alice")
    expires = int(time.time()) + 600
    with bound_to(stack, "WebSocketFunction"):
        # Two connections the gateway does not know (posts to them answer 410): one registered just
        # now, as $connect leaves it before the handshake, one that has been gone for a while.
        for connection_id in ("handshaking", "long-gone"):
            connections.register_connection(connections.Connection(connection_id, prd["id"], "bob", "editor"),
                                            token_expires_at=expires)
        old = time.time() - relay.GONE_GRACE_SECONDS - 5
        from prdtool.collab.connections import ConnectionModel

        ConnectionModel(pk=f"prd#{prd['id']}", sk="conn#long-gone").update(
            actions=[ConnectionModel.connected_at.set(int(old))])
        alice.append("relayed while bob's socket opens ")
        alice.flush()

        def registered() -> set[str]:
            return {c.connection_id for c in connections.of_prd(prd["id"])}

        deadline = time.monotonic() + 20
        while "long-gone" in registered() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "long-gone" not in registered(), "a connection gone for long is forgotten on 410"
        assert "handshaking" in registered(), "a connection completing its handshake is kept"
