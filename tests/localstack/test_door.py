"""The doors' protocol and the worker-side transport (scripts/localstack/door.py), without moto or a stack."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import unittest.mock
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from scripts.localstack import door
from scripts.localstack.door import (
    AsyncDoorServer,
    BlockingDoorServer,
    BotocoreDoorTransport,
    DoorBroken,
    DoorClient,
    DoorRequest,
    DoorResponse,
    DoorRoutes,
    DoorUnavailable,
)
from scripts.localstack.stack import LoopThread

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def socket_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A short path: a unix socket's is limited to ~100 bytes, pytest's temporary folders can be long.
    path = Path(f"/tmp/door-test-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir(mode=0o700)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def echo(request: DoorRequest) -> DoorResponse:
    """Answers with everything it received, so a test can see exactly what crossed the door."""
    headers = [("X-Method", request.method), ("X-Target", request.target), ("x-amzn-RequestId", "r-1")]
    headers += [(f"X-Got-{name}", value) for name, value in request.headers]
    return DoorResponse(201, headers, request.body[::-1])


def echo_or_bug(request: DoorRequest) -> DoorResponse:
    """:func:`echo`, but a handler bug for the target ``/bug``."""
    if request.target == "/bug":
        raise ValueError("a bug")
    return echo(request)


async def async_echo_or_bug(request: DoorRequest) -> DoorResponse:
    return echo_or_bug(request)


# ---------------------------------------------------------------- the protocol


def test_a_request_and_its_response_cross_the_door_unchanged(socket_dir: Path) -> None:
    server = BlockingDoorServer(str(socket_dir / "d.sock"), echo)
    client = DoorClient(server.path)
    body = bytes(range(256)) * 1000  # binary, 256 KB
    try:
        answer = client.request(
            DoorRequest("POST", "/a%2Fb/c?x=1&x=2&y=%20", [("X-Dup", "one"), ("x-dup", "two"), ("Host", "h:1")], body)
        )
    finally:
        client.close()
        server.close()

    assert answer.status == 201
    assert answer.body == body[::-1]
    assert answer.header("x-method") == "POST"
    assert answer.header("X-TARGET") == "/a%2Fb/c?x=1&x=2&y=%20"  # raw: nothing decoded or re-encoded
    # Repeated headers stay repeated, in order, with their spelling.
    assert [(n, v) for n, v in answer.headers if n.lower() == "x-got-x-dup"] == [
        ("X-Got-X-Dup", "one"),
        ("X-Got-x-dup", "two"),
    ]
    assert not os.path.exists(server.path)  # close() removes the socket file


def test_each_thread_keeps_one_connection_and_a_restarted_server_is_reconnected(socket_dir: Path) -> None:
    path = str(socket_dir / "d.sock")
    peers: list[int] = []
    serving = threading.local()  # one serving thread per connection: a fresh local per connection
    numbers = iter(range(1000))

    def handler(request: DoorRequest) -> DoorResponse:
        if not hasattr(serving, "number"):
            serving.number = next(numbers)
        peers.append(serving.number)
        return DoorResponse(200, [], request.body)

    server = BlockingDoorServer(path, handler)
    client = DoorClient(path)
    results: list[bytes] = []

    def work(tag: bytes) -> None:
        for _ in range(5):
            results.append(client.request(DoorRequest("GET", "/", [], tag)).body)

    threads = [threading.Thread(target=work, args=(bytes([i]),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(bytes([i]) for i in range(4) for _ in range(5))
    assert len(set(peers)) == 4  # four client threads, four connections, each reused five times

    # The far side goes away and comes back (the orchestrator restarted): the next request of a
    # thread whose connection it closed opens a new one instead of failing.
    client.request(DoorRequest("GET", "/", [], b"before"))
    server.close()
    with pytest.raises(DoorUnavailable):
        DoorClient(path).request(DoorRequest("GET", "/", [], b""))
    server = BlockingDoorServer(path, handler)
    try:
        time.sleep(0.05)
        assert client.request(DoorRequest("GET", "/", [], b"after")).body == b"after"
    finally:
        server.close()


@contextmanager
def dropping_server(path: str) -> Iterator[None]:
    """A far side that reads each request and closes the connection without answering."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield
    finally:
        listener.close()
        os.unlink(path)


