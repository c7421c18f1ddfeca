"""moto's write-ahead journal: what it records, how it is read back, and that a restore from a
snapshot taken during writes plus the journal gives exactly the state moto had (scripts/localstack/journal.py)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.localstack import journal
from scripts.localstack.journal import ItemImage, JournalWriter, ObjectImage
from scripts.localstack.provision import provision, replay_journal, restore_state, save_state
from scripts.localstack.stack import MotoServer
from scripts.localstack.worker_main import PARENT_GONE_STATUS

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"

pytestmark = pytest.mark.timeout(120)


def item(key: str, **attributes: Any) -> dict[str, Any]:
    return {"pk": {"S": key}, **attributes}


# ---------------------------------------------------------------- the file format


def test_records_round_trip_with_binary_values_and_object_bodies(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    assert writer.start() == 0
    images: list[journal.Image] = [
        ItemImage("t", {"pk": {"S": "a"}}, item("a", data={"B": b"\x00\xff"}, tags={"BS": [b"x"]})),
        ObjectImage("bucket", "docs/a.bin", b"\x00binary\xff", "application/octet-stream", {"origin": "test"}),
        ObjectImage("bucket", "gone.txt", None),
        ItemImage("t", {"pk": {"S": "b"}}, None),
    ]
    assert writer.append(lambda: images) == 1
    assert writer.append(lambda: []) is None  # nothing to say, no record

    [(sequence, read)] = list(journal.read_records(tmp_path))

    assert sequence == 1
    assert read[0] == ItemImage("t", {"pk": {"S": "a"}}, item("a", data={"B": "AP8="}, tags={"BS": ["eA=="]}))
    assert read[1:] == images[1:]
    assert read[1].body == b"\x00binary\xff"  # type: ignore[union-attr]


def test_a_record_cut_short_by_a_crash_is_ignored_and_numbering_goes_on(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    writer.start()
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "a"}}, item("a"))])
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "b"}}, item("b"))])
    writer.close()
    ((_first, segment),) = journal.segments(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # the second record, torn by a kill in the middle of write(2)

    assert [sequence for sequence, _ in journal.read_records(tmp_path)] == [1]
    restarted = JournalWriter(tmp_path)
    assert restarted.start() == 1  # the torn record was never acknowledged: its number is reused
    restarted.append(lambda: [ItemImage("t", {"pk": {"S": "c"}}, item("c"))])
    assert [sequence for sequence, _ in journal.read_records(tmp_path)] == [1, 2]


def test_only_the_last_image_of_each_key_after_the_snapshot_is_replayed(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    writer.start()
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "a"}}, item("a", v={"N": "1"}))])
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "b"}}, item("b", v={"N": "1"}))])
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "a"}}, item("a", v={"N": "2"}))])
    writer.append(lambda: [ObjectImage("bk", "k", b"one"), ItemImage("t", {"pk": {"S": "b"}}, None)])
    writer.append(lambda: [ObjectImage("bk", "k", b"two")])

    everything = journal.latest_images(tmp_path)
    after_two = journal.latest_images(tmp_path, after=2)

    assert everything.records == 5 and everything.last_sequence == 5
    assert everything.images == [
        ItemImage("t", {"pk": {"S": "a"}}, item("a", v={"N": "2"})),
        ItemImage("t", {"pk": {"S": "b"}}, None),
        ObjectImage("bk", "k", b"two"),
    ]
    assert after_two.records == 3
    assert [image.identity for image in after_two.images] == [image.identity for image in everything.images]


def test_rotation_and_discarding_keep_the_numbering(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    assert writer.append(lambda: [ItemImage("t", {"pk": {"S": "x"}}, None)]) is None  # not started: nothing
    writer.start()
    for key in "abc":
        writer.append(lambda key=key: [ItemImage("t", {"pk": {"S": key}}, item(key))])  # type: ignore[misc]
    assert writer.status() == {"active": True, "sequence": 3, "bytes": writer.status()["bytes"]}
    assert writer.status()["bytes"] > 0
    assert writer.rotate() == 3  # what a snapshot beginning now records
    assert writer.status()["bytes"] == 0
    writer.append(lambda: [ItemImage("t", {"pk": {"S": "d"}}, item("d"))])
    writer.close()

    assert journal.discard_through(tmp_path, 3) == 1  # the segment the snapshot covers
    assert [first for first, _ in journal.segments(tmp_path)] == [4]
    assert journal.discard_through(tmp_path, 4) == 0  # the newest segment always stays
    assert journal.last_sequence(tmp_path) == 4
    (tmp_path / journal.segment_name(4)).write_bytes(b"")  # even emptied, its name carries the count
    assert journal.last_sequence(tmp_path) == 3
    assert JournalWriter(tmp_path).start(floor=10) == 10  # never below a snapshot's number


def test_a_child_exits_when_its_parent_process_is_gone_even_while_busy() -> None:
    """What the workers and moto do with ``--lifeline-fd`` (see worker_main.exit_with_parent)."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from scripts.localstack.worker_main import exit_with_parent\n"
            "exit_with_parent(int(sys.argv[1]))\n"
            "time.sleep(120)  # a handler in the middle of an invocation\n",
            str(read_end),
        ],
        cwd=ROOT,
        pass_fds=(read_end,),
    )
    os.close(read_end)
    try:
        time.sleep(0.5)
        assert child.poll() is None  # alive while the write end is open
        os.close(write_end)  # what the kernel does when the parent dies, however it dies
        assert child.wait(timeout=30) == PARENT_GONE_STATUS
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ---------------------------------------------------------------- moto journals what it acknowledges


