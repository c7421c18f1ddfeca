"""Node.js Yjs clients (stock yjs + y-protocols + lib0, scripts/node-yclient) and pycrdt clients co-edit one PRD.

Each Node client is a ``cli.mjs`` subprocess driven by JSON lines (see that file).  Every test checks the
content on every client and on the server (``GET /api/prds/{id}`` → ``markdown``).
Needs Node and npm; ``node_modules`` is installed from the lock file on first use (``npm ci``).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prdtool.collab.presence import identity
from scripts.localstack.stack import LocalStack
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login

pytestmark = pytest.mark.e2e

NODE_CLIENT = Path(__file__).resolve().parents[2] / "scripts" / "node-yclient"
INITIAL = "# Co-edited\n\n"  # what the `prd` fixture creates
Factory = Callable[..., YClient]


def server_markdown(api: Api, prd_id: str) -> str:
    response = api.get(f"/api/prds/{prd_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["markdown"])


def wait_for(predicate: Callable[[], bool], *, timeout: float = 20, what: str = "condition",
             interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


class NodeClient:
    """One ``node cli.mjs`` process: commands go to its stdin, its JSON-line events are collected here."""

    def __init__(self, ws_url: str, prd_id: str, token: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            ["node", str(NODE_CLIENT / "cli.mjs"), "--url", ws_url, "--prd", prd_id, "--token", token, "--name", name],
            cwd=NODE_CLIENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1,
        )
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read_stdout, name=f"node-{name}-out", daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"node-{name}-err", daemon=True).start()
        self.client_id = int(self.wait_event(lambda e: e["event"] == "ready", what="ready")["clientID"])

    # ------------------------------------------------------------------ plumbing
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.proc.stdin.flush()

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], *, start: int = 0, timeout: float = 20,
                   what: str = "event") -> dict[str, Any]:
        """The first event at or after index ``start`` that matches ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                start = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"node {self.name}: no {what} within {timeout}s "
                                       f"(exit {self.proc.poll()}, stderr {''.join(self.stderr)[-2000:]!r})")
                self._cond.wait(min(remaining, 0.5))

    def request(self, cmd: str, reply: str, *, timeout: float = 20, **fields: Any) -> dict[str, Any]:
        with self._cond:
            start = len(self.events)
        self.send(cmd, **fields)
        return self.wait_event(lambda e: e["event"] == reply, start=start, timeout=timeout, what=reply)

    def count(self, event_name: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if e["event"] == event_name)

    # ------------------------------------------------------------------ the document
    def text(self) -> str:
        return str(self.request("text", "text")["text"])

    def awareness(self) -> dict[int, Any]:
        return {int(k): v for k, v in self.request("awareness", "awareness")["states"].items()}

    def errors(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["event"] == "error-frame"]

    def wait_synced(self, *, after: int = 0, timeout: float = 20) -> None:
        self.wait_event(lambda e: e["event"] == "synced", start=after, timeout=timeout, what="synced")

    def wait_text(self, predicate: Callable[[str], bool], *, timeout: float = 20, what: str = "text") -> str:
        seen: list[str] = []

        def check() -> bool:
            seen[:] = [self.text()]
            return predicate(seen[0])

        wait_for(check, timeout=timeout, what=f"node {self.name}: {what}", interval=0.1)
        return seen[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=3)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture(scope="session")
def node_yclient() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the Node Yjs clients")
    if not (NODE_CLIENT / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(NODE_CLIENT), "--no-audit", "--no-fund"],
                       check=True, capture_output=True, timeout=240)
    return NODE_CLIENT


@pytest.fixture(scope="session")
def tokens(stack: LocalStack) -> dict[str, str]:
    return {name: login(stack, name)["access_token"] for name in ("alice", "bob", "carol")}


@pytest.fixture
def node_factory(node_yclient: Path, stack: LocalStack, prd: dict[str, Any],
                 tokens: dict[str, str]) -> Iterator[Callable[..., NodeClient]]:
    made: list[NodeClient] = []

    def make(username: str, *, synced: bool = True) -> NodeClient:
        client = NodeClient(stack.ws_url, prd["id"], tokens[username], username)
        made.append(client)
        if synced:
            client.wait_synced()
        return client

    yield make
    for client in made:
        client.close()