def test_no_answer_in_time_is_a_timeout_and_a_dropped_connection_is_broken(socket_dir: Path) -> None:
    release = threading.Event()

    def slow(request: DoorRequest) -> DoorResponse:
        if request.target == "/slow":
            release.wait(5)
        return DoorResponse(200, [], b"ok")

    server = BlockingDoorServer(str(socket_dir / "d.sock"), slow)
    client = DoorClient(server.path)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.request(DoorRequest("GET", "/slow", [], b""), timeout=0.3)
        assert time.monotonic() - started < 2
        release.set()
        assert client.request(DoorRequest("GET", "/", [], b"")).body == b"ok"  # on a fresh connection
    finally:
        server.close()
    with dropping_server(str(socket_dir / "x.sock")), pytest.raises(DoorBroken):
        DoorClient(str(socket_dir / "x.sock")).request(DoorRequest("GET", "/", [], b""))


def test_a_handler_failure_is_a_500_and_the_connection_goes_on(socket_dir: Path) -> None:
    def failing(request: DoorRequest) -> DoorResponse:
        if request.target == "/bug":
            raise ValueError("a bug")
        return DoorResponse(200, [], b"fine")

    server = BlockingDoorServer(str(socket_dir / "d.sock"), failing)
    client = DoorClient(server.path)
    try:
        answer = client.request(DoorRequest("GET", "/bug", [], b""))
        assert answer.status == 500
        assert b"ValueError: a bug" in answer.body
        assert client.request(DoorRequest("GET", "/", [], b"")).body == b"fine"
    finally:
        server.close()


