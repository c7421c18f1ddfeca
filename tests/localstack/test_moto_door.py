"""moto's door (moto_main.MotoDoor): the same calls give the same botocore results as over HTTP,
and writes through it are locked and journaled as HTTP writes are."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session

from scripts.localstack import journal
from scripts.localstack.door import BotocoreDoorTransport, DoorClient, DoorRequest, DoorResponse, DoorRoutes
from scripts.localstack.journal import ItemImage
from scripts.localstack.stack import MotoServer

pytestmark = pytest.mark.timeout(120)
REGION = "us-east-1"
VOLATILE_HEADERS = {"date", "server", "x-amzn-requestid", "x-amz-crc32", "connection", "access-control-allow-origin"}


class CountingClient(DoorClient):
    """A door client that remembers what went through it (proof the door, not HTTP, was used)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def request(self, request: DoorRequest, timeout: float | None = 60.0) -> DoorResponse:
        with self._lock:
            self.sent.append(request.header("X-Amz-Target") or request.method)
        return super().request(request, timeout)


class Moto:
    def __init__(self, server: MotoServer, journal_dir: Path, door: CountingClient) -> None:
        self.server = server
        self.journal_dir = journal_dir
        self.door = door
        self.routes = DoorRoutes(endpoint_url=server.url, moto=door)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="not-checked",
        )

    @contextmanager
    def through_door(self) -> Iterator[CountingClient]:
        """Calls made inside go through the door (the worker's transport, installed in this process)."""
        transport = BotocoreDoorTransport(self.routes)
        transport.install(URLLib3Session)
        before = len(self.door.sent)
        try:
            yield self.door
        finally:
            BotocoreDoorTransport.uninstall(URLLib3Session)
        assert len(self.door.sent) > before, "nothing went through the door"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    directory = Path(tempfile.mkdtemp(prefix="moto-door-test-"))  # short: a unix socket's path is limited
    door_path = str(directory / "moto.sock")
    server = MotoServer(0, journal_dir=directory / "journal", door_path=door_path)
    try:
        server.wait_until_ready()
        server.start_journal(floor=0)
        yield Moto(server, directory / "journal", CountingClient(door_path))
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def both_ways(moto: Moto, scenario: Callable[[str], Any]) -> tuple[Any, Any]:
    """``scenario(suffix)`` over HTTP then through the door, each on its own resources."""
    over_http = scenario("over-http")
    with moto.through_door():
        through_door = scenario("thru-door")
    return over_http, through_door


def comparable(result: Any, suffix: str) -> Any:
    """A botocore result with what differs between any two calls removed (request ids, dates)."""
    if isinstance(result, dict):
        cleaned = {}
        for key, value in result.items():
            if key == "ResponseMetadata":
                headers = {k: v for k, v in value["HTTPHeaders"].items() if k not in VOLATILE_HEADERS}
                cleaned[key] = {"HTTPStatusCode": value["HTTPStatusCode"], "HTTPHeaders": headers}
            else:
                cleaned[key.replace(suffix, "<suffix>")] = comparable(value, suffix)
        return cleaned
    if isinstance(result, list):
        return [comparable(value, suffix) for value in result]
    if isinstance(result, str):
        return result.replace(suffix, "<suffix>")
    return result


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    return {
        "class": type(raised.value).__name__,
        "error": response["Error"],
        "status": response["ResponseMetadata"]["HTTPStatusCode"],
        "cancellation": response.get("CancellationReasons"),
    }


def create_table(moto: Moto, name: str) -> None:
    moto.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


# ---------------------------------------------------------------- DynamoDB