NodeFactory = Callable[..., NodeClient]


def test_node_and_pycrdt_clients_edit_at_once_and_converge(node_factory: NodeFactory, client_factory: Factory,
                                                            alice: Api, prd: dict[str, Any]) -> None:
    """Node alice inserts and deletes at the start, Node bob inserts in the middle, pycrdt bob anywhere.

    Each writer uses its own letter, so the result is checkable exactly: alice's ``A`` run stays in
    front of the heading (only she inserts at index 0, and she only deletes the first character while she
    has an ``A`` there); the others insert after the heading's ``#``.
    """
    node_alice, node_bob = node_factory("alice"), node_factory("bob")
    py = client_factory("bob")
    rng = random.Random(20240607)
    counts = {"A": 0, "B": 0, "P": 0}

    def alice_types() -> None:
        for i in range(24):
            if i % 3 == 2:  # insert, insert, delete: an A is always there to delete
                node_alice.send("delete", index=0, length=1)
                counts["A"] -= 1
            else:
                node_alice.send("insert", index=0, text="A")
                counts["A"] += 1
            time.sleep(0.02)

    def bob_types() -> None:
        for _ in range(16):
            text = node_bob.text()
            index = max(text.index("#") + 1, len(text) // 2)  # the middle, after the heading's '#'
            node_bob.send("insert", index=index, text="B")
            counts["B"] += 1
            time.sleep(0.02)

    def py_types() -> None:
        for i in range(24):
            with py.lock:
                content = py.content()
                own = [k for k, ch in enumerate(content) if ch == "P"]
                if i % 4 == 3 and own:
                    py.delete(rng.choice(own), 1)
                    counts["P"] -= 1
                else:
                    py.insert(rng.randint(content.index("#") + 1, len(content)), "P")
                    counts["P"] += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=f) for f in (alice_types, bob_types, py_types)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    texts: list[str] = []

    def converged() -> bool:  # equal counts alone are not enough: an insert and a delete may both be in flight
        texts[:] = [node_alice.text(), node_bob.text(), py.content()]
        return len(set(texts)) == 1 and all(texts[0].count(ch) == n for ch, n in counts.items())

    wait_for(converged, interval=0.1, what="every edit, and identical text on every client")
    final = texts[0]
    assert final.startswith("A" * counts["A"] + "#")
    assert "".join(ch for ch in final if ch not in "ABP") == INITIAL, "no other character lost or duplicated"
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: server_markdown(alice, prd["id"]) == final, what="the server's copy")
    assert server_markdown(alice, prd["id"]) == final, "the server's copy lacks edits every client has"
    for node in (node_alice, node_bob):
        assert not node.errors(), node.errors()


def test_a_late_node_joiner_receives_the_whole_document(node_factory: NodeFactory, client_factory: Factory,
                                                        alice: Api, prd: dict[str, Any]) -> None:
    py, node_bob = client_factory("alice"), node_factory("bob")
    py.append("## From pycrdt\n\nWritten before anyone else came. ")
    node_bob.send("append", text="Node adds ünïcödé and 🚀. ")
    py.wait_until(lambda: "🚀" in py.content(), what="node bob's edit")
    late = node_factory("carol")  # a viewer may read
    assert late.text() == py.content() == node_bob.text()
    assert late.text() == server_markdown(alice, prd["id"])