def test_the_asyncio_server_serves_connections_concurrently(socket_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(socket_dir / "a.sock")
    gate = asyncio.Event()

    async def handler(request: DoorRequest) -> DoorResponse:
        if request.target == "/wait":
            await gate.wait()
        elif request.target == "/open":
            gate.set()
        return DoorResponse(200, [("X-Target", request.target)], request.body)

    loop = LoopThread("door-test")
    server = AsyncDoorServer(path, handler)
    loop.run(server.start())
    client = DoorClient(path)
    caplog.set_level(logging.ERROR, logger="asyncio")
    try:
        waiting: list[DoorResponse] = []
        thread = threading.Thread(target=lambda: waiting.append(client.request(DoorRequest("GET", "/wait", [], b"1"))))
        thread.start()
        time.sleep(0.1)
        # Another thread, another connection: served while the first request is still waiting.
        assert client.request(DoorRequest("GET", "/open", [], b"2")).body == b"2"
        thread.join(5)
        assert waiting and waiting[0].body == b"1"
        # Closing the server ends connections that are still open (this thread's) cleanly.
        loop.run(server.close())
        with pytest.raises(DoorUnavailable):  # it saw the close, and there is no door to reopen
            client.request(DoorRequest("GET", "/", [], b""))
    finally:
        client.close()
        loop.run(server.close())
        loop.close()
    assert not os.path.exists(path)
    assert not [r for r in caplog.records if r.name == "asyncio"], "asyncio logged an error at close"


def test_a_batch_is_served_request_by_request_and_answered_in_order(socket_dir: Path) -> None:
    """BATCH: several requests in one exchange, each served as if alone (a failure stays its own),
    by both servers; large batches are split so that no frame exceeds the door's limits."""
    loop = LoopThread("door-batch-test")
    served = AsyncDoorServer(str(socket_dir / "a.sock"), async_echo_or_bug)
    loop.run(served.start())
    servers = [(BlockingDoorServer(str(socket_dir / "b.sock"), echo_or_bug), None), (served, loop)]
    requests = [DoorRequest("POST", f"/@connections/c{i}", [("X-N", str(i))], bytes([i]) * i) for i in range(40)]
    requests[7] = DoorRequest("GET", "/bug", [], b"")
    try:
        for server, _ in servers:
            client = DoorClient(server.path)
            answers = client.request_many(requests)
            assert [a.status for a in answers] == [500 if i == 7 else 201 for i in range(40)]
            assert b"ValueError: a bug" in answers[7].body
            for i, (request, answer) in enumerate(zip(requests, answers, strict=True)):
                if i != 7:
                    assert answer.body == request.body[::-1]
                    assert (answer.header("X-Target"), answer.header("X-Got-X-N")) == (request.target, str(i))
            assert client.request(DoorRequest("GET", "/after", [], b"")).status == 201  # the connection goes on
            assert client.request_many([]) == []
            exchanges: list[DoorRequest] = []
            real_request = client.request

            def counted(request: DoorRequest, timeout: float | None = 60.0, seen: list[DoorRequest] = exchanges,
                        real: Any = real_request) -> DoorResponse:
                seen.append(request)
                return real(request, timeout)  # type: ignore[no-any-return]

            with unittest.mock.patch.object(door, "_BATCH_BYTES", 200), \
                    unittest.mock.patch.object(client, "request", counted):
                split = client.request_many(requests[:9])
            assert [a.status for a in split] == [201] * 7 + [500, 201]
            assert [a.body for i, a in enumerate(split) if i != 7] == [r.body[::-1] for i, r in enumerate(requests[:9])
                                                                      if i != 7]
            assert 2 <= len(exchanges) < 9 and all(len(e.body) < 200 + 200 for e in exchanges)
            client.close()
    finally:
        servers[0][0].close()
        loop.run(served.close())
        loop.close()


def test_a_malformed_batch_drops_the_connection_and_leaves_the_server_serving(socket_dir: Path) -> None:
    server = BlockingDoorServer(str(socket_dir / "b.sock"), echo)
    client = DoorClient(server.path)
    try:
        truncated = door.encode_request(DoorRequest("GET", "/", [], b"abc"))[:-1]
        with pytest.raises(DoorBroken):
            client.request(DoorRequest(door.BATCH, "*", [], truncated))
        assert client.request(DoorRequest("GET", "/x", [], b"")).status == 201
    finally:
        client.close()
        server.close()


def _fan_out(count: int, body: bytes = b"the frame") -> list[DoorRequest]:
    """What a fan-out sends: one body and second, a target and a signature per connection."""
    shared = [("Host", "127.0.0.1:3000"), ("Accept-Encoding", "identity"), ("X-Amz-Date", "20261207T120000Z")]
    return [DoorRequest("POST", f"/@connections/c{i}%3D", [*shared, ("Authorization", f"AWS4 sig-{i}"),
                                                           ("Content-Length", str(len(body)))], body)
            for i in range(count)]


def test_requests_differing_in_target_and_one_header_cross_as_one_shared_batch(socket_dir: Path) -> None:
    """SHARED: one exchange carrying what the requests share once; every server sees — or its whole-batch
    handler is given — exactly the requests that were sent, and answers each as if it had come alone."""
    requests = _fan_out(30)
    requests[7] = DoorRequest("POST", "/bug", requests[7].headers, requests[7].body)
    batch = door.shared(requests)
    assert batch is not None and (batch.index, batch.name) == (3, "Authorization")
    assert batch.requests() == requests
    meta_length, body_length = door.FRAME.unpack(door.encode_shared(batch)[:8])
    frame = door.encode_shared(batch)
    assert door.decode_shared(door.decode_request(frame[8 : 8 + meta_length], frame[8 + meta_length :])) == batch
    assert body_length < sum(len(door.encode_request(r)) for r in requests) / 2

    given: list[door.SharedRequests] = []

    async def whole(shared: door.SharedRequests) -> list[DoorResponse]:
        given.append(shared)
        answers = []
        for request in shared.requests():
            try:
                answers.append(echo_or_bug(request))
            except ValueError as exc:
                answers.append(door.failure_response(exc))
        return answers

    loop = LoopThread("door-shared-test")
    plain = AsyncDoorServer(str(socket_dir / "a.sock"), async_echo_or_bug)
    handed = AsyncDoorServer(str(socket_dir / "h.sock"), async_echo_or_bug, shared_handler=whole)
    loop.run(plain.start())
    loop.run(handed.start())
    blocking_server = BlockingDoorServer(str(socket_dir / "b.sock"), echo_or_bug)
    try:
        for path in (blocking_server.path, plain.path, handed.path):
            client = DoorClient(path)
            sent: list[bytes] = []
            real_exchange = client._exchange

            def exchange(frame: bytes, timeout: float | None, seen: list[bytes] = sent, real: Any = real_exchange
                         ) -> DoorResponse:
                seen.append(frame[8:].split(b"\n", 1)[0])
                return real(frame, timeout)  # type: ignore[no-any-return]

            with unittest.mock.patch.object(client, "_exchange", exchange):
                together = client.request_many(requests)
            alone = [client.request(request) for request in requests]
            assert sent == [b"SHARED"], path
            assert [(a.status, a.headers, a.body) for a in together] == [(a.status, a.headers, a.body) for a in alone]
            assert [a.status for a in together] == [500 if i == 7 else 201 for i in range(30)]
            assert together[4].header("X-Got-Authorization") == "AWS4 sig-4"
            assert together[4].header("X-Target") == "/@connections/c4%3D"
            client.close()
        assert given == [batch]
    finally:
        blocking_server.close()
        loop.run(plain.close())
        loop.run(handed.close())
        loop.close()


def test_only_requests_alike_but_for_target_and_one_header_make_a_shared_batch() -> None:
    requests = _fan_out(5)
    assert door.shared(requests) is not None
    assert door.shared(requests[:1]) is None and door.shared([]) is None

    def changed(index: int, **fields: Any) -> list[DoorRequest]:
        copy = list(requests)
        copy[index] = dataclasses.replace(copy[index], **fields)
        return copy

    two_headers = [*requests[3].headers]
    two_headers[2] = ("X-Amz-Date", "20261207T120001Z")  # another second as well as another signature
    assert door.shared(changed(3, headers=two_headers)) is None
    assert door.shared(changed(1, headers=two_headers)) is None  # found on the first two as well
    assert door.shared(changed(4, body=b"another frame")) is None
    assert door.shared(changed(2, method="DELETE")) is None
    assert door.shared(changed(2, headers=requests[2].headers[:-1])) is None
    reordered = [requests[2].headers[1], requests[2].headers[0], *requests[2].headers[2:]]
    assert door.shared(changed(2, headers=reordered)) is None
    renamed = [*requests[4].headers[:3], ("X-Signature", "AWS4 sig-4"), requests[4].headers[4]]
    assert door.shared(changed(4, headers=renamed)) is None
    repeated = [[*r.headers, ("Authorization", "again")] for r in requests]  # the varying name twice
    assert door.shared([dataclasses.replace(r, headers=h) for r, h in zip(requests, repeated, strict=True)]) is None


def test_a_malformed_shared_batch_is_refused_and_the_server_goes_on(socket_dir: Path) -> None:
    batch = door.shared(_fan_out(3))
    assert batch is not None
    good = door.decode_request(*door._split_frames(door.encode_shared(batch))[0])
    for target in ("POST x Authorization", "POST 9 Authorization", "POST 1 Host", "POST 1", "", " 1 Authorization"):
        with pytest.raises(door.DoorProtocolError):
            door.decode_shared(dataclasses.replace(good, target=target))
    for body in (good.body[:3], good.body[:4] + b"\xff" * 4, door._VARIANTS.pack(7) + b"/a\nb\n/c" + b"rest"):
        with pytest.raises(door.DoorProtocolError):
            door.decode_shared(dataclasses.replace(good, body=body))
    server = BlockingDoorServer(str(socket_dir / "b.sock"), echo)
    client = DoorClient(server.path)
    try:
        with pytest.raises(DoorBroken):
            client.request(dataclasses.replace(good, target="POST 9 Authorization"))
        assert client.request(DoorRequest("GET", "/x", [], b"")).status == 201
    finally:
        client.close()
        server.close()


# ---------------------------------------------------------------- botocore's transport


@contextmanager
def transport(routes: DoorRoutes) -> Iterator[list[Any]]:
    """The worker's ``URLLib3Session.send`` replacement in this process; yields what went to HTTP."""
    fell_through: list[Any] = []
    original = URLLib3Session.send
    mine = threading.get_ident()

    def http(session: Any, request: Any) -> Any:
        if threading.get_ident() == mine:  # not the session-scoped stack's pollers in this process
            fell_through.append(request)
        return original(session, request)

    URLLib3Session.send = http  # type: ignore[method-assign]
    installed = BotocoreDoorTransport(routes)
    installed.install(URLLib3Session)
    try:
        yield fell_through
    finally:
        BotocoreDoorTransport.uninstall(URLLib3Session)
        URLLib3Session.send = original  # type: ignore[method-assign]


def signed(method: str, url: str, body: bytes, service: str = "execute-api") -> Any:
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials("AKID", "secret"), service, "us-east-1").add_auth(request)
    return request.prepare()


