"""The gateway's ``@connections`` door: the workers' management calls over a unix socket get the
answers they get over HTTP — SigV4 check included — from the same code (Gateway.management_call)."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.httpsession import URLLib3Session
from websockets.exceptions import ConnectionClosed

from scripts.localstack.door import BotocoreDoorTransport, DoorClient, DoorRequest, DoorResponse, DoorRoutes
from scripts.localstack.gateway import listen_socket
from scripts.localstack.stack import LoopThread, Runtime, RuntimeSettings
from scripts.localstack.workers import WorkerDoors
from tests.localstack.fixtures.manifests import REGION
from tests.localstack.test_gateway import (
    ACCESS_KEY,
    SECRET_KEY,
    Response,
    Running,
    call,
    gateway_manifest,
    management,
    sigv4_headers,
)

pytestmark = pytest.mark.timeout(60)


@dataclass
class WithDoor:
    running: Running
    door_path: str
    served: list[tuple[str, str]] = field(default_factory=list)  # (method, target) that came through the door

    def connection_id(self, token: str) -> str:
        (event,) = self.running.records_where(
            lambda e: (
                e["requestContext"]["eventType"] == "CONNECT"
                and e.get("queryStringParameters", {}).get("token") == token
            )
        )
        return str(event["requestContext"]["connectionId"])

    def through_door(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> Response:
        """A raw request through the door, with the ``Host`` http.client would send (and signed)."""
        host = [("Host", f"127.0.0.1:{self.running.port}")]
        answer = DoorClient(self.door_path).request(DoorRequest(method, path, host + headers, body))
        return _as_response(answer)


def _as_response(answer: DoorResponse) -> Response:
    """A door's answer in the shape of test_gateway's raw HTTP responses (case-insensitive headers)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in answer.headers) + "\r\n"
    return Response(answer.status, http.client.parse_headers(io.BytesIO(head.encode())), answer.body)


@pytest.fixture(scope="module")
def with_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WithDoor]:
    tmp_path = tmp_path_factory.mktemp("connections-door")
    door_dir = Path(tempfile.mkdtemp(prefix="cdoor-"))  # short: a unix socket's path is limited
    sock = listen_socket("127.0.0.1", 0)
    running = Running(sock.getsockname()[1], tmp_path / "records.jsonl", tmp_path / "dist")
    result = WithDoor(running, str(door_dir / "connections.sock"))
    overrides = {
        "WEBSOCKET_CALLBACK_URL": running.base_url,
        "RECORD_FILE": str(running.records),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }

    async def start() -> Runtime:
        runtime = Runtime(
            gateway_manifest(),
            env_overrides=overrides,
            settings=RuntimeSettings(),
            static_dir=running.static_dir,
            doors=WorkerDoors(gateway=result.door_path),
        )
        serve = runtime.gateway._handle_door_request

        async def counted(request: DoorRequest) -> DoorResponse:
            result.served.append((request.method, request.target))
            return await serve(request)

        runtime.gateway._handle_door_request = counted  # type: ignore[method-assign]
        await runtime.start(sock)
        return runtime

    loop = LoopThread()
    runtime = loop.run(start())
    try:
        yield result
    finally:
        loop.run(runtime.stop(), timeout=30)
        loop.close()
        left = Path(result.door_path).exists()
        shutil.rmtree(door_dir, ignore_errors=True)
        assert not left, "the gateway's stop() leaves the door's socket behind"


@contextmanager
def transport(with_door: WithDoor) -> Iterator[None]:
    """This process's botocore sends @connections calls through the door, as a worker's does."""
    routes = DoorRoutes(callback_url=with_door.running.base_url, gateway=DoorClient(with_door.door_path))
    BotocoreDoorTransport(routes).install(URLLib3Session)
    try:
        yield
    finally:
        BotocoreDoorTransport.uninstall(URLLib3Session)