@pytest.fixture
def journaled_moto(tmp_path: Path) -> Iterator[tuple[MotoServer, Path]]:
    directory = tmp_path / "journal"
    moto = MotoServer(journal_dir=directory)
    try:
        moto.wait_until_ready()
        yield moto, directory
    finally:
        moto.stop()


def clients(url: str) -> tuple[Any, Any]:
    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("dynamodb", **options), boto3.client("s3", **options)


def create_table_and_bucket(dynamodb: Any, s3: Any) -> None:
    dynamodb.create_table(
        TableName="things",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket="files")


def state_of(dynamodb: Any, s3: Any) -> tuple[list[Any], dict[str, Any]]:
    items = sorted(
        dynamodb.scan(TableName="things", ConsistentRead=True)["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"])
    )
    objects = {}
    for entry in s3.list_objects_v2(Bucket="files").get("Contents", []):
        got = s3.get_object(Bucket="files", Key=entry["Key"])
        objects[entry["Key"]] = (got["Body"].read(), got["ContentType"], got["Metadata"])
    return items, objects


def test_every_kind_of_write_is_journaled_and_replays_to_the_same_state(
    journaled_moto: tuple[MotoServer, Path],
) -> None:
    moto, directory = journaled_moto
    dynamodb, s3 = clients(moto.url)
    create_table_and_bucket(dynamodb, s3)
    dynamodb.put_item(TableName="things", Item={"pk": {"S": "before"}, "sk": {"S": "start"}})  # not journaled yet
    assert moto.start_journal(floor=0) == 0

    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    dynamodb.put_item(TableName="things", Item={**key, "n": {"N": "1"}, "b": {"B": b"\x00\x01"}})
    dynamodb.update_item(
        TableName="things", Key=key, UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "5"}}
    )
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(TableName="things", Item=key, ConditionExpression="attribute_not_exists(pk)")
    dynamodb.batch_write_item(
        RequestItems={
            "things": [
                {"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"S": "2"}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "before"}, "sk": {"S": "start"}}}},
            ]
        }
    )
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "things", "Item": {"pk": {"S": "c"}, "sk": {"S": "1"}}}},
            {
                "Update": {
                    "TableName": "things",
                    "Key": key,
                    "UpdateExpression": "SET s = :s",
                    "ExpressionAttributeValues": {":s": {"S": "x"}},
                }
            },
            {"Delete": {"TableName": "things", "Key": {"pk": {"S": "b"}, "sk": {"S": "2"}}}},
            {
                "ConditionCheck": {
                    "TableName": "things",
                    "Key": {"pk": {"S": "b"}, "sk": {"S": "1"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )
    dynamodb.delete_item(TableName="things", Key={"pk": {"S": "c"}, "sk": {"S": "1"}})
    s3.put_object(Bucket="files", Key="a.txt", Body=b"first", ContentType="text/plain", Metadata={"who": "alice"})
    s3.put_object(
        Bucket="files",
        Key="a.txt",
        Body=b"second",
        ContentType="text/plain",
        Metadata={"who": "bob"},
        IfMatch=s3.head_object(Bucket="files", Key="a.txt")["ETag"],
    )
    s3.copy_object(Bucket="files", Key="copy.txt", CopySource={"Bucket": "files", "Key": "a.txt"})
    s3.put_object(Bucket="files", Key="doomed", Body=b"x")
    s3.put_object(Bucket="files", Key="doomed-too", Body=b"y")
    s3.delete_object(Bucket="files", Key="doomed")
    s3.delete_objects(Bucket="files", Delete={"Objects": [{"Key": "doomed-too"}]})
    upload = s3.create_multipart_upload(Bucket="files", Key="big.bin")["UploadId"]
    part = s3.upload_part(Bucket="files", Key="big.bin", UploadId=upload, PartNumber=1, Body=b"z" * (5 * 1024 * 1024))
    s3.complete_multipart_upload(
        Bucket="files",
        Key="big.bin",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    expected = state_of(dynamodb, s3)

    records = list(journal.read_records(directory))
    assert all(
        not (isinstance(image, ItemImage) and image.key == {"pk": {"S": "before"}, "sk": {"S": "start"}} and image.item)
        for _, images in records
        for image in images
    )  # the write before the start was not journaled; its deletion was
    # One record per acknowledged write: 5 to DynamoDB, 8 to S3 (not the refused put, not the
    # multipart upload's start and part, which change no object).
    assert len(records) == 13

    fresh = MotoServer()  # moto keeps nothing: an empty one, as after a crash
    try:
        fresh.wait_until_ready()
        fresh_dynamodb, fresh_s3 = clients(fresh.url)
        create_table_and_bucket(fresh_dynamodb, fresh_s3)
        fresh_dynamodb.put_item(
            TableName="things", Item={"pk": {"S": "before"}, "sk": {"S": "start"}}
        )  # "the snapshot"
        manifest: Any = {
            "endpoint_url": fresh.url,
            "region": REGION,
            "tables": {"Things": "things"},
            "buckets": {"Files": "files"},
        }
        assert replay_journal(manifest, directory, after=0) == 13
        assert state_of(fresh_dynamodb, fresh_s3) == expected
    finally:
        fresh.stop()


def test_a_snapshot_taken_during_writes_plus_the_journal_counts_every_increment_once(tmp_path: Path) -> None:
    """A snapshot reads table by table while writes go on, so some writes it holds are also in the
    journal after its sequence number: replaying requests would count those ``ADD``s twice."""
    state = tmp_path / "state"
    moto = MotoServer(journal_dir=state / "journal")
    moto.wait_until_ready()
    try:
        manifest = provision(ROOT / "template.yaml", moto.url, repo_root=ROOT)
        moto.start_journal(floor=restore_state(manifest, state))
        table = manifest["tables"]["RateLimitsTable"]
        bucket = next(iter(manifest["buckets"].values()))
        dynamodb, s3 = clients(moto.url)
        hash_key = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"][0]["AttributeName"]
        writers, increments = 4, 60

        def write(n: int) -> None:
            for i in range(increments):
                dynamodb.update_item(
                    TableName=table,
                    Key={hash_key: {"S": "counter"}},
                    UpdateExpression="ADD hits :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                s3.put_object(Bucket=bucket, Key=f"latest-{n}", Body=str(i).encode())

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        snapshots = 0
        while any(thread.is_alive() for thread in threads):
            sequence = moto.rotate_journal()  # what LocalStack.save_state does, while the writers write
            save_state(manifest, state, journal_sequence=sequence)
            journal.discard_through(state / "journal", sequence)
            snapshots += 1
        for thread in threads:
            thread.join()
    finally:
        moto._process.kill()  # a crash: no final snapshot
        moto._process.wait()
    assert snapshots >= 1

    restarted = MotoServer(journal_dir=state / "journal")
    restarted.wait_until_ready()
    try:
        manifest = provision(ROOT / "template.yaml", restarted.url, repo_root=ROOT)
        sequence = restore_state(manifest, state)
        replay_journal(manifest, state / "journal", after=sequence)
        dynamodb, s3 = clients(restarted.url)
        counter = dynamodb.get_item(TableName=table, Key={hash_key: {"S": "counter"}}, ConsistentRead=True)["Item"]
        latest = {n: s3.get_object(Bucket=bucket, Key=f"latest-{n}")["Body"].read() for n in range(writers)}
    finally:
        restarted.stop()

    assert counter["hits"] == {"N": str(writers * increments)}
    assert latest == {n: str(increments - 1).encode() for n in range(writers)}


def test_binary_keys_survive_the_journal(journaled_moto: tuple[MotoServer, Path]) -> None:
    moto, directory = journaled_moto
    dynamodb, _s3 = clients(moto.url)
    dynamodb.create_table(
        TableName="blobs",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto.start_journal(floor=0)
    dynamodb.put_item(TableName="blobs", Item={"id": {"B": b"\x00\xfe"}, "v": {"S": "kept"}})

    [image] = journal.latest_images(directory).images

    assert image == ItemImage(
        "blobs", {"id": {"B": base64.b64encode(b"\x00\xfe").decode()}}, {"id": {"B": "AP4="}, "v": {"S": "kept"}}
    )