def test_offline_node_edits_reach_everyone_exactly_once(node_factory: NodeFactory, client_factory: Factory,
                                                        alice: Api, prd: dict[str, Any]) -> None:
    node_bob, py = node_factory("bob"), client_factory("alice")
    node_bob.send("append", text="online. ")
    py.wait_until(lambda: "online." in py.content(), what="the online edit")

    node_bob.send("disconnect")
    node_bob.wait_event(lambda e: e.get("status") == "disconnected", what="disconnected")
    node_bob.send("append", text="typed while offline. ")
    node_bob.send("insert", index=0, text="OFFLINE-START ")
    py.append("typed while bob was away. ")
    time.sleep(0.3)
    assert "typed while offline" not in py.content()

    for _ in range(2):  # a second reconnect (nothing new) must not duplicate anything either
        synced_before = len(node_bob.events)
        node_bob.send("connect")
        node_bob.wait_synced(after=synced_before)
        node_bob.wait_event(lambda e: e["event"] == "saved", start=synced_before, what="the resync acknowledged")
        py.wait_until(lambda: "typed while offline." in py.content(), what="the offline edits")
        node_bob.wait_text(lambda t: "typed while bob was away." in t, what="alice's edit")
        node_bob.send("disconnect")
        node_bob.wait_event(lambda e: e.get("status") == "disconnected", start=synced_before, what="disconnected")

    final = node_bob.text()
    py.wait_until(lambda: py.content() == final, what="identical content")
    assert server_markdown(alice, prd["id"]) == final
    for phrase in ("online.", "typed while offline.", "OFFLINE-START", "typed while bob was away."):
        assert final.count(phrase) == 1, (phrase, final)
    assert final.startswith("OFFLINE-START ")


def test_a_node_client_reconnects_by_itself_when_the_server_drops_it(
        node_factory: NodeFactory, client_factory: Factory, stack: LocalStack, alice: Api, prd: dict[str, Any]) -> None:
    from prdtool.collab import connections
    from tests.e2e.storage import bound_to

    node_bob, py = node_factory("bob"), client_factory("alice")
    node_bob.send("append", text="before the drop. ")
    py.wait_until(lambda: "before the drop." in py.content(), what="the first edit")
    with bound_to(stack):
        ids = [c.connection_id for c in connections.of_prd(prd["id"]) if c.username == "bob"]
    assert len(ids) == 1, ids
    mark = len(node_bob.events)
    # What API Gateway does after 2 hours or 10 idle minutes (DeleteConnection on the management API).
    dropped = stack.management_api().delete_connection(ConnectionId=ids[0])
    assert dropped["ResponseMetadata"]["HTTPStatusCode"] == 204
    node_bob.send("append", text="typed during the drop. ")  # sent to a dead socket or kept for the resync
    py.append("typed while bob reconnects. ")
    node_bob.wait_event(lambda e: e.get("status") == "disconnected", start=mark, what="the drop")
    node_bob.wait_synced(after=mark)  # no command: the provider reconnects with backoff on its own
    node_bob.wait_event(lambda e: e["event"] == "saved", start=mark, what="the resync acknowledged")
    py.wait_until(lambda: "typed during the drop." in py.content(), what="the edit made during the drop")
    final = node_bob.wait_text(lambda t: t == py.content(), what="identical content")
    assert server_markdown(alice, prd["id"]) == final
    for phrase in ("before the drop.", "typed during the drop.", "typed while bob reconnects."):
        assert final.count(phrase) == 1, (phrase, final)


def test_a_one_megabyte_paste_from_node_syncs_in_chunks(node_factory: NodeFactory, client_factory: Factory,
                                                         alice: Api, prd: dict[str, Any]) -> None:
    node_alice, py = node_factory("alice"), client_factory("bob")
    big = ("Requirement: the system shall do the right thing, reliably. " * 17_500)[:1_000_000]
    mark = len(node_alice.events)
    node_alice.send("append", text=big)  # one update of over 1 MB: ~14 chunk frames to the server
    node_alice.wait_event(lambda e: e["event"] == "saved", start=mark, timeout=60, what="the paste acknowledged")
    py.wait_until(lambda: len(py.content()) >= len(INITIAL) + 1_000_000, timeout=60, what="the 1 MB paste")
    expected = INITIAL + big
    assert py.content() == expected
    assert node_alice.text() == expected
    assert server_markdown(alice, prd["id"]) == expected
    late = node_factory("carol", synced=False)  # its sync step 2 (> 1 MB) arrives chunked
    late.wait_synced(timeout=60)
    assert late.text() == expected
    assert not node_alice.errors() and not late.errors()