def test_a_functions_posts_and_deletes_reach_the_socket_through_the_door(with_door: WithDoor) -> None:
    with with_door.running.ws("token=good-door") as ws:
        ws.send(json.dumps({"action": "hello"}))
        reply = json.loads(ws.recv(timeout=15))  # the WsDefault worker's PostToConnection
        connection_id = with_door.connection_id("good-door")
        ws.send(json.dumps({"action": "close"}))  # its DeleteConnection
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)

    assert reply["echo"] == {"action": "hello"}
    assert ("POST", f"/@connections/{connection_id.replace('=', '%3D')}") in with_door.served
    assert ("DELETE", f"/@connections/{connection_id.replace('=', '%3D')}") in with_door.served
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_refusals_through_the_door_are_those_over_http(with_door: WithDoor) -> None:
    running = with_door.running
    with running.ws("token=good-guarded-door") as ws:
        ws.send(json.dumps({"action": "echo"}))
        ws.recv(timeout=15)
        path = f"/@connections/{with_door.connection_id('good-guarded-door')}"
        intruder = b"posted by someone else on this machine"
        variants: dict[str, list[tuple[str, str]]] = {
            "unsigned": [],
            "the dummy secret": sigv4_headers(running, "POST", path, intruder, secret_key="testing"),
            "another access key": sigv4_headers(running, "POST", path, intruder, access_key="AKIDELSEWHERE"),
            "another service": sigv4_headers(running, "POST", path, intruder, service="s3"),
            "a swapped body": sigv4_headers(running, "POST", path, b"what was signed"),
            "garbage": [("Authorization", "AWS4-HMAC-SHA256 nonsense"), ("X-Amz-Date", "20200101T000000Z")],
        }
        over_http = {why: call(running, "POST", path, headers, intruder) for why, headers in variants.items()}
        through_door = {
            why: with_door.through_door("POST", path, headers, intruder) for why, headers in variants.items()
        }
        welcome = b"signed, through the door"
        accepted = with_door.through_door("POST", path, sigv4_headers(running, "POST", path, welcome), welcome)
        first_frame = ws.recv(timeout=15)

    for why in variants:
        http_answer, door_answer = over_http[why], through_door[why]
        assert (door_answer.status, door_answer.headers["x-amzn-ErrorType"], door_answer.json()) == (
            http_answer.status,
            http_answer.headers["x-amzn-ErrorType"],
            http_answer.json(),
        ), why
        assert door_answer.status == 403, why
    assert through_door["unsigned"].headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert through_door["the dummy secret"].headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert accepted.status == 200
    assert first_frame == welcome.decode()  # none of the refused posts reached the socket


def test_a_gone_connection_and_get_connection_through_the_door(with_door: WithDoor) -> None:
    client = management(with_door.running)
    before = len(with_door.served)
    with with_door.running.ws("token=good-info") as ws:
        ws.send(json.dumps({"action": "echo"}))
        ws.recv(timeout=15)
        connection_id = with_door.connection_id("good-info")
        with transport(with_door):
            info = client.get_connection(ConnectionId=connection_id)
            client.post_to_connection(ConnectionId=connection_id, Data=b"from the test, through the door")
            frame = ws.recv(timeout=15)
            with pytest.raises(client.exceptions.GoneException) as gone:
                client.post_to_connection(ConnectionId="NoSuchConnect1=", Data=b"x")
            with pytest.raises(client.exceptions.GoneException):
                client.get_connection(ConnectionId="NoSuchConnect1=")

    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert frame == "from the test, through the door"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert {method for method, _ in with_door.served[before:]} >= {"GET", "POST"}
    assert ("POST", "/@connections/NoSuchConnect1%3D") in with_door.served


def test_the_cached_signing_key_is_per_day_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from multidict import CIMultiDict

    from scripts.localstack.gateway import AwsCredentials, SigV4Verifier

    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)
    path, body = "/@connections/abc%3D", b"frame"

    def check(at: datetime, secret: str = SECRET_KEY) -> str | None:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None))
        request = AWSRequest(method="POST", url=f"http://127.0.0.1:3000{path}", data=body)
        SigV4Auth(Credentials(ACCESS_KEY, secret), "execute-api", REGION).add_auth(request)
        headers = CIMultiDict(request.headers.items())
        refusal = verifier.check("POST", "127.0.0.1:3000", path, "", headers, body, now=at)
        return None if refusal is None else refusal.error_type

    late, early = datetime(2026, 1, 1, 23, 59, 30, tzinfo=UTC), datetime(2026, 1, 2, 0, 0, 30, tzinfo=UTC)
    assert [check(late), check(early), check(late), check(early)] == [None, None, None, None]
    # A key cached for the day is never one for another secret.
    assert check(early, secret="testing") == "InvalidSignatureException"
    assert check(early) is None