def test_dynamodb_reads_and_writes_give_the_same_results(moto: Moto) -> None:
    for suffix in ("over-http", "thru-door"):
        create_table(moto, f"items-{suffix}")

    def scenario(suffix: str) -> list[Any]:
        ddb = moto.client("dynamodb")
        table = f"items-{suffix}"
        results: list[Any] = []
        for n in range(3):
            results.append(
                ddb.put_item(
                    TableName=table,
                    Item={
                        "pk": {"S": "p"},
                        "sk": {"N": str(n)},
                        "data": {"B": bytes([n, 255])},
                        "tags": {"SS": ["a", "b"]},
                    },
                    ReturnValues="ALL_OLD",
                )
            )
        results.append(ddb.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": "1"}}, ReturnValues="ALL_OLD"))
        results.append(ddb.get_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"N": "2"}}, ConsistentRead=True))
        results.append(ddb.get_item(TableName=table, Key={"pk": {"S": "missing"}, "sk": {"N": "0"}}))
        results.append(
            ddb.query(
                TableName=table,
                KeyConditionExpression="pk = :p AND sk >= :s",
                ExpressionAttributeValues={":p": {"S": "p"}, ":s": {"N": "1"}},
                ScanIndexForward=False,
                Limit=1,
            )
        )
        results.append(
            ddb.update_item(
                TableName=table,
                Key={"pk": {"S": "p"}, "sk": {"N": "0"}},
                UpdateExpression="ADD hits :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
        )
        results.append(ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "p"}, "sk": {"N": "0"}}]}}))
        return results

    over_http, through_door = both_ways(moto, scenario)

    assert comparable(through_door, "thru-door") == comparable(over_http, "over-http")
    assert through_door[4]["Item"]["data"] == {"B": bytes([2, 255])}  # binary survives the door both ways


def test_a_conditional_check_failure_raises_the_same_exception(moto: Moto) -> None:
    for suffix in ("over-http", "thru-door"):
        create_table(moto, f"conditional-{suffix}")

    def scenario(suffix: str) -> dict[str, Any]:
        ddb = moto.client("dynamodb")
        item = {"pk": {"S": "taken"}, "sk": {"N": "0"}}
        ddb.put_item(TableName=f"conditional-{suffix}", Item=item)
        return error_of(
            lambda: ddb.put_item(
                TableName=f"conditional-{suffix}",
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )

    over_http, through_door = both_ways(moto, scenario)

    assert through_door == over_http
    assert through_door["class"] == "ConditionalCheckFailedException"
    assert through_door["error"]["Code"] == "ConditionalCheckFailedException"
    assert through_door["status"] == 400


def test_a_cancelled_transaction_raises_the_same_exception_with_the_same_reasons(moto: Moto) -> None:
    for suffix in ("over-http", "thru-door"):
        create_table(moto, f"transact-{suffix}")

    def scenario(suffix: str) -> tuple[dict[str, Any], Any]:
        ddb = moto.client("dynamodb")
        table = f"transact-{suffix}"
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "0"}, "v": {"N": "1"}})
        failure = error_of(
            lambda: ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"N": "0"}}}},
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": {"pk": {"S": "a"}, "sk": {"N": "0"}},
                            "ConditionExpression": "v = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}},
                        }
                    },
                ]
            )
        )
        after = ddb.scan(TableName=table, ConsistentRead=True)["Items"]  # the Put did not happen
        return failure, after

    over_http, through_door = both_ways(moto, scenario)

    assert through_door == over_http
    failure, after = through_door
    assert failure["class"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in failure["cancellation"]] == ["None", "ConditionalCheckFailed"]
    assert after == [{"pk": {"S": "a"}, "sk": {"N": "0"}, "v": {"N": "1"}}]


def test_a_write_through_the_door_is_journaled_before_it_is_answered(moto: Moto) -> None:
    create_table(moto, "journaled")
    with moto.through_door():
        moto.client("dynamodb").put_item(
            TableName="journaled", Item={"pk": {"S": "door"}, "sk": {"N": "7"}, "v": {"S": "kept"}}
        )

    images = [image for _, records in journal.read_records(moto.journal_dir) for image in records]
    assert (
        ItemImage(
            "journaled",
            {"pk": {"S": "door"}, "sk": {"N": "7"}},
            {"pk": {"S": "door"}, "sk": {"N": "7"}, "v": {"S": "kept"}},
        )
        in images
    )