def test_a_request_prepared_by_hand_goes_through_the_door_as_http_would_send_it(socket_dir: Path) -> None:
    server = BlockingDoorServer(str(socket_dir / "g.sock"), echo)
    routes = DoorRoutes(callback_url="http://127.0.0.1:3000", gateway=DoorClient(server.path))
    try:
        with transport(routes) as fell_through:
            # What a lean PostToConnection poster does: no botocore client, its own AWSRequest.
            response = URLLib3Session().send(signed("POST", "http://127.0.0.1:3000/@connections/ab%3D", b"frame"))
            elsewhere = routes.door_for("POST", "http://127.0.0.1:3001/@connections/ab", {})
            not_connections = routes.door_for("POST", "http://127.0.0.1:3000/api/prds", {})
            wrong_method = routes.door_for("PUT", "http://127.0.0.1:3000/@connections/ab", {})
            staged = routes.door_for("GET", "http://127.0.0.1:3000/local/@connections/ab", {})
    finally:
        server.close()

    assert not fell_through
    assert response.status_code == 201
    assert response.content == b"emarf"
    # Case-insensitive headers, as urllib3's are (botocore looks up e.g. "x-amzn-requestid").
    assert response.headers["X-AMZN-REQUESTID"] == "r-1"
    assert response.headers["x-method"] == "POST"
    assert response.headers["x-target"] == "/@connections/ab%3D"
    # What http.client adds on the wire: Host (the signed one), Accept-Encoding, Content-Length.
    assert response.headers["x-got-host"] == "127.0.0.1:3000"
    assert response.headers["x-got-accept-encoding"] == "identity"
    assert response.headers["x-got-content-length"] == "5"
    assert response.headers["x-got-authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert response.raw.stream is not None and list(response.raw.stream()) == []  # already read, as botocore does
    assert (elsewhere, not_connections, wrong_method) == (None, None, None)
    assert staged is routes.gateway


def test_only_signed_requests_of_door_served_services_at_the_endpoint_use_the_moto_door(socket_dir: Path) -> None:
    client = DoorClient(str(socket_dir / "m.sock"))
    routes = DoorRoutes(endpoint_url="http://127.0.0.1:5000", services=frozenset({"dynamodb"}), moto=client)

    def door_for(url: str, service: str | None) -> DoorClient | None:
        headers = signed("POST", url, b"{}", service).headers if service else {}
        return routes.door_for("POST", url, headers)

    assert door_for("http://127.0.0.1:5000/", "dynamodb") is client
    assert door_for("http://127.0.0.1:5000/", "s3") is None  # stays on HTTP
    assert door_for("http://127.0.0.1:5000/", None) is None  # unsigned (Cognito's InitiateAuth)
    assert door_for("http://127.0.0.1:50001/", "dynamodb") is None  # another port, same prefix
    assert door_for("http://localhost:5000/", "dynamodb") is None


def test_transport_failures_are_the_exceptions_botocore_retries(socket_dir: Path) -> None:
    release = threading.Event()

    def handler(request: DoorRequest) -> DoorResponse:
        if request.path.endswith("/slow"):
            release.wait(5)
        return DoorResponse(200, [], b"")

    path, dropping = str(socket_dir / "g.sock"), str(socket_dir / "x.sock")
    routes = DoorRoutes(callback_url="http://127.0.0.1:3000", gateway=DoorClient(path))
    url = "http://127.0.0.1:3000/@connections/"
    with transport(routes):
        with pytest.raises(EndpointConnectionError):  # no server yet
            URLLib3Session().send(signed("POST", url + "x", b""))
        server = BlockingDoorServer(path, handler)
        try:
            with pytest.raises(ReadTimeoutError):  # botocore's read timeout is the socket's
                URLLib3Session(timeout=(1, 0.3)).send(signed("GET", url + "slow", b""))
            release.set()
            ok = URLLib3Session().send(signed("GET", url + "x", b""))
        finally:
            server.close()
    broken = DoorRoutes(callback_url=url, gateway=DoorClient(dropping))
    with dropping_server(dropping), transport(broken), pytest.raises(ConnectionClosedError):
        URLLib3Session().send(signed("GET", url + "x", b""))
    assert ok.status_code == 200


def test_a_botocore_client_error_comes_back_parsed_as_over_http(socket_dir: Path) -> None:
    def gone(request: DoorRequest) -> DoorResponse:
        body = b'{"message": "Connection abc is gone"}'
        return DoorResponse(410, [("x-amzn-ErrorType", "GoneException"), ("Content-Type", "application/json")], body)

    server = BlockingDoorServer(str(socket_dir / "g.sock"), gone)
    routes = DoorRoutes(callback_url="http://127.0.0.1:3000", gateway=DoorClient(server.path))
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="http://127.0.0.1:3000",
        region_name="us-east-1",
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    try:
        with transport(routes) as fell_through, pytest.raises(api.exceptions.GoneException) as raised:
            api.post_to_connection(ConnectionId="abc", Data=b"x")
    finally:
        server.close()
    assert not fell_through
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert raised.value.response["Error"]["Message"] == "Connection abc is gone"


def test_a_worker_installs_the_transport_when_botocore_is_imported_and_not_before() -> None:
    script = (
        "import sys\n"
        f"sys.argv = ['worker_main']\n"
        f"sys.path.insert(0, {str(ROOT / 'scripts' / 'localstack')!r})\n"
        "import worker_main\n"
        "worker_main.install_doors('/nonexistent/m.sock', '/nonexistent/g.sock', 'dynamodb,sqs')\n"
        "assert 'botocore' not in sys.modules, 'loaded botocore eagerly'\n"
        "from botocore.httpsession import URLLib3Session\n"
        "transport = URLLib3Session.send.__door_transport__\n"
        "print(sorted(transport.routes.services), transport.routes.endpoint_url, transport.routes.callback_url)\n"
    )
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "WEBSOCKET_CALLBACK_URL": "http://127.0.0.1:3000"}
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['dynamodb',", "'sqs']", "http://127.0.0.1:5000", "http://127.0.0.1:3000"]