@pytest.mark.parametrize(("method", "path", "query", "headers", "body"), [
    ("POST", "/@connections/abc%3D", "", [("Host", "127.0.0.1:3000"), ("X-Amz-Date", "20261206T030405Z")], b"x"),
    ("DELETE", "/prod/@connections/a%2Fb+c", "", [("Host", "h"), ("X-Amz-Date", "20261206T030405Z"),
                                                    ("X-Amz-Security-Token", "tok/en=")], b""),
    ("GET", "/stage/./a/../@connections/x~y%20z", "b=2&a=1&a=0&c", [("Host", "h:80"), ("X-Amz-Date", "d"),
                                                                      ("X-Multi", "  one   two "), ("x-multi", "3")],
     b""),
    ("post", "/@connections/q", "", [("Host", "h"), ("X-Amz-Date", "d"), ("User-Agent", "signed by mistake"),
                                     ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"), ("Content-Type", "a/b")], b"{}"),
])
def test_the_gateways_canonical_request_is_botocores(method: str, path: str, query: str,
                                                     headers: list[tuple[str, str]], body: bytes) -> None:
    """``canonical_request`` (what the gateway checks every post with) against botocore's own, for
    the headers the client says it signed, received as they are."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from multidict import CIMultiDict

    from scripts.localstack.gateway import _UNSIGNABLE, canonical_request

    received = CIMultiDict(headers)
    signed = sorted({name.lower() for name, _ in headers} | {"host"})
    request = AWSRequest(method=method, url=f"http://{received['Host']}{path}" + (f"?{query}" if query else ""),
                         data=body)
    for name in signed:
        if name not in _UNSIGNABLE:
            for value in received.getall(name, []):
                request.headers[name] = value
    theirs = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", REGION).canonical_request(request)
    assert canonical_request(method, received["Host"], path, query, received, signed, body) == theirs


def _signed_variants() -> list[tuple[str, str, dict[str, str], bytes, datetime]]:
    """Requests to check: well signed, and each way of being wrong (label, path, headers, body, now)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    at = datetime(2026, 12, 7, 3, 4, 5, tzinfo=UTC)
    path, body = "/@connections/abc%3D", b'{"m":"frame"}'

    def sign(access: str = ACCESS_KEY, secret: str = SECRET_KEY, region: str = REGION, service: str = "execute-api",
             extra: dict[str, str] | None = None, when: datetime = at) -> dict[str, str]:
        import botocore.auth

        saved = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)  # type: ignore[assignment]
        try:
            request = AWSRequest(method="POST", url=f"http://127.0.0.1:3000{path}", data=body, headers=extra or {})
            SigV4Auth(Credentials(access, secret), service, region).add_auth(request)
        finally:
            botocore.auth.get_current_datetime = saved  # type: ignore[assignment]
        return dict(request.headers.items())

    good = sign()
    variants = [
        ("well signed", good),
        ("another secret", sign(secret="testing")),
        ("another key", sign(access="AKIAOTHER")),
        ("another region", sign(region="eu-west-1")),
        ("another service", sign(service="dynamodb")),
        ("six minutes old", sign(when=at - timedelta(minutes=6))),
        ("from the future", sign(when=at + timedelta(minutes=6))),
        ("yesterday's scope", {**good, "X-Amz-Date": "20261206T235959Z"}),
        ("payload hash signed", sign(extra={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})),
        ("payload hash wrong", {**sign(extra={"X-Amz-Content-SHA256": "0" * 64})}),
        ("signature altered", {**good, "Authorization": good["Authorization"][:-1] + "0"}),
        ("field after the signature", {**good, "Authorization": good["Authorization"] + ", Extra=1"}),
        ("not ASCII after the signature", {**good, "Authorization": good["Authorization"] + ", X=\u00e9"}),
        ("no host signed", {**good, "Authorization": good["Authorization"].replace("SignedHeaders=host;",
                                                                                     "SignedHeaders=")}),
        ("another algorithm", {**good, "Authorization": good["Authorization"].replace("AWS4-HMAC-SHA256",
                                                                                        "AWS4-HMAC-SHA1")}),
        ("garbage", {**good, "Authorization": "Bearer abc"}),
        ("no authorization", {k: v for k, v in good.items() if k != "Authorization"}),
        ("no date", {k: v for k, v in good.items() if k != "X-Amz-Date"}),
    ]
    return [(label, path, headers, body, at) for label, headers in variants]


@pytest.mark.parametrize("headers", [
    [("Host", "127.0.0.1:3000"), ("X-Amz-Date", "20261206T030405Z")],
    [("X-Amz-Date", "20261206T030405Z")],  # no Host header: the request's host, as botocore's
    [("Host", "  h   :80 "), ("X-Amz-Date", " 20261206T030405Z ")],
    [("Host", ""), ("X-Amz-Date", "20261206T030405Z")],
    [("Host", "a"), ("host", "b"), ("X-Amz-Date", "d1"), ("x-amz-date", "d 2")],
    [("Host", "h"), ("X-Amz-Date", "20261206T030405Z"), ("X-Other", "not signed")],
])
@pytest.mark.parametrize("path", ["/@connections/abc%3D", "/prod/./x/../@connections/a%2Fb+c~d%20e"])
def test_a_posts_canonical_request_is_the_general_ones(headers: list[tuple[str, str]], path: str) -> None:
    """The one-format canonical request of a request signing host and x-amz-date (every post)."""
    from multidict import CIMultiDict

    from scripts.localstack.gateway import _host_and_date_canonical, canonical_request

    received = CIMultiDict(headers)
    for method, body in (("POST", b'{"action": "y"}'), ("delete", b"")):
        general = canonical_request(method, "127.0.0.1:3000", path, "", received, ["host", "x-amz-date"], body)
        assert _host_and_date_canonical(method, "127.0.0.1:3000", path, received, body) == general


def test_the_short_path_accepts_exactly_what_the_whole_check_accepts() -> None:
    from multidict import CIMultiDict

    from scripts.localstack.gateway import AwsCredentials, ReceivedRequest, SigV4Verifier

    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)
    answers = {}
    for label, path, headers, body, at in _signed_variants():
        received = CIMultiDict(headers)
        request = ReceivedRequest("POST", "127.0.0.1:3000", path, "", received, body)
        for _ in range(2):  # the second time from the cached scope
            short = verifier._well_signed(request, at)
            whole = verifier._full_check(request, at)
            checked = verifier.check("POST", "127.0.0.1:3000", path, "", received, body, at)
            assert whole is None or not short, label  # never accepts what the whole check refuses
            assert checked == whole, label
        answers[label] = None if whole is None else whole.error_type
        if label == "well signed":  # ... and takes the short way when it can
            assert verifier._well_signed(request, at)
    accepted = {label for label, answer in answers.items() if answer is None}
    assert accepted == {"well signed", "payload hash signed", "field after the signature",
                        "not ASCII after the signature"}, answers
    assert answers["another key"] == "UnrecognizedClientException"
    assert answers["signature altered"] == answers["six minutes old"] == "InvalidSignatureException"


