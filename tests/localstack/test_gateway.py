"""The local API Gateway: HTTP API events and responses, authorizers, WebSocket API, @connections."""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from scripts.localstack.gateway import HTTP_BODY_LIMIT, WS_MESSAGE_LIMIT, HttpRouter, listen_socket, policy_allows
from scripts.localstack.manifest import HttpRouteSpec, Manifest
from scripts.localstack.stack import LocalStack, LoopThread, PortInUseError, Runtime, RuntimeSettings
from tests.localstack.fixtures.manifests import ACCOUNT_ID, REGION, function_spec, manifest

pytestmark = pytest.mark.timeout(30)

# What the runtime gives its functions (and so what @connections accepts): not the well-known
# dummy "testing", which anyone on the machine could sign with.
ACCESS_KEY = "testing"
SECRET_KEY = "fixture-secret-not-testing"


def route(key: str, function: str, authorizer: str | None = None) -> HttpRouteSpec:
    method, path = key.split(" ", 1)
    return {"route_key": key, "method": method, "path": path, "function": function, "authorizer": authorizer}


def gateway_manifest() -> Manifest:
    return manifest(
        [
            function_spec("Echo", "http", "app.echo"),
            function_spec("Plain", "http", "app.plain"),
            function_spec("Rich", "http", "app.rich"),
            function_spec("Fail", "http", "app.fail"),
            function_spec("Malformed", "http", "app.malformed"),
            function_spec("Authorizer", "http", "app.authorize"),
            function_spec("WsAuthorizer", "ws", "app.authorize"),
            function_spec("WsConnect", "ws", "app.connect"),
            function_spec("WsDisconnect", "ws", "app.disconnect"),
            function_spec("WsDefault", "ws", "app.default"),
        ],
        http_routes=[
            route("GET /items/{id}", "Echo"),
            route("GET /items/special", "Plain"),
            route("ANY /files/{proxy+}", "Echo"),
            route("POST /echo", "Echo"),
            route("GET /secure", "Echo", "Simple"),
            route("GET /cached", "Echo", "Cached"),
            route("GET /rich", "Rich"),
            route("GET /fail", "Fail"),
            route("GET /malformed", "Malformed"),
        ],
        http_authorizers={
            name: {
                "name": name,
                "function": "Authorizer",
                "payload_format_version": "2.0",
                "simple_responses": True,
                "identity_sources": ["$request.header.Authorization"],
                "result_ttl": ttl,
            }
            for name, ttl in (("Simple", 0), ("Cached", 300))
        },
        websocket={
            "logical_id": "WebSocketApi",
            "api_id": "wsapi12345",
            "stage": "local",
            "route_selection_expression": "$request.body.action",
            "routes": [
                {"route_key": "$connect", "function": "WsConnect", "authorizer": "TokenAuthorizer"},
                {"route_key": "$disconnect", "function": "WsDisconnect", "authorizer": None},
                {"route_key": "$default", "function": "WsDefault", "authorizer": None},
                {"route_key": "custom", "function": "WsDisconnect", "authorizer": None},
            ],
            "authorizers": [
                {
                    "name": "TokenAuthorizer",
                    "function": "WsAuthorizer",
                    "identity_sources": ["route.request.querystring.token"],
                }
            ],
        },
        schedules=[{"name": "Tick", "function": "Plain", "expression": "rate(1 day)", "input": None, "enabled": False}],
    )