def test_the_frame_is_two_lengths_a_head_of_lines_and_the_raw_body() -> None:
    headers = [("A", "b"), ("Authorization", "AWS4 x=1, y=2"), ("A", "again: with a colon"), ("E", ""),
               ("X-Latin", "caf\xe9")]
    frame = door.encode_request(DoorRequest("GET", "/x?q=1", headers, b"\x00\xff"))
    meta_length, body_length = door.FRAME.unpack(frame[:8])
    assert frame[8 : 8 + meta_length] == ("GET\n/x?q=1\nA: b\nAuthorization: AWS4 x=1, y=2\n"
                                           "A: again: with a colon\nE: \nX-Latin: caf\xe9").encode()
    assert frame[8 + meta_length :] == b"\x00\xff" and body_length == 2
    decoded = door.decode_request(frame[8 : 8 + meta_length], b"\x00\xff")
    assert decoded == DoorRequest("GET", "/x?q=1", headers, b"\x00\xff")
    response = door.encode_response(DoorResponse(404, [], b"no"))
    meta_length, _ = door.FRAME.unpack(response[:8])
    assert response[8 : 8 + meta_length] == b"404"
    assert door.decode_response(response[8 : 8 + meta_length], b"no") == DoorResponse(404, [], b"no")
    for malformed in (b"GET", b"GET\n/x\nno-separator", b""):
        with pytest.raises(door.DoorProtocolError):
            door.decode_request(malformed, b"")
    for malformed in (b"OK", b"200\nA:b", b""):
        with pytest.raises(door.DoorProtocolError):
            door.decode_response(malformed, b"")
    with pytest.raises(door.DoorProtocolError):  # a line break cannot be smuggled into a header
        door.encode_request(DoorRequest("GET", "/x", [("A", "b\nInjected: yes")], b""))
    # A head seen again is parsed once, but each response has headers of its own to change.
    first, second = (door.decode_response(b"200\nContent-Length: 0", b"") for _ in range(2))
    first.headers.append(("X-Changed", "by a caller"))
    assert second.headers == [("Content-Length", "0")]
    # A constant response is encoded once, to the same frame as any equal response.
    posted = door.constant_response(DoorResponse(200, [("Content-Length", "0")], b""))
    assert door.encode_response(posted) == door.encode_response(DoorResponse(200, [("Content-Length", "0")], b""))


