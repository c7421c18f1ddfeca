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
