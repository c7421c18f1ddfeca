"""The whole stack with its doors (the default) and without (``LOCAL_DOORS=0``): both serve the product,
and only the first carries the workers' moto and ``@connections`` calls over unix sockets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from scripts.localstack.stack import LocalStack, RuntimeSettings, StackError, background_functions
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api, login

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_local_doors_is_on_unless_set_to_0() -> None:
    assert RuntimeSettings.from_env({}).doors is True
    assert RuntimeSettings.from_env({"LOCAL_DOORS": "1"}).doors is True
    assert RuntimeSettings.from_env({"LOCAL_DOORS": "0"}).doors is False
    assert RuntimeSettings.from_env({"LOCAL_DOORS": " off "}).doors is False
    with pytest.raises(StackError, match="LOCAL_DOORS must be 1 or 0"):
        RuntimeSettings.from_env({"LOCAL_DOORS": "maybe"})


def _worker_command_lines(stack_id: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "worker_main.py" in command and f"--stack-id {stack_id}" in command:
            found.append(command)
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the workers through /proc")
@pytest.mark.parametrize("doors", [True, False], ids=["doors", "LOCAL_DOORS=0"])
def test_the_stack_serves_edits_with_and_without_doors(doors: bool) -> None:
    stack = LocalStack(ROOT, port=0, state_dir=None, seed=True, settings=RuntimeSettings(doors=doors))
    with stack:
        door_dir = stack._door_dir
        api = Api(stack.base_url, login(stack, "alice")["access_token"])
        created = api.post("/api/prds", {"title": "Through the doors", "markdown": "# Doors\n\nfirst\n"})
        assert created.status_code == 201, created.text
        prd_id = created.json()["id"]
        assert api.put(f"/api/prds/{prd_id}/members/bob", {"role": "editor"}).status_code == 200
        # Bob's edit reaches Alice: stored by the WebSocket function (DynamoDB, SQS) and relayed to
        # her connection (PostToConnection) — through the doors when they are on.
        alice = YClient(stack.ws_url, prd_id, str(api.token), name="alice").connect()
        bob = YClient(stack.ws_url, prd_id, login(stack, "bob")["access_token"], name="bob").connect()
        try:
            bob.append("typed by bob\n")
            bob.flush()
            alice.wait_until(lambda: "typed by bob" in alice.content(), what="bob's edit")
            if doors:
                _forged_post_in_a_batch_is_refused_alone(stack, prd_id, alice, bob)
                _hostile_frames_leave_every_door_serving(stack)
                bob.append("typed after the hostile frames\n")
                bob.flush()
                alice.wait_until(lambda: "after the hostile frames" in alice.content(), what="the next edit")
        finally:
            alice.close()
            bob.close()
        deadline = time.monotonic() + 30
        while "typed by bob" not in (markdown := api.get(f"/api/prds/{prd_id}").json()["markdown"]):
            assert time.monotonic() < deadline, markdown
            time.sleep(0.5)
        assert "first" in markdown
        commands = _worker_command_lines(stack.stack_id)
        assert commands
        if doors:
            assert door_dir is not None
            assert sorted(p.name for p in door_dir.iterdir()) == ["connections.sock", "moto-background.sock",
                                                                    "moto.sock"]
            assert oct(door_dir.stat().st_mode & 0o777) == oct(0o700)
            # a background function's workers use moto's second door (served after the others')
            background_roots = {stack.manifest["functions"][name]["code_dir"]
                                for name in background_functions(stack.manifest)}
            backgrounds = [any(f"--task-root {root} " in command for root in background_roots)
                           for command in commands]
            for command, background in zip(commands, backgrounds, strict=True):
                door = "moto-background.sock" if background else "moto.sock"
                assert f"--moto-door {door_dir}/{door}" in command, command
            assert any(backgrounds) and not all(backgrounds)  # the doc writer, at least, ran
            assert all(f"--gateway-door {door_dir}/connections.sock" in command for command in commands)
        else:
            assert door_dir is None
            assert not any("--moto-door" in command or "--gateway-door" in command for command in commands)
        assert requests.get(f"{stack.base_url}/api/health", timeout=30).status_code == 200
    if door_dir is not None:
        assert not door_dir.exists()  # removed at stop


def _forged_post_in_a_batch_is_refused_alone(stack: LocalStack, prd_id: str, alice: YClient, bob: YClient) -> None:
    """Through the running stack's ``@connections`` door, as a worker's fan-out sends it: one batch of
    three posts signed by the poster's own code, the middle one's signature altered by one digit.
    The gateway refuses that one (403, as API Gateway does) and delivers the two around it."""
    from botocore.credentials import Credentials

    from prdtool.collab import connections, poster
    from scripts.localstack.door import BotocoreDoorTransport, DoorClient, shared
    from tests.e2e.storage import bound_to

    with bound_to(stack, "WebSocketFunction"):
        ids = {c.username: c.connection_id for c in connections.of_prd(prd_id)}
    api = poster.ConnectionsApi(stack.base_url, stack.manifest["region"],
                                Credentials(stack.credentials.access_key_id, stack.credentials.secret_access_key))
    body = b'{"action":"notice","marker":"door batch"}'
    posts = api._posts([ids["alice"], ids["bob"], ids["alice"]], body)
    signature = posts[1].headers["Authorization"]
    posts[1].headers["Authorization"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert stack._door_dir is not None
    door = DoorClient(str(stack._door_dir / "connections.sock"))
    requests = [BotocoreDoorTransport._door_request(post, post.body) for post in posts]
    assert shared(requests) is not None  # so it crosses as the SHARED batch a fan-out is
    answers = door.request_many(requests)
    door.close()
    assert [answer.status for answer in answers] == [200, 403, 200]
    assert answers[1].header("x-amzn-ErrorType") == "InvalidSignatureException"
    marked = lambda client: [n for n in client.notices if n.get("marker") == "door batch"]  # noqa: E731
    alice.wait_until(lambda: len(marked(alice)) == 2, what="the two well-signed posts")
    time.sleep(0.5)  # had the forged post been delivered, it would have arrived with alice's
    assert marked(bob) == []


def _hostile_frames_leave_every_door_serving(stack: LocalStack) -> None:
    """Whatever a local process writes to a running stack's door sockets — garbage, a frame claiming
    a huge length, a ``SHARED`` batch whose parts lie about their sizes or lines, a frame cut off —
    the door drops that connection (nothing is served from it, nothing is answered) and goes on
    serving: a new connection is answered, and the edit after this check still reaches its peer."""
    import socket
    import struct

    from scripts.localstack.door import FRAME, SHARED, DoorClient, DoorRequest, encode_request

    shared = lambda target, body: encode_request(DoorRequest(SHARED, target, [("Host", "x")], body))  # noqa: E731
    hostile = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a frame: its "lengths" are far too large
        FRAME.pack(16, 1 << 31) + b"POST\n/\nHost: x\n",  # a body length past the limit
        shared("POST 0 Authorization", struct.pack(">I", 1 << 30) + b"/a\nsig"),  # variants past the body
        shared("POST 9 Authorization", struct.pack(">I", 6) + b"/a\nsig"),  # header index past the headers
        shared("POST 0 Host", struct.pack(">I", 6) + b"/a\nsig"),  # varies a header it also shares
        shared("POST 0 Authorization", struct.pack(">I", 2) + b"/a"),  # a target without its value
        encode_request(DoorRequest("POST", "/@connections/x", [("Host", "x")], b"body"))[:-2],  # cut off
    ]
    assert stack._door_dir is not None
    for name in ("connections.sock", "moto.sock", "moto-background.sock"):
        for frame in hostile:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(stack._door_dir / name))
                sock.sendall(frame)
                sock.shutdown(socket.SHUT_WR)  # a cut-off frame ends here
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
                assert answer == b"", (name, frame[:40], answer[:200])  # dropped, nothing served
        # and the door still answers a well-formed request on a new connection
        door = DoorClient(str(stack._door_dir / name))
        if name == "connections.sock":  # unsigned: refused as API Gateway refuses it, but answered
            reply = door.request(DoorRequest("GET", "/@connections/bm90LWEtY29ubmVjdGlvbg==",
                                              [("Host", "127.0.0.1")], b""))
            assert reply.status == 403, reply
        else:
            scope = f"Credential=test/{time.strftime('%Y%m%d')}/{stack.manifest['region']}/dynamodb/aws4_request"
            reply = door.request(DoorRequest("POST", "/", [
                ("Host", "127.0.0.1"), ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Authorization", f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0")], b"{}"))
            assert reply.status == 200 and b"TableNames" in reply.body, reply
        door.close()