def test_concurrent_updates_through_the_door_are_atomic(moto: Moto) -> None:
    create_table(moto, "counters")
    ddb = moto.client("dynamodb")

    def add() -> None:
        for _ in range(25):
            ddb.update_item(
                TableName="counters",
                Key={"pk": {"S": "c"}, "sk": {"N": "0"}},
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    with moto.through_door():
        threads = [threading.Thread(target=add) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    item = ddb.get_item(TableName="counters", Key={"pk": {"S": "c"}, "sk": {"N": "0"}}, ConsistentRead=True)["Item"]
    assert item["n"] == {"N": "150"}  # the HTTP path's lock (moto_main) holds for the door too


# ---------------------------------------------------------------- SQS, EventBridge


def test_sqs_gives_the_same_results_and_the_same_queue_urls(moto: Moto) -> None:
    def scenario(suffix: str) -> list[Any]:
        sqs = moto.client("sqs")
        created = sqs.create_queue(QueueName=f"q-{suffix}.fifo", Attributes={"FifoQueue": "true"})
        url = sqs.get_queue_url(QueueName=f"q-{suffix}.fifo")
        sent = sqs.send_message(
            QueueUrl=created["QueueUrl"],
            MessageBody="héllo",
            MessageGroupId="g",
            MessageDeduplicationId="d1",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "edit"}},
        )
        received = sqs.receive_message(
            QueueUrl=created["QueueUrl"], MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        (message,) = received["Messages"]
        deleted = sqs.delete_message_batch(
            QueueUrl=created["QueueUrl"], Entries=[{"Id": "1", "ReceiptHandle": message["ReceiptHandle"]}]
        )
        missing = error_of(lambda: sqs.get_queue_url(QueueName=f"nope-{suffix}"))
        for volatile in ("MessageId", "ReceiptHandle"):
            message[volatile] = "<volatile>"
        sent["MessageId"] = "<volatile>"
        sent.pop("SequenceNumber", None)
        return [created, url, sent, received, deleted, missing]

    over_http, through_door = both_ways(moto, scenario)

    assert comparable(through_door, "thru-door") == comparable(over_http, "over-http")
    # The queue's URL is the local endpoint's, as over HTTP (not sqs.<region>.amazonaws.com).
    assert through_door[0]["QueueUrl"] == f"{moto.server.url}/123456789012/q-thru-door.fifo"
    assert through_door[3]["Messages"][0]["Body"] == "héllo"
    assert through_door[5]["error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_eventbridge_gives_the_same_results(moto: Moto) -> None:
    def scenario(suffix: str) -> list[Any]:
        events = moto.client("events")
        bus = events.create_event_bus(Name=f"bus-{suffix}")
        put = events.put_events(
            Entries=[{"EventBusName": f"bus-{suffix}", "Source": "prdtool", "DetailType": "t", "Detail": '{"a": 1}'}]
        )
        put["Entries"] = [{**entry, "EventId": "<volatile>"} for entry in put["Entries"]]
        missing = error_of(lambda: events.describe_event_bus(Name=f"nope-{suffix}"))
        return [bus, put, missing]

    over_http, through_door = both_ways(moto, scenario)

    assert comparable(through_door, "thru-door") == comparable(over_http, "over-http")
    assert through_door[1]["FailedEntryCount"] == 0


def test_services_the_door_does_not_serve_stay_on_http(moto: Moto) -> None:
    with moto.through_door() as door:
        moto.client("dynamodb").list_tables()  # so through_door sees something go through
        sent = len(door.sent)
        moto.client("s3").create_bucket(Bucket="stays-on-http")
        moto.client("s3").put_object(Bucket="stays-on-http", Key="k", Body=b"v")
        assert len(door.sent) == sent
    assert moto.client("s3").get_object(Bucket="stays-on-http", Key="k")["Body"].read() == b"v"


def test_the_door_socket_is_private_and_removed_when_moto_stops() -> None:
    directory = Path(tempfile.mkdtemp(prefix="moto-door-test-"))
    path = directory / "moto.sock"
    server = MotoServer(0, door_path=str(path))
    try:
        server.wait_until_ready()
        assert path.is_socket()
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    finally:
        server.stop()
        exists_after = path.exists()
        shutil.rmtree(directory, ignore_errors=True)
    assert not exists_after


def test_a_long_poll_through_the_door_holds_up_no_other_request(moto: Moto) -> None:
    """The door serves one request at a time, but not an SQS ReceiveMessage, which may wait."""
    import time

    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="door-long-poll")["QueueUrl"]
    ddb = moto.client("dynamodb")
    ddb.create_table(TableName="door-turns", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    polled: list[Any] = []
    with moto.through_door():
        poller = threading.Thread(target=lambda: polled.append(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3)))
        poller.start()
        time.sleep(0.3)  # the poll is waiting in moto
        started = time.monotonic()
        ddb.put_item(TableName="door-turns", Item={"pk": {"S": "a"}})
        assert ddb.get_item(TableName="door-turns", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
        assert time.monotonic() - started < 2, "a DynamoDB call waited for the long poll"
        poller.join()
    assert polled and "Messages" not in polled[0]
