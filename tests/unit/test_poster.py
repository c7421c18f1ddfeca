"""The fan-out's management API client (prdtool.collab.poster) sends what botocore would send."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session
from botocore.utils import percent_encode

from prdtool.collab import poster

ENDPOINT = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> AWSResponse:
    return AWSResponse("https://x", status, headers or {}, _Raw(body))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Requests handed to botocore's HTTP session (answered from ``answers``, default 200)."""
    seen: list[Any] = []
    answers: list[AWSResponse] = []
    real_send = URLLib3Session.send

    def send(self: URLLib3Session, request: Any) -> AWSResponse:
        if not request.url.startswith(ENDPOINT):
            # Another thread of this process (a session-scoped local stack's SQS pollers) is
            # talking to its own server: not this test's traffic.
            return real_send(self, request)
        seen.append(request)
        return answers.pop(0) if answers else _answer(200)

    monkeypatch.setattr(URLLib3Session, "send", send)
    seen.append(answers)  # the test queues answers in sent[0]
    return seen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize("token", ["session-token", None])
@pytest.mark.parametrize("connection_id", ["L0SM9cOFvHcCIhw=", "a/b+c=", "with space~ü"])
@pytest.mark.parametrize(("method", "body"), [("POST", b'{"action":"y"}'), ("DELETE", b"")])
def test_each_request_is_byte_for_byte_what_botocores_signer_prepares(
        monkeypatch: pytest.MonkeyPatch, token: str | None, connection_id: str, method: str, body: bytes) -> None:
    import datetime

    import botocore.auth

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    instant = datetime.datetime(2026, 12, 6, 3, 4, 5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
    # the poster's clock at that instant (its X-Amz-Date is formatted once per second: forget the last)
    monkeypatch.setattr(poster.time, "time", lambda: instant.replace(tzinfo=datetime.UTC).timestamp() + 0.25)
    monkeypatch.setattr(poster, "_amz_second", (0, ""))
    for endpoint in (ENDPOINT, "http://127.0.0.1:3000", "https://ws.example.com:8443/v1/stage"):
        ours = poster.ConnectionsApi(endpoint, "eu-west-1", creds)._request(method, connection_id, body)
        url = f"{endpoint}/@connections/{percent_encode(connection_id)}"
        expected = AWSRequest(method=method, url=url, data=body)
        SigV4Auth(creds, "execute-api", "eu-west-1").add_auth(expected)
        theirs = expected.prepare()
        assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
        assert list(ours.headers.items()) == list(theirs.headers.items())
        assert type(ours.headers) is type(theirs.headers)  # urllib3 copies them: HeadersDict has copy()


@pytest.mark.parametrize("token", ["session-token", None])
def test_a_fan_outs_posts_signed_together_are_each_what_botocores_signer_prepares(
        monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    """``_posts`` signs one body for many connections with what they share computed once; each
    post is still byte for byte botocore's, and signing them together changes nothing."""
    import datetime

    import botocore.auth

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    instant = datetime.datetime(2026, 12, 6, 3, 4, 5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
    monkeypatch.setattr(poster.time, "time", lambda: instant.replace(tzinfo=datetime.UTC).timestamp() + 0.25)
    monkeypatch.setattr(poster, "_amz_second", (0, ""))
    connection_ids = ["L0SM9cOFvHcCIhw=", "a/b+c=", "with space~ü", "L0SM9cOFvHcCIhw="]
    body = b'{"action":"y","data":"AAE="}'
    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", creds)
    posts = api._posts(connection_ids, body)
    assert len(posts) == len(connection_ids)
    for connection_id, post in zip(connection_ids, posts, strict=True):
        expected = AWSRequest(method="POST", url=f"{ENDPOINT}/@connections/{percent_encode(connection_id)}",
                              data=body)
        SigV4Auth(creds, "execute-api", "eu-west-1").add_auth(expected)
        theirs = expected.prepare()
        assert (post.method, post.url, post.body) == (theirs.method, theirs.url, theirs.body)
        assert list(post.headers.items()) == [(k, _text(v)) for k, v in theirs.headers.items()]
        single = api._request("POST", connection_id, body)
        assert list(post.headers.items()) == list(single.headers.items())
    assert posts[0].headers["Authorization"] != posts[1].headers["Authorization"]  # the path is signed


def test_the_request_is_the_one_boto3_sends(sent: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = "L0SM9cOFvHcCIhw=/+"
    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", CREDS)
    api.post(connection_id, b'{"action":"y"}')
    api.delete(connection_id)
    ours_post, ours_delete = sent[1], sent[2]

    client = boto3.client("apigatewaymanagementapi", endpoint_url=ENDPOINT, region_name="eu-west-1",
                          aws_access_key_id=CREDS.access_key, aws_secret_access_key=CREDS.secret_key,
                          aws_session_token=CREDS.token)
    client.post_to_connection(ConnectionId=connection_id, Data=b'{"action":"y"}')
    client.delete_connection(ConnectionId=connection_id)
    theirs_post, theirs_delete = sent[3], sent[4]
    for ours, theirs in ((ours_post, theirs_post), (ours_delete, theirs_delete)):
        assert (ours.method, ours.url) == (theirs.method, theirs.url)
        assert (ours.body or b"") == (theirs.body or b"")
        assert _text(ours.headers["X-Amz-Security-Token"]) == _text(theirs.headers["X-Amz-Security-Token"])
        scope = _text(ours.headers["Authorization"]).split("Signature=")[0]
        assert scope == _text(theirs.headers["Authorization"]).split("Signature=")[0].replace(
            ";user-agent", "").replace("content-type;", "")  # botocore signs its extra headers too
        assert "Credential=AKIDEXAMPLE/" in scope and "/eu-west-1/execute-api/aws4_request" in scope


def test_gone_and_refusals_raise_clienterror_like_botocore(sent: list[Any]) -> None:
    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", CREDS)
    sent[0].append(_answer(410, {"x-amzn-ErrorType": "GoneException:http://internal"}, b'{"message":"gone"}'))
    with pytest.raises(ClientError) as gone:
        api.post("c1", b"x")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    sent[0].append(_answer(403, {"x-amzn-ErrorType": "ForbiddenException"}, b'{"message":"Forbidden"}'))
    with pytest.raises(ClientError) as forbidden:
        api.post("c1", b"x")
    assert forbidden.value.response["Error"] == {"Code": "ForbiddenException", "Message": "Forbidden"}
    assert len(sent) == 3  # neither was retried


def test_throttling_and_server_errors_are_retried_twice(sent: list[Any]) -> None:
    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", CREDS)
    sent[0].extend([_answer(429, {"x-amzn-ErrorType": "LimitExceededException"}), _answer(503), _answer(200)])
    api.post("c1", b"x")
    assert len(sent) == 4
    sent[0].extend([_answer(500), _answer(502), _answer(504)])
    with pytest.raises(ClientError) as failed:
        api.post("c1", b"x")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 504
    assert len(sent) == 7


def test_post_each_posts_every_frame_in_order_and_reports_each_connection(sent: list[Any]) -> None:
    """Without ``send_many`` (AWS): one thread per connection; a failure stops only its connection."""
    from concurrent.futures import ThreadPoolExecutor

    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", CREDS)
    answers = {"gone": _answer(410, {"x-amzn-ErrorType": "GoneException"}),
               "refused": _answer(403, {"x-amzn-ErrorType": "ForbiddenException"})}

    real_send = URLLib3Session.send

    def send(self: URLLib3Session, request: Any) -> AWSResponse:
        if not request.url.startswith(ENDPOINT):  # the session-scoped stack's pollers (see ``sent``)
            return real_send(self, request)
        sent.append(request)
        return answers.get(request.url.rsplit("/", 1)[1], _answer(200))

    with ThreadPoolExecutor(4) as pool, pytest.MonkeyPatch.context() as patch:
        patch.setattr(URLLib3Session, "send", send)
        outcomes = api.post_each(["a", "gone", "b", "refused"], [b"one", b"two"], pool)
    assert outcomes["a"] is None and outcomes["b"] is None
    assert isinstance(outcomes["gone"], ClientError) and outcomes["gone"].response["Error"]["Code"] == "GoneException"
    assert isinstance(outcomes["refused"], ClientError)
    by_connection: dict[str, list[bytes]] = {}
    for request in sent[1:]:
        by_connection.setdefault(request.url.rsplit("/", 1)[1], []).append(request.body)
    assert by_connection == {"a": [b"one", b"two"], "b": [b"one", b"two"], "gone": [b"one"], "refused": [b"one"]}


class _BatchingSession(URLLib3Session):
    """An HTTP session that can carry many requests at once, as the local stack's door transport."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer
        self.batches: list[list[Any]] = []
        self.alone: list[Any] = []

    def send_many(self, requests: list[Any]) -> list[Any]:
        self.batches.append(list(requests))
        return [self.answer(request) for request in requests]

    def send(self, request: Any) -> AWSResponse:
        self.alone.append(request)
        return _answer(200)


def test_post_each_sends_a_frame_to_all_connections_in_one_batch_where_the_session_can(
        monkeypatch: pytest.MonkeyPatch) -> None:
    throttled_once: set[str] = set()

    def answer(request: Any) -> Any:
        target = request.url.rsplit("/", 1)[1]
        if target == "gone":
            return _answer(410, {"x-amzn-ErrorType": "GoneException"})
        if target == "broken":
            return ConnectionError("the door broke")
        if target == "busy" and target not in throttled_once:
            throttled_once.add(target)
            return _answer(429, {"x-amzn-ErrorType": "LimitExceededException"})
        return _answer(200)

    session = _BatchingSession(answer)
    api = poster.ConnectionsApi(ENDPOINT, "eu-west-1", CREDS)
    monkeypatch.setattr(api, "_http", session)
    outcomes = api.post_each(["a", "gone", "busy", "broken", "a"], [b"one", b"two"], pool=None)  # type: ignore[arg-type]
    assert list(outcomes) == ["a", "gone", "busy", "broken"]
    assert outcomes["a"] is None and outcomes["busy"] is None
    assert isinstance(outcomes["gone"], ClientError) and isinstance(outcomes["broken"], ConnectionError)
    # Frame one to all four, frame two to those still there; the throttled post retried alone.
    assert [[r.url.rsplit("/", 1)[1] for r in batch] for batch in session.batches] == [
        ["a", "gone", "busy", "broken"], ["a", "busy"]]
    assert [(r.url.rsplit("/", 1)[1], r.body) for r in session.alone] == [("busy", b"one")]
    first = session.batches[0][0]
    assert first.body == b"one" and _text(first.headers["Authorization"]).startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


def test_x_amz_date_follows_the_clock_second_by_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import calendar

    now = [calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0)) + 0.9]
    monkeypatch.setattr(poster.time, "time", lambda: now[0])
    monkeypatch.setattr(poster, "_amz_second", (0, ""))
    assert poster._amz_date() == "20261231T235959Z"
    now[0] += 0.05  # the same second: the same text
    assert poster._amz_date() == "20261231T235959Z"
    now[0] += 0.1  # the next second, the next day and year
    assert poster._amz_date() == "20270101T000000Z"