def test_send_many_carries_requests_to_one_door_in_one_exchange_and_the_rest_one_by_one(socket_dir: Path) -> None:
    batches: list[str] = []

    def gateway(request: DoorRequest) -> DoorResponse:
        if request.target.endswith("/gone"):
            return DoorResponse(410, [("x-amzn-ErrorType", "GoneException")], b'{"message":"gone"}')
        return DoorResponse(200, [("X-Target", request.target)], request.body)

    server = BlockingDoorServer(str(socket_dir / "g.sock"), gateway)
    client = DoorClient(server.path)
    real_request_many = client.request_many

    def counted(requests: Any, timeout: float | None = 60.0) -> Any:
        batches.append(",".join(r.target for r in requests))
        return real_request_many(requests, timeout)

    client.request_many = counted  # type: ignore[method-assign]
    routes = DoorRoutes(callback_url="http://127.0.0.1:3000", gateway=client)
    base = "http://127.0.0.1:3000/@connections/"
    try:
        with transport(routes) as fell_through:
            session = URLLib3Session()
            answers = session.send_many([signed("POST", base + "a", b"1"), signed("POST", base + "gone", b"2"),
                                         signed("POST", base + "b", b"3")])
            assert batches == ["/@connections/a,/@connections/gone,/@connections/b"]
            assert [a.status_code for a in answers] == [200, 410, 200]
            assert [a.content for a in answers] == [b"1", b'{"message":"gone"}', b"3"]
            assert answers[1].headers["X-AMZN-ERRORTYPE"] == "GoneException"
            # Not all to the same door: each alone, and a transport failure is returned, not raised.
            mixed = session.send_many([signed("POST", base + "c", b"4"), signed("POST", "http://127.0.0.1:1/x", b"")])
            assert len(batches) == 1 and len(fell_through) == 1
            assert mixed[0].status_code == 200
            assert isinstance(mixed[1], EndpointConnectionError)
        assert not hasattr(URLLib3Session, "send_many")  # uninstalled with the transport
    finally:
        client.close()
        server.close()