def test_presence_between_node_and_pycrdt_clients(node_factory: NodeFactory, client_factory: Factory) -> None:
    node_alice, node_bob = node_factory("alice"), node_factory("bob")
    py = client_factory("bob")
    alice_state = {"user": {"name": "alice", "color": "#c33"}}
    # Peers see the identity the server vouches for (name from the token, a palette colour).
    seen_alice = {"user": identity("alice")}
    node_alice.send("presence", state=alice_state)
    py.wait_until(lambda: node_alice.client_id in py.awareness, what="alice's presence (pycrdt)")
    assert py.awareness[node_alice.client_id] == seen_alice
    wait_for(lambda: node_alice.client_id in node_bob.awareness(), what="alice's presence (Node bob)")
    assert node_bob.awareness()[node_alice.client_id] == seen_alice

    py.set_presence({"user": {"name": "bob (python)"}})
    wait_for(lambda: py.doc.client_id in node_alice.awareness(), what="pycrdt presence (Node alice)")
    assert node_alice.awareness()[py.doc.client_id] == {"user": identity("bob")}
    # Presence is relayed to the peers a container saw up to 1 s before (limits.PEERS_CACHE_SECONDS):
    # a peer that connected within that second can miss this first announcement, and then has it at
    # py's renewal (every 15 s, as y-protocols renews) — the CI failure of session 9 asserted it only
    # at the end, after alice left.
    wait_for(lambda: py.doc.client_id in node_bob.awareness(), timeout=25, what="pycrdt presence (Node bob)")

    # The cursor moves a few times within a second (the server records awareness clocks at most once a
    # second), then the network drops: no goodbye, so the server's $disconnect has to announce it.
    for anchor in range(5):
        node_alice.send("presence", state={**alice_state, "cursor": {"anchor": anchor}})
        time.sleep(0.15)
    wait_for(lambda: node_bob.awareness().get(node_alice.client_id, {}).get("cursor") == {"anchor": 4},
             what="alice's last cursor (Node bob)")
    node_alice.send("disconnect")
    # pycrdt's YClient drops a state on any null entry: this checks the server's awareness removal frame
    py.wait_until(lambda: node_alice.client_id not in py.awareness, what="alice's presence removed (pycrdt)")
    node_bob.wait_event(lambda e: e["event"] == "notice" and e.get("type") == "peer-left"
                        and e.get("username") == "alice" and node_alice.client_id in e.get("clients", []),
                        what="peer-left notice")
    wait_for(lambda: node_alice.client_id not in node_bob.awareness(), timeout=5,
             what="alice's presence removed (Node bob)")
    assert py.doc.client_id in node_bob.awareness()

    # alice comes back: everyone sees her again (her provider announces a newer clock)
    node_alice.send("connect")
    py.wait_until(lambda: node_alice.client_id in py.awareness, what="alice's presence back (pycrdt)")
    wait_for(lambda: node_bob.awareness().get(node_alice.client_id, {}).get("cursor") == {"anchor": 4},
             what="alice's presence back (Node bob)")


def test_a_node_viewer_cannot_edit(node_factory: NodeFactory, client_factory: Factory, alice: Api,
                                   prd: dict[str, Any]) -> None:
    node_bob, node_carol = node_factory("bob"), node_factory("carol")
    py = client_factory("alice")
    before = server_markdown(alice, prd["id"])
    node_carol.send("append", text="carol was here")
    error = node_carol.wait_event(lambda e: e["event"] == "error-frame", what="an error frame")
    assert error["code"] == "read_only", error
    node_bob.send("append", text="bob was here")
    node_carol.wait_text(lambda t: "bob was here" in t, what="bob's edit")
    py.wait_until(lambda: "bob was here" in py.content(), what="bob's edit")
    time.sleep(0.3)
    assert py.content() == node_bob.text() == before + "bob was here"
    assert server_markdown(alice, prd["id"]) == before + "bob was here"
    assert node_carol.request("state", "state")["pending"] == 1, "carol's update was never acknowledged"