def test_a_fan_outs_shared_check_answers_as_the_short_path_for_each_post() -> None:
    """The shared check of a SHARED batch (what the posts share looked up and hashed once) answers
    for every way of being signed right or wrong as the short path does post by post — with a query
    or other signed headers too (it hands those to the short path) — and has no answer (each post
    takes the whole check) when the shared headers declare a payload hash."""
    from multidict import CIMultiDict

    from scripts.localstack.gateway import AwsCredentials, ReceivedRequest, SigV4Verifier

    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)
    answered = {}
    for label, path, headers, body, at in _signed_variants():
        if "Authorization" not in headers:
            continue  # (every post of a SHARED batch has the header that varies)
        shared = CIMultiDict((name, value) for name, value in headers.items() if name != "Authorization")
        check = verifier.shared_checker("POST", "127.0.0.1:3000", shared, body, at)
        if check is None:
            assert "X-Amz-Content-SHA256" in headers, label
            continue
        for query in ("", "a=1"):
            request = ReceivedRequest("POST", "127.0.0.1:3000", path, query, CIMultiDict(headers), body)
            answered[label, query] = check(path, query, headers["Authorization"])
            assert answered[label, query] == verifier._well_signed(request, at), (label, query)
        # another connection's path under this signature is never accepted
        assert not check("/@connections/other%3D", "", headers["Authorization"]), label
    assert answered["well signed", ""] and answered["another region", ""] is False
    assert answered["signature altered", ""] is False and answered["six minutes old", ""] is False