def test_a_fan_outs_posts_become_the_shared_batch_their_own_door_requests_make() -> None:
    """The transport builds a fan-out's SHARED batch without a door request per post: it must be the
    batch those door requests make — or None whenever they would not make one."""
    from prdtool.collab.poster import ConnectionsApi, Post

    api = ConnectionsApi("http://127.0.0.1:3000/prod", "us-east-1", Credentials("AKID", "secret", "a-token"))
    transport = BotocoreDoorTransport(DoorRoutes())
    posts = api._posts([f"Conn{i}abc=" for i in range(12)], b'{"action":"y","data":"AAE="}')
    bodies = [post.body for post in posts]
    door_requests = [BotocoreDoorTransport._door_request(post, post.body) for post in posts]
    batch = transport._shared_batch(posts, bodies)
    assert batch is not None and batch == door.shared(door_requests)
    assert batch.requests() == door_requests
    assert "X-Amz-Security-Token" in dict(door_requests[0].headers)

    def with_headers(index: int, headers: dict[str, str]) -> list[Any]:
        copy = list(posts)
        copy[index] = Post(posts[index].url, headers, posts[index].body)
        return copy

    later = {**posts[5].headers, "X-Amz-Date": "20991231T235959Z"}
    assert transport._shared_batch(with_headers(5, later), bodies) is None
    reordered = dict(reversed(list(posts[5].headers.items())))
    assert transport._shared_batch(with_headers(5, reordered), bodies) is None
    assert door.shared([BotocoreDoorTransport._door_request(p, p.body) for p in with_headers(5, reordered)]) is None
    assert transport._shared_batch(posts, [*bodies[:6], b"another", *bodies[7:]]) is None
    elsewhere = list(posts)
    elsewhere[9] = Post("http://127.0.0.2:3000/prod/@connections/x", posts[9].headers, posts[9].body)
    assert transport._shared_batch(elsewhere, bodies) is None
    assert transport._shared_batch(posts[:1], bodies[:1]) is None
    # Alike but for the Host the transport adds (another port): that header is not the posts' own.
    same = {"X-Amz-Date": "20261207T120000Z", "Content-Length": "3"}
    ports = [Post(f"http://127.0.0.1:{port}/@connections/a", dict(same), b"abc") for port in (3000, 3001, 3000)]
    assert door.shared([BotocoreDoorTransport._door_request(p, p.body) for p in ports]) is not None
    assert transport._shared_batch(ports, [b"abc"] * 3) is None


