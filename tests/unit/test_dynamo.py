"""The keystroke path's DynamoDB calls (prdtool.dynamo): signed as botocore signs, answered by
whatever answers a boto3 client, the items pynamodb would write, botocore's errors and retries."""

from __future__ import annotations

import datetime
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError

from prdtool import dynamo
from prdtool.collab import connections, store
from tests.unit.moto_tables import moto_tables


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> AWSResponse:
    raw = json.dumps(body).encode() if body is not None else b""
    return AWSResponse("https://x", status, headers or {}, _Raw(raw))


@pytest.mark.parametrize("token", ["session-token", None])
@pytest.mark.parametrize("url", ["https://dynamodb.eu-west-1.amazonaws.com/", "http://127.0.0.1:5000/"])
def test_the_signature_is_botocores(monkeypatch: pytest.MonkeyPatch, token: str | None, url: str) -> None:
    import botocore.auth

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    instant = datetime.datetime(2026, 12, 6, 3, 4, 5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
    body = b'{"TableName":"t","Key":{"pk":{"S":"a"}}}'
    amz_date = instant.strftime("%Y%m%dT%H%M%SZ")
    host = botocore.auth._host_from_url(url)
    ours = dynamo.authorization(host, "DynamoDB_20120810.GetItem", body, amz_date, creds.get_frozen_credentials(),
                                "eu-west-1")
    expected = AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"})
    SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(expected)
    assert ours == expected.headers["Authorization"]


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("DOCS_TABLE", "unit-docs")
    monkeypatch.setenv("CONNECTIONS_TABLE", "unit-connections")
    with moto_tables(store.DocItem, connections.RosterModel):
        yield


def test_an_update_is_the_item_pynamodb_writes_and_is_stored_once(tables: None) -> None:
    update = bytes(range(256)) * 3
    sk, new = store.append_update("prd-1", update, origin="alice")
    assert new is True
    assert store.append_update("prd-1", update, origin="alice") == (sk, False)  # a retry: stored once
    ours = store.DocItem.get("prd-1", sk, consistent_read=True)
    twin = store.DocItem(prd_id="prd-2", sk=sk, origin="alice", data=update, created_at=ours.created_at)
    twin.save()
    theirs = store.DocItem.get("prd-2", sk, consistent_read=True)
    assert {**ours.serialize(), "prd_id": None} == {**theirs.serialize(), "prd_id": None}
    assert bytes(ours.data) == update and ours.origin == "alice"


def test_the_roster_version_is_read_and_none_before_any(tables: None) -> None:
    assert connections.roster_version("prd-1") is None
    connections._roster_changed("prd-1")
    first = connections.roster_version("prd-1")
    assert first == connections.RosterModel.get("prd#prd-1", "roster").version
    connections._roster_changed("prd-1")
    assert connections.roster_version("prd-1") not in (None, first)


def test_a_refusal_is_botocores_client_error(tables: None) -> None:
    with pytest.raises(ClientError) as refused:
        dynamo.get("no-such-table", {"pk": {"S": "a"}})
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert refused.value.operation_name == "GetItem"


class _Session:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[Any] = []

    def send(self, request: Any) -> Any:
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class _Events:
    def emit(self, *_: Any, **__: Any) -> list[Any]:
        return []


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> _Session:
    fake = _Session([])
    client = type("Client", (), {"meta": type("Meta", (), {"events": _Events()})()})()
    monkeypatch.setattr(dynamo, "_endpoint", lambda: (client, "https://dynamodb.eu-west-1.amazonaws.com/",
                                                      "dynamodb.eu-west-1.amazonaws.com", "eu-west-1", fake))
    monkeypatch.setattr(dynamo.time, "sleep", lambda _: None)
    return fake


def test_throttling_5xx_corrupt_and_broken_answers_are_retried(session: _Session) -> None:
    item = {"Item": {"version": {"S": "v1"}}}
    good = json.dumps(item).encode()
    session.answers += [
        _answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}),
        _answer(200, item, {"x-amz-crc32": str(zlib.crc32(good) + 1)}),
        _answer(200, item, {"x-amz-crc32": str(zlib.crc32(good))}),
    ]
    assert dynamo.get("t", {"pk": {"S": "a"}}, attributes=("version",)) == item["Item"]
    assert len(session.sent) == 3
    sent = json.loads(session.sent[0].body)
    assert sent == {"TableName": "t", "Key": {"pk": {"S": "a"}}, "ConsistentRead": True,
                    "ProjectionExpression": "#a0", "ExpressionAttributeNames": {"#a0": "version"}}
    assert session.sent[0].headers["X-Amz-Target"] == "DynamoDB_20120810.GetItem"

    session.answers += [EndpointConnectionError(endpoint_url="x"), _answer(503, {"message": "busy"}),
                        _answer(500, {"__type": "InternalServerError"})]
    with pytest.raises(ClientError) as gave_up:
        dynamo.call("GetItem", {})
    assert gave_up.value.response["Error"]["Code"] == "InternalServerError" and len(session.sent) == 6