def test_a_date_found_fresh_is_taken_as_fresh_only_while_it_still_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier remembers a fresh ``X-Amz-Date`` for at most a second (a fan-out's posts share
    it), and never past the moment it leaves the allowed skew."""
    from multidict import CIMultiDict

    import scripts.localstack.gateway as gateway
    from scripts.localstack.gateway import SIGV4_MAX_SKEW, AwsCredentials, SigV4Verifier

    label, path, headers, body, at = _signed_variants()[0]
    assert label == "well signed"
    clock = {"wall": at, "monotonic": 1000.0}

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return clock["wall"]

    monkeypatch.setattr(gateway, "datetime", Clock)
    monkeypatch.setattr(gateway.time, "monotonic", lambda: clock["monotonic"])

    def check() -> str | None:
        refusal = verifier.check("POST", "127.0.0.1:3000", path, "", CIMultiDict(headers), body)
        return None if refusal is None else refusal.error_type

    def advance(seconds: float) -> None:
        clock["wall"] += timedelta(seconds=seconds)
        clock["monotonic"] += seconds

    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)
    assert check() is None
    advance(0.9)
    assert check() is None  # remembered
    # Signed 0.3 s before the end of the window: remembered for those 0.3 s only.
    clock["wall"] = at + SIGV4_MAX_SKEW - timedelta(seconds=0.3)
    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)
    assert check() is None
    advance(0.2)
    assert check() is None
    advance(0.2)
    assert check() == "InvalidSignatureException"  # "Signature expired", though found fresh 0.4 s ago
    # A clock read while remembering would have said the same: the memory only saves reading it.
    clock["wall"] = at + SIGV4_MAX_SKEW + timedelta(seconds=0.1)
    assert verifier._full_check(gateway.ReceivedRequest("POST", "127.0.0.1:3000", path, "", CIMultiDict(headers),
                                                        body)) is not None


def test_the_remembered_body_digest_never_vouches_for_another_body() -> None:
    """Posts of one frame to many connections share its digest; a request whose body differs from
    the last one's — by a byte, or only in length — is hashed afresh and refused if it was not the
    body signed."""
    from multidict import CIMultiDict

    from scripts.localstack.gateway import AwsCredentials, SigV4Verifier

    label, path, headers, body, at = _signed_variants()[0]
    assert label == "well signed"
    verifier = SigV4Verifier(AwsCredentials(ACCESS_KEY, SECRET_KEY), REGION)

    def check(sent: bytes) -> bool:
        return verifier.check("POST", "127.0.0.1:3000", path, "", CIMultiDict(headers), sent, at) is None

    others = [body[:-1] + b"!", body + b" ", body[:-1], b"", bytes(len(body))]
    outcomes = []
    for other in others:
        outcomes += [check(body), check(other), check(body)]
    assert outcomes == [True, False, True] * len(others)


def test_a_shared_batch_is_answered_and_delivered_as_each_post_alone(with_door: WithDoor) -> None:
    """A fan-out's SHARED batch reaches the gateway's whole-batch handler: each post in it gets the
    answer — and the socket the frames — it gets as a BATCH member or sent alone: the well-signed
    post to a live connection delivered, a gone connection 410, a forged signature and a foreign
    access key refused (403), nothing of the refused ones on the socket."""
    from botocore.credentials import Credentials

    from prdtool.collab.poster import ConnectionsApi
    from scripts.localstack import door

    running = with_door.running
    api = ConnectionsApi(running.base_url, REGION, Credentials(ACCESS_KEY, SECRET_KEY))
    client = DoorClient(with_door.door_path)
    with running.ws("token=good-shared") as ws:
        ws.send(json.dumps({"action": "echo"}))
        ws.recv(timeout=15)
        live = with_door.connection_id("good-shared")

        def fan_out(body: bytes) -> list[DoorRequest]:
            posts = api._posts([live, "NoSuchConnect1=", live, live], body)
            forged = posts[2].headers["Authorization"]
            posts[2].headers["Authorization"] = forged[:-1] + ("0" if forged[-1] != "0" else "1")
            posts[3].headers["Authorization"] = posts[3].headers["Authorization"].replace(ACCESS_KEY, "AKIDELSEWHERE")
            return [BotocoreDoorTransport._door_request(post, post.body) for post in posts]

        shared_requests, batch_requests, alone_requests = (fan_out(f"frame {how}".encode())
                                                           for how in ("shared", "batch", "alone"))
        assert door.shared(shared_requests) is not None
        served_before = len(with_door.served)
        by_mode = {
            "shared": client.request_many(shared_requests),
            "batch": client._batches(batch_requests, 60),
            "alone": [client.request(request) for request in alone_requests],
        }
        frames = [ws.recv(timeout=15) for _ in range(3)]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
    client.close()

    def outcome(answers: list[DoorResponse]) -> list[tuple[int, str | None, bytes]]:
        return [(a.status, a.header("x-amzn-ErrorType"), a.body) for a in answers]

    assert [a.status for a in by_mode["shared"]] == [200, 410, 403, 403]
    assert by_mode["shared"][2].header("x-amzn-ErrorType") == "InvalidSignatureException"
    assert outcome(by_mode["shared"]) == outcome(by_mode["batch"]) == outcome(by_mode["alone"])
    assert frames == ["frame shared", "frame batch", "frame alone"]  # only the well-signed post of each
    # the shared batch went to the whole-batch handler, not request by request
    assert len(with_door.served) - served_before == 8