def test_a_transport_attached_to_one_client_leaves_the_others_on_http(socket_dir: Path) -> None:
    seen: list[str] = []

    def queues(request: DoorRequest) -> DoorResponse:
        seen.append(request.header("X-Amz-Target") or "")
        body = b'{"QueueUrls": ["http://127.0.0.1:9/123456789012/q"]}'
        return DoorResponse(200, [("Content-Type", "application/x-amz-json-1.0")], body)

    server = BlockingDoorServer(str(socket_dir / "m.sock"), queues)
    endpoint = "http://127.0.0.1:9"  # nothing listens: HTTP would fail to connect

    def sqs() -> Any:
        return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKID",
                            aws_secret_access_key="secret", config=Config(retries={"max_attempts": 1}))

    attached, other = sqs(), sqs()
    transport = BotocoreDoorTransport(DoorRoutes(endpoint_url=endpoint, moto=DoorClient(server.path)))
    try:
        transport.attach(attached)
        transport.attach(attached)  # idempotent
        assert attached.list_queues()["QueueUrls"] == ["http://127.0.0.1:9/123456789012/q"]
        assert seen == ["AmazonSQS.ListQueues"]
        with pytest.raises(EndpointConnectionError):
            other.list_queues()
        assert seen == ["AmazonSQS.ListQueues"] and not hasattr(URLLib3Session, "send_many")
    finally:
        server.close()