@dataclass
class Running:
    port: int
    records: Path
    static_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, query: str) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}/ws?{query}", open_timeout=20, max_size=None)

    def records_where(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> list[dict[str, Any]]:
        """The events the WebSocket fixture functions recorded that match, waiting for at least one."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.records.read_text().splitlines() if self.records.exists() else []
            found = [event for event in map(json.loads, lines) if predicate(event)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@contextmanager
def running_gateway(tmp_path: Path, settings: RuntimeSettings) -> Iterator[Running]:
    sock = listen_socket("127.0.0.1", 0)
    running = Running(sock.getsockname()[1], tmp_path / "records.jsonl", tmp_path / "dist")
    overrides = {
        "WEBSOCKET_CALLBACK_URL": running.base_url,
        "RECORD_FILE": str(running.records),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }

    async def start() -> Runtime:
        runtime = Runtime(gateway_manifest(), env_overrides=overrides, settings=settings, static_dir=running.static_dir)
        await runtime.start(sock)
        return runtime

    loop = LoopThread()
    runtime = loop.run(start())
    try:
        yield running
    finally:
        loop.run(runtime.stop(), timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_gateway(tmp_path_factory.mktemp("gateway"), RuntimeSettings()) as running:
        yield running


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    running: Running, method: str, path: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Response:
    """A raw HTTP request (duplicate headers allowed, nothing added behind our back)."""
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=25)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        if body:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()


def management(running: Running, stage: str = "") -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=running.base_url + stage,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def sigv4_headers(
    running: Running,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    service: str = "execute-api",
) -> list[tuple[str, str]]:
    """The headers botocore signs a request with (``Host`` is left to http.client, which sends the same)."""
    request = AWSRequest(method=method, url=running.base_url + path, data=body)
    SigV4Auth(Credentials(access_key, secret_key), service, region).add_auth(request)
    return list(request.headers.items())


# ---------------------------------------------------------------- ports


def test_a_port_in_use_is_a_one_line_error_before_anything_starts(tmp_path: Path) -> None:
    taken = listen_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PortInUseError) as gateway_port:
            LocalStack(tmp_path, port=port).start()
        with pytest.raises(PortInUseError) as moto_port:
            LocalStack(tmp_path, port=0, moto_port=port).start()
    finally:
        taken.close()

    assert str(gateway_port.value) == f"port {port} is already in use; set PORT=... to use another"
    assert str(moto_port.value) == f"port {port} (moto) is already in use; set MOTO_PORT=... to use another"


# ---------------------------------------------------------------- HTTP API events


def test_the_http_event_is_api_gateways_payload_format_2(gateway: Running) -> None:
    response = call(
        gateway,
        "GET",
        "/items/42?a=1&a=2&b=x%20y",
        headers=[
            ("User-Agent", "test-agent/1.0"),
            ("X-Dup", "one"),
            ("X-Dup", "two"),
            ("Cookie", "c1=1; c2=2"),
        ],
    )

    assert response.status == 200
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    headers = event["headers"]
    assert headers["x-dup"] == "one,two"
    assert headers["user-agent"] == "test-agent/1.0"
    assert "cookie" not in headers
    assert all(name == name.lower() for name in headers)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(gateway.port)
    context = event["requestContext"]
    assert context["accountId"] == ACCOUNT_ID
    assert re.fullmatch(r"[0-9a-f]{10}", context["apiId"])
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert context["http"] == {
        "method": "GET",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "test-agent/1.0",
    }
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert context["routeKey"] == "GET /items/{id}"
    assert context["stage"] == "$default"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context["time"])
    assert abs(context["timeEpoch"] - time.time() * 1000) < 60_000
    assert "authorizer" not in context


def test_text_bodies_are_passed_as_text_and_binary_ones_as_base64(gateway: Running) -> None:
    text = call(gateway, "POST", "/echo", [("Content-Type", "application/json")], b'{"k": "v"}').json()
    binary = call(gateway, "POST", "/echo", [("Content-Type", "application/octet-stream")], b"\x00\xff\x10").json()

    assert (text["body"], text["isBase64Encoded"]) == ('{"k": "v"}', False)
    assert (base64.b64decode(binary["body"]), binary["isBase64Encoded"]) == (b"\x00\xff\x10", True)


def test_a_gzip_encoded_body_reaches_the_function_as_sent(gateway: Running) -> None:
    """API Gateway does not inflate a request body (git sends larger upload-pack requests gzipped)."""
    import gzip

    packed = gzip.compress(b"0032want " + b"a" * 40 + b"\n" * 1000)
    echoed = call(gateway, "POST", "/echo", [("Content-Type", "application/x-git-upload-pack-request"),
                                            ("Content-Encoding", "gzip")], packed).json()
    assert (base64.b64decode(echoed["body"]), echoed["isBase64Encoded"]) == (packed, True)
    assert echoed["headers"]["content-encoding"] == "gzip"


def test_routes_match_like_api_gateway(gateway: Running) -> None:
    exact = call(gateway, "GET", "/items/special")
    greedy = call(gateway, "DELETE", "/files/a/b%20c/d.txt")

    assert (exact.status, exact.json()) == (200, {"hello": "world"})  # exact path beats {id}
    assert exact.headers["Content-Type"] == "application/json"  # no statusCode: 200 with the value as JSON
    assert greedy.json()["routeKey"] == "ANY /files/{proxy+}"
    assert greedy.json()["pathParameters"] == {"proxy": "a/b c/d.txt"}
    for method, path in (("POST", "/nowhere"), ("POST", "/items/1"), ("GET", "/files"), ("GET", "/items/")):
        response = call(gateway, method, path)
        assert (response.status, response.json()) == (404, {"message": "Not Found"}), (method, path)


def test_route_precedence_follows_api_gateway() -> None:
    router = HttpRouter(
        [
            route("GET /pets/dog/1", "A"),
            route("GET /pets/dog/{id}", "B"),
            route("GET /pets/{proxy+}", "C"),
            route("ANY /{proxy+}", "D"),
        ]
    )

    def chosen(method: str, path: str) -> str | None:
        match = router.match(method, path)
        return match.route["function"] if match else None

    # The example of API Gateway's "Routing API requests" documentation.
    assert chosen("GET", "/pets/dog/1") == "A"
    assert chosen("GET", "/pets/dog/2") == "B"
    assert chosen("GET", "/pets/cat/1") == "C"
    assert chosen("POST", "/pets/dog/1") == "D"
    assert chosen("GET", "/") is None


def test_a_body_over_10_mb_is_refused_with_413_before_any_function_runs(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")

    response = call(gateway, "POST", "/echo", [("Content-Type", "text/plain")], b"x" * (HTTP_BODY_LIMIT + 1))

    assert (response.status, response.json()) == (413, {"message": "Request Entity Too Large"})
    assert not [r for r in caplog.records if r.name == "localstack.lambda" and r.getMessage().startswith("Echo ")]


def test_a_proxy_response_becomes_the_http_response(gateway: Running) -> None:
    response = call(gateway, "GET", "/rich")

    assert response.status == 201
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert response.body == b"\x00\x01binary"  # base64-decoded; the function's content-length ignored


def test_a_failing_or_malformed_function_is_a_500(gateway: Running) -> None:
    for path in ("/fail", "/malformed"):
        response = call(gateway, "GET", path)
        assert (response.status, response.json()) == (500, {"message": "Internal Server Error"}), path


# ---------------------------------------------------------------- HTTP API authorizer


def test_a_missing_identity_source_is_401_without_invoking_the_authorizer(
    gateway: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")

    response = call(gateway, "GET", "/secure")

    assert (response.status, response.json()) == (401, {"message": "Unauthorized"})
    assert not [r for r in caplog.records if r.name == "localstack.lambda"]


def test_an_authorizer_that_refuses_is_403_and_one_that_fails_is_500(gateway: Running) -> None:
    denied = call(gateway, "GET", "/secure", [("Authorization", "deny")])
    broken = call(gateway, "GET", "/secure", [("Authorization", "boom")])

    assert (denied.status, denied.json()) == (403, {"message": "Forbidden"})
    assert (broken.status, broken.json()) == (500, {"message": "Internal Server Error"})


def test_an_allowed_request_carries_the_authorizer_context(gateway: Running) -> None:
    response = call(gateway, "GET", "/secure", [("Authorization", "allow-alice")])

    assert response.status == 200
    context = response.json()["requestContext"]["authorizer"]["lambda"]
    assert context["user"] == "alice"
    assert context["type"] == "REQUEST"
    assert context["identitySource"] == ["allow-alice"]
    assert (
        context["routeArn"]
        == f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:"
        + response.json()["requestContext"]["apiId"]
        + "/$default/GET/secure"
    )


def test_authorizer_results_are_cached_only_when_the_ttl_is_positive(gateway: Running) -> None:
    def calls(path: str) -> int:
        return int(
            call(gateway, "GET", path, [("Authorization", "allow-bob")]).json()["requestContext"]["authorizer"][
                "lambda"
            ]["calls"]
        )

    first_cached, second_cached = calls("/cached"), calls("/cached")
    first_uncached, second_uncached = calls("/secure"), calls("/secure")

    assert first_cached == second_cached
    assert second_uncached == first_uncached + 1


def test_policy_evaluation_deny_wins_and_wildcards_match() -> None:
    arn = "arn:aws:execute-api:us-east-1:123:api/local/$connect"
    allow = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*:123:api/*"}
    deny = {"Effect": "Deny", "Action": ["execute-api:*"], "Resource": [arn]}

    assert policy_allows({"Statement": [allow]}, arn)
    assert not policy_allows({"Statement": [allow, deny]}, arn)
    assert not policy_allows({"Statement": [{**allow, "Resource": "arn:aws:execute-api:*:999:*"}]}, arn)


# ---------------------------------------------------------------- web client and /_local


def test_the_web_client_is_served_with_an_spa_fallback_once_built(gateway: Running) -> None:
    not_built = call(gateway, "GET", "/")
    assert not_built.status == 200 and b"not built yet" in not_built.body

    gateway.static_dir.mkdir()
    (gateway.static_dir / "index.html").write_text("<html>app</html>")
    (gateway.static_dir / "app.js").write_text("console.log(1)")

    assert call(gateway, "GET", "/").body == b"<html>app</html>"
    assert call(gateway, "GET", "/app.js").body == b"console.log(1)"
    assert call(gateway, "GET", "/prds/123").body == b"<html>app</html>"  # a client-side route
    assert call(gateway, "GET", "/missing.js").status == 404
    for escape in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
        assert call(gateway, "GET", escape).body == b"<html>app</html>"  # never a file outside dist
    assert call(gateway, "GET", "/items").json() == {"message": "Not Found"}  # under the API's paths


def test_local_control_endpoints(gateway: Running) -> None:
    assert call(gateway, "GET", "/_local/manifest").json()["stack_name"] == "test-stack"
    run = call(gateway, "POST", "/_local/schedules/Tick/run").json()
    assert (run["function"], run["outcome"], run["payload"]) == ("Plain", "ok", {"hello": "world"})
    assert call(gateway, "POST", "/_local/schedules/Nope/run").status == 404


# ---------------------------------------------------------------- WebSocket API


def refused_status(running: Running, query: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        running.ws(query)
    return refused.value.response.status_code


def test_the_upgrade_is_refused_401_without_a_token_and_403_when_the_policy_denies(gateway: Running) -> None:
    assert refused_status(gateway, "prd=p1") == 401
    assert refused_status(gateway, "prd=p1&token=invalid") == 401  # the authorizer raised "Unauthorized"
    assert refused_status(gateway, "prd=p1&token=bad") == 403
    assert refused_status(gateway, "prd=p1&token=good-rejected&reject=yes") == 409  # $connect answered 409

    def connect_with(token: str) -> list[dict[str, Any]]:
        return gateway.records_where(
            lambda e: (
                e["requestContext"]["eventType"] == "CONNECT"
                and e.get("queryStringParameters", {}).get("token") == token
            ),
            timeout=0,
        )

    assert not connect_with("bad")  # the authorizer's Deny stops it before $connect
    (rejected,) = connect_with("good-rejected")
    rejected_id = rejected["requestContext"]["connectionId"]
    time.sleep(0.5)
    assert not gateway.records_where(
        lambda e: (
            e["requestContext"]["connectionId"] == rejected_id and e["requestContext"]["eventType"] == "DISCONNECT"
        ),
        timeout=0,
    )


def test_a_connection_lives_from_connect_to_disconnect(gateway: Running) -> None:
    with gateway.ws("prd=p1&token=good-alice") as ws:
        ws.send(json.dumps({"action": "hello", "n": 1}))
        reply = json.loads(ws.recv(timeout=15))
        (connect_event,) = gateway.records_where(
            lambda e: (
                e["requestContext"]["eventType"] == "CONNECT"
                and e.get("queryStringParameters", {}).get("token") == "good-alice"
            )
        )
        connection_id = connect_event["requestContext"]["connectionId"]
        info = management(gateway, "/local").get_connection(ConnectionId=connection_id)

    assert reply["echo"] == {"action": "hello", "n": 1}
    assert reply["authorizer"]["principalId"] == "good-alice"
    assert reply["authorizer"]["user"] == "good-alice"
    context = connect_event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "local"
    assert context["apiId"] == "wsapi12345"
    assert context["authorizer"]["principalId"] == "good-alice"
    assert re.fullmatch(r"[A-Za-z0-9]{15}=", connection_id)
    assert connect_event["multiValueQueryStringParameters"]["prd"] == ["p1"]
    assert connect_event["headers"]["Sec-WebSocket-Version"] == "13"  # WebSocket events keep header case
    assert connect_event["isBase64Encoded"] is False
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["ConnectedAt"] <= info["LastActiveAt"]

    (disconnect,) = gateway.records_where(
        lambda e: (
            e["requestContext"]["eventType"] == "DISCONNECT" and e["requestContext"]["connectionId"] == connection_id
        )
    )
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    assert disconnect["requestContext"]["authorizer"]["user"] == "good-alice"
    client = management(gateway)
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId=connection_id)


def test_frames_are_routed_by_the_selection_expression_and_failures_answered(gateway: Running) -> None:
    with gateway.ws("token=good-routes") as ws:
        ws.send(json.dumps({"action": "custom", "x": 1}))
        ws.send("not json at all")  # goes to $default, whose handler then fails
        error = json.loads(ws.recv(timeout=15))
        (custom,) = gateway.records_where(lambda e: e["requestContext"]["routeKey"] == "custom")

    assert custom["requestContext"]["eventType"] == "MESSAGE"
    assert custom["body"] == json.dumps({"action": "custom", "x": 1})
    assert custom["requestContext"]["authorizer"]["user"] == "good-routes"
    assert error["message"] == "Internal server error"
    assert set(error) == {"message", "connectionId", "requestId"}


def test_frames_of_one_connection_run_concurrently(gateway: Running) -> None:
    with gateway.ws("token=good-parallel") as ws:
        started = time.monotonic()
        for n in range(2):
            ws.send(json.dumps({"action": "slow", "n": n, "sleep": 1.5}))
        replies = [json.loads(ws.recv(timeout=15))["echo"]["n"] for _ in range(2)]
        elapsed = time.monotonic() - started

    assert sorted(replies) == [0, 1]
    assert elapsed < 2 * 1.5


def test_a_frame_over_128_kb_closes_the_connection_with_1009(gateway: Running) -> None:
    with gateway.ws("token=good-big") as ws:
        ws.send(json.dumps({"action": "echo"}))
        ws.recv(timeout=15)
        ws.send("x" * (WS_MESSAGE_LIMIT + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert gateway.records_where(lambda e: e["requestContext"].get("disconnectStatusCode") == 1009)


def test_a_binary_frame_closes_the_connection_with_1003(gateway: Running) -> None:
    with gateway.ws("token=good-binary") as ws:
        ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_delete_connection_closes_the_socket_and_disconnect_follows(gateway: Running) -> None:
    with gateway.ws("token=good-deleted") as ws:
        ws.send(json.dumps({"action": "close"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    (deleted,) = gateway.records_where(lambda e: e.get("body") == json.dumps({"action": "close"}))
    connection_id = deleted["requestContext"]["connectionId"]
    assert gateway.records_where(
        lambda e: (
            e["requestContext"]["eventType"] == "DISCONNECT" and e["requestContext"]["connectionId"] == connection_id
        )
    )


def test_idle_and_lifetime_limits_close_connections(tmp_path: Path) -> None:
    settings = RuntimeSettings(ws_idle_seconds=0.8, ws_max_seconds=2.5)
    with running_gateway(tmp_path, settings) as running:
        with running.ws("token=good-idle") as idle, pytest.raises(ConnectionClosed) as idle_closed:
            idle.recv(timeout=10)
        assert idle_closed.value.rcvd is not None and idle_closed.value.rcvd.code == 1001

        # The lifetime counts from the upgrade request (as API Gateway's does), and $connect may be
        # slow under load: measure from before the request, never from when the socket opened.
        opened = time.monotonic()
        with running.ws("token=good-busy") as busy, pytest.raises(ConnectionClosed) as busy_closed:
            while True:  # a frame every 0.3 s: never idle, so only the lifetime ends it
                busy.send(json.dumps({"action": "keepalive"}))
                time.sleep(0.3)
        assert busy_closed.value.rcvd is not None and busy_closed.value.rcvd.code == 1001
        assert 2.4 < time.monotonic() - opened < 10.0
        assert running.records_where(lambda e: e["requestContext"].get("disconnectReason") == "Going away")


def test_connections_answers_only_requests_signed_with_the_stacks_credentials(
    gateway: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    with gateway.ws("token=good-guarded") as ws:
        ws.send(json.dumps({"action": "echo"}))
        ws.recv(timeout=15)
        (connect_event,) = gateway.records_where(
            lambda e: (
                e["requestContext"]["eventType"] == "CONNECT"
                and e.get("queryStringParameters", {}).get("token") == "good-guarded"
            )
        )
        path = f"/@connections/{connect_event['requestContext']['connectionId']}"
        intruder = b"posted by someone else on this machine"

        def post(headers: list[tuple[str, str]]) -> Response:
            return call(gateway, "POST", path, headers=headers, body=intruder)

        now = botocore.auth.get_current_datetime()
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now - timedelta(minutes=6))
        expired = sigv4_headers(gateway, "POST", path, intruder)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now + timedelta(minutes=6))
        early = sigv4_headers(gateway, "POST", path, intruder)
        monkeypatch.undo()
        refusals = {
            "unsigned": post([]),
            "unsigned delete": call(gateway, "DELETE", path),
            "the dummy secret": post(sigv4_headers(gateway, "POST", path, intruder, secret_key="testing")),
            "another access key": post(sigv4_headers(gateway, "POST", path, intruder, access_key="AKIDELSEWHERE")),
            "another region": post(sigv4_headers(gateway, "POST", path, intruder, region="eu-west-1")),
            "another service": post(sigv4_headers(gateway, "POST", path, intruder, service="s3")),
            "a swapped body": post(sigv4_headers(gateway, "POST", path, b"what was signed")),
            "another path": post(sigv4_headers(gateway, "POST", path + "x", intruder)),
            "six minutes old": post(expired),
            "six minutes early": post(early),
            "garbage": post([("Authorization", "AWS4-HMAC-SHA256 nonsense"), ("X-Amz-Date", "20200101T000000Z")]),
        }
        welcome = b"signed with the stack's credentials"
        accepted = call(gateway, "POST", path, headers=sigv4_headers(gateway, "POST", path, welcome), body=welcome)
        first_frame = ws.recv(timeout=15)

    for why, response in refusals.items():
        assert response.status == 403, why
        assert set(response.json()) == {"message"}, why
    error_types = {why: response.headers["x-amzn-ErrorType"] for why, response in refusals.items()}
    assert error_types["unsigned"] == error_types["unsigned delete"] == "MissingAuthenticationTokenException"
    assert refusals["unsigned"].json() == {"message": "Missing Authentication Token"}
    assert error_types["another access key"] == "UnrecognizedClientException"
    assert error_types["garbage"] == "IncompleteSignatureException"
    for why in ("the dummy secret", "another region", "another service", "a swapped body", "another path"):
        assert error_types[why] == "InvalidSignatureException", why
    assert refusals["the dummy secret"].json()["message"].startswith("The request signature we calculated")
    assert refusals["six minutes old"].json()["message"].startswith("Signature expired: ")
    assert refusals["six minutes early"].json()["message"].startswith("Signature not yet current: ")
    # Nothing of the refused requests reached the socket, which stayed open for the signed one.
    assert accepted.status == 200
    assert first_frame == welcome.decode()