def test_a_failed_condition_is_an_answer_not_retried(session: _Session) -> None:
    session.answers += [_answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                                      "message": "The conditional request failed"})]
    assert dynamo.put_new("t", {"pk": {"S": "a"}, "data": {"B": b"\x00\xff"}}, "pk") is False
    assert len(session.sent) == 1
    body = json.loads(session.sent[0].body)
    assert body["Item"] == {"pk": {"S": "a"}, "data": {"B": "AP8="}}
    assert body["ConditionExpression"] == "attribute_not_exists(#k)" and body["ExpressionAttributeNames"] == {
        "#k": "pk"}
    session.answers += [_answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                                      "message": "bad"})]
    with pytest.raises(ClientError) as refused:
        dynamo.put_new("t", {"pk": {"S": "a"}}, "pk")
    assert refused.value.response["Error"] == {"Code": "ValidationException", "Message": "bad"}
    assert len(session.sent) == 2


def test_nested_and_set_binaries_are_base64_on_the_wire() -> None:
    wire = dynamo.wire_item({"m": {"M": {"b": {"B": b"\x01"}, "l": {"L": [{"B": b"\x02"}, {"N": "3"}]}}},
                             "bs": {"BS": [b"\x03", b"\x04"]}, "s": {"S": "x"}})
    assert wire == {"m": {"M": {"b": {"B": "AQ=="}, "l": {"L": [{"B": "Ag=="}, {"N": "3"}]}}},
                    "bs": {"BS": ["Aw==", "BA=="]}, "s": {"S": "x"}}


def test_binaries_come_back_from_the_wire_as_they_went() -> None:
    item = {"m": {"M": {"b": {"B": b"\x01"}, "l": {"L": [{"B": b"\x02"}, {"N": "3"}]}}},
            "bs": {"BS": [b"\x03", b"\x04"]}, "s": {"S": "x"}, "n": {"NULL": True}}
    assert dynamo.item_from_wire(dynamo.wire_item(item)) == item


def test_a_query_reads_every_page_as_pynamodb_does(tables: None) -> None:
    """The compactor's read of a PRD's updates through the lean Query: every page (``Limit`` per page,
    ``ExclusiveStartKey`` from the last), only the PRD's updates, the items pynamodb's own query gives."""
    updates = [bytes([n]) * (n + 1) for n in range(23)]
    for update in updates:
        store.append_update("prd-1", update, origin="alice")
    store.append_update("prd-2", b"another PRD's", origin="bob")
    store.DocItem(prd_id="prd-1", sk="head", version=1).save()  # not an update: not matched
    ours = [store.DocItem.from_raw_data(raw) for raw in dynamo.query(
        store.DocItem.Meta.table_name, "#p = :p AND begins_with(#s, :s)", {"#p": "prd_id", "#s": "sk"},
        {":p": {"S": "prd-1"}, ":s": {"S": store.UPDATE_PREFIX}}, page_size=5)]
    theirs = list(store.DocItem.query("prd-1", store.DocItem.sk.startswith(store.UPDATE_PREFIX), consistent_read=True))
    assert len(ours) == 23
    assert sorted((i.sk, bytes(i.data), i.origin, i.created_at) for i in ours) == sorted(
        (i.sk, bytes(i.data), i.origin, i.created_at) for i in theirs)
    assert sorted(bytes(i.data) for i in ours) == sorted(updates)


def test_a_batch_delete_removes_every_key_25_per_call(tables: None) -> None:
    keys = [store.append_update("prd-1", bytes([n, n]), origin="alice")[0] for n in range(60)]
    kept = store.append_update("prd-1", b"kept", origin="alice")[0]
    dynamo.batch_delete(store.DocItem.Meta.table_name, [{"prd_id": {"S": "prd-1"}, "sk": {"S": sk}} for sk in keys])
    left = [i.sk for i in store.DocItem.query("prd-1", consistent_read=True)]
    assert left == [kept]


def test_unprocessed_deletes_are_sent_again_then_refused(session: _Session) -> None:
    key = {"pk": {"S": "a"}}
    unprocessed = {"UnprocessedItems": {"t": [{"DeleteRequest": {"Key": {"pk": {"S": "a"}}}}]}}
    session.answers += [_answer(200, unprocessed), _answer(200, {"UnprocessedItems": {}})]
    dynamo.batch_delete("t", [key, {"pk": {"S": "b"}}])
    sent = [json.loads(request.body) for request in session.sent]
    assert sent[0] == {"RequestItems": {"t": [{"DeleteRequest": {"Key": {"pk": {"S": "a"}}}},
                                              {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}}]}}
    assert sent[1] == {"RequestItems": unprocessed["UnprocessedItems"]}  # only what was left, as answered
    assert session.sent[0].headers["X-Amz-Target"] == "DynamoDB_20120810.BatchWriteItem"

    session.sent.clear()
    session.answers += [_answer(200, unprocessed)] * (dynamo.UNPROCESSED_ATTEMPTS + 1)
    with pytest.raises(dynamo.UnprocessedItems):
        dynamo.batch_delete("t", [key])
    assert len(session.sent) == dynamo.UNPROCESSED_ATTEMPTS + 1
