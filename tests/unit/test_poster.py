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


def test_the_signature_is_botocores() -> None:
    request = AWSRequest(method="POST", url=f"{ENDPOINT}/@connections/a", data=b"x")
    request.context["timestamp"] = "20261206T030000Z"
    for _ in range(2):  # the second time from the cached key
        mine = poster.CachedKeySigV4Auth(CREDS, "execute-api", "eu-west-1").signature("string to sign", request)
        assert mine == SigV4Auth(CREDS, "execute-api", "eu-west-1").signature("string to sign", request)


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
