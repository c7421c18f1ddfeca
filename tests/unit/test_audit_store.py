"""The audit store (moto in-process, no network): writer, hash chain, verification, queries, access rules."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.s3.responses import S3Response

from prdtool.audit import chain, query, verify, writer
from prdtool.audit.models import AuditHeadModel, AuditIndexModel, day_pk, head_pk, resource_pk, user_pk
from prdtool.audit.recorder import AuditEntry
from prdtool.auth.principal import Principal
from prdtool.aws import reset_clients
from prdtool.errors import BadRequest, Forbidden, NotFound
from prdtool.prds.models import MemberModel
from prdtool.settings import reset_settings_cache
from prdtool.storage import rebind_models
from scripts.localstack.moto_main import atomic
from tests.events import LambdaContext, load

BUCKET = "audit-unit-bucket"
DAY = "2026-11-25"
DAY_MS = 1795564800000  # 2026-11-25T00:00:00Z
NEXT_DAY_MS = DAY_MS + 86_400_000
PRD = "01jd0000000000000000000000"
_ids = iter(range(1, 10**6))


def entry(at: int, actor: str = "alice", resource: str = f"prd/{PRD}", action: str = "PATCH /api/prds/{id}",
          **extra: Any) -> AuditEntry:
    n = next(_ids)
    return AuditEntry(id=f"01jd{n:022d}", at=at, actor=actor, action=action, resource=resource, status=200,
                      duration_ms=5, ip="203.0.113.7", user_agent="pytest", path=f"/api/prds/{PRD}",
                      request_id=f"req-{n}", changes={"n": n}, **extra)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AUDIT_BUCKET", BUCKET)
    monkeypatch.setenv("AUDIT_INDEX_TABLE", "audit-unit-index")
    monkeypatch.setenv("MEMBERS_TABLE", "audit-unit-members")
    # S3 makes a conditional put atomic; moto 5.2.5 does not (scripts/localstack/moto_main.py).
    monkeypatch.setattr(S3Response, "put_object", atomic(S3Response.put_object))
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        AuditIndexModel.create_table(billing_mode="PAY_PER_REQUEST")
        MemberModel.create_table(billing_mode="PAY_PER_REQUEST")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3
    reset_settings_cache()
    reset_clients()
    rebind_models()


def objects(s3: Any, day: str = DAY) -> dict[str, list[dict[str, Any]]]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=chain.partition_prefix(day)).get("Contents", [])
    return {o["Key"]: chain.decode(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in listed}


def rewrite(s3: Any, key: str, items: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=chain.encode(items))


def index_items(pk: str) -> list[AuditIndexModel]:
    return list(AuditIndexModel.query(pk))


def problems(day: str = DAY) -> list[str]:
    result = verify.verify_partition(day)
    assert result["ok"] is (not result["problems"])
    return [f"{p['object'].rsplit('/', 1)[-1]}:{p['line']}:{p['problem']}" for p in result["problems"]]


# ----------------------------------------------------------------------------- writer and chain
def test_batches_land_in_date_partitions_as_chained_gzip_json_lines(aws: Any) -> None:
    late, early, tomorrow = entry(DAY_MS + 5000), entry(DAY_MS + 1000), entry(NEXT_DAY_MS + 1)
    outcome = writer.write_entries([late, tomorrow, early])
    assert outcome.appended == 3 and not outcome.failed_ids
    assert sorted(outcome.objects) == [chain.object_key(DAY, 1), chain.object_key("2026-11-26", 1)]
    assert chain.object_key(DAY, 1) == "audit/date=2026-11-25/0000000001.jsonl.gz"
    raw = aws.get_object(Bucket=BUCKET, Key=chain.object_key(DAY, 1))["Body"].read()
    lines = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines()]
    assert [line["id"] for line in lines] == [early.id, late.id]  # sorted by (at, id)
    assert lines[0]["prev"] == chain.genesis(DAY) and lines[1]["prev"] == lines[0]["hash"]
    assert {k: v for k, v in lines[0].items() if k not in ("prev", "hash")} == early.to_dict()
    writer.write_entries([entry(DAY_MS + 9000)])
    second = objects(aws)[chain.object_key(DAY, 2)]
    assert second[0]["prev"] == lines[1]["hash"]  # the chain runs across objects
    head = AuditHeadModel.get(head_pk(DAY), "head")
    assert (head.last_seq, head.last_hash) == (2, second[-1]["hash"])
    assert verify.verify_partition(DAY) == {"date": DAY, "ok": True, "entries": 3, "objects": 2, "duplicates": 0,
                                            "problems": []}
    assert verify.verify_partition("2026-11-26")["ok"] is True
    by_resource = index_items(resource_pk(f"prd/{PRD}"))
    assert [json.loads(i.entry)["id"] for i in by_resource][:2] == [early.id, late.id]
    assert {i.object_key for i in index_items(day_pk(DAY))} == {chain.object_key(DAY, 1), chain.object_key(DAY, 2)}


def _three_objects(s3: Any) -> dict[str, list[dict[str, Any]]]:
    for n in range(3):
        writer.write_entries([entry(DAY_MS + 1000 * n + k) for k in range(3)])
    found = objects(s3)
    assert len(found) == 3 and not problems()
    return found


def test_verify_detects_a_modified_entry(aws: Any) -> None:
    found = _three_objects(aws)
    key = chain.object_key(DAY, 2)
    items = found[key]
    items[1]["actor"] = "mallory"
    rewrite(aws, key, items)
    assert problems() == ["0000000002.jsonl.gz:2:hash mismatch: the entry was modified"]


def test_verify_detects_a_modified_entry_even_when_its_hash_is_recomputed(aws: Any) -> None:
    found = _three_objects(aws)
    key = chain.object_key(DAY, 2)
    items = found[key]
    items[1]["status"] = 204
    items[1]["hash"] = chain.entry_hash(items[1])
    rewrite(aws, key, items)
    assert [p.split(":")[0:2] for p in problems()] == [["0000000002.jsonl.gz", "3"]]
    # ... and rewriting the whole rest of the chain is caught by the head (DynamoDB)
    relinked = chain.link(items, items[0]["prev"])
    rewrite(aws, key, relinked)
    rewrite(aws, chain.object_key(DAY, 3), chain.link(found[chain.object_key(DAY, 3)], relinked[-1]["hash"]))
    assert problems() == ["0000000003.jsonl.gz:0:the chain head's hash does not match this object's last entry"]


def test_verify_detects_a_deleted_entry_and_an_inserted_one(aws: Any) -> None:
    found = _three_objects(aws)
    key = chain.object_key(DAY, 1)
    rewrite(aws, key, [found[key][0], found[key][2]])
    report = problems()
    assert report[0].startswith("0000000001.jsonl.gz:2:chain broken")
    assert any("is indexed but missing from the partition" in p for p in report)
    forged = dict(found[key][1], id="01jd9999999999999999999999", actor="mallory")
    rewrite(aws, key, [found[key][0], forged, found[key][1], found[key][2]])
    assert problems()[0].startswith("0000000001.jsonl.gz:2:")


def test_verify_detects_a_deleted_object(aws: Any) -> None:
    _three_objects(aws)
    aws.delete_object(Bucket=BUCKET, Key=chain.object_key(DAY, 2))
    report = problems()
    assert report[0] == "0000000002.jsonl.gz:0:object(s) 2 missing (deleted)"
    assert report[1].startswith("0000000003.jsonl.gz:1:chain broken")


def test_verify_detects_swapped_objects(aws: Any) -> None:
    found = _three_objects(aws)
    first, second = chain.object_key(DAY, 1), chain.object_key(DAY, 2)
    rewrite(aws, first, found[second])
    rewrite(aws, second, found[first])
    report = problems()
    assert report[0].startswith("0000000001.jsonl.gz:1:chain broken")
    assert any(p.startswith("0000000002.jsonl.gz:1:chain broken") for p in report)


def test_verify_detects_a_truncated_tail(aws: Any) -> None:
    _three_objects(aws)
    aws.delete_object(Bucket=BUCKET, Key=chain.object_key(DAY, 3))
    report = problems()
    assert "0000000003.jsonl.gz:0:truncated: the chain head records object 3 but the partition ends at object 2" \
        in report


def test_verify_reports_an_unreadable_object(aws: Any) -> None:
    _three_objects(aws)
    aws.put_object(Bucket=BUCKET, Key=chain.object_key(DAY, 2), Body=b"not gzip")
    assert problems()[0].startswith("0000000002.jsonl.gz:0:object unreadable")
    # the writer still appends after it, and the verifier reports only the damage
    writer.write_entries([entry(DAY_MS + 50_000)])
    assert len(objects_keys := [k for k in aws.list_objects_v2(Bucket=BUCKET)["Contents"]]) == 4, objects_keys


def test_failed_verification_emits_the_metric(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _three_objects(aws)
    capsys.readouterr()
    aws.delete_object(Bucket=BUCKET, Key=chain.object_key(DAY, 1))
    verify.verify_partition(DAY)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [m["AuditVerifyFailed"] for m in emitted] == [[1.0]]


def test_the_daily_job_verifies_the_previous_utc_day(aws: Any) -> None:
    writer.write_entries([entry(DAY_MS + 1)])
    result = verify.verify_previous_day(datetime(2026, 11, 26, 0, 5, tzinfo=UTC))
    assert (result["date"], result["ok"], result["entries"]) == (DAY, True, 1)


# ----------------------------------------------------------------------------- concurrency and redelivery
def test_a_writer_with_a_stale_head_chains_after_the_object_it_lost_to(aws: Any) -> None:
    writer.write_entries([entry(DAY_MS + 1)])
    writer.write_entries([entry(DAY_MS + 2)])
    AuditHeadModel.get(head_pk(DAY), "head").delete()  # the hint is gone: seq 1 and 2 are taken
    result = writer.append_partition(DAY, [entry(DAY_MS + 3)])
    assert (result.key, result.conflicts) == (chain.object_key(DAY, 3), 2)
    assert not problems()


def test_a_lost_head_far_behind_is_found_by_listing(aws: Any) -> None:
    for n in range(writer.MAX_ATTEMPTS + 5):
        writer.write_entries([entry(DAY_MS + n)])
    AuditHeadModel.get(head_pk(DAY), "head").delete()
    result = writer.append_partition(DAY, [entry(DAY_MS + 100)])
    assert result.key == chain.object_key(DAY, writer.MAX_ATTEMPTS + 6)
    assert not problems()


def test_concurrent_writers_on_one_partition_lose_and_duplicate_nothing(aws: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [[entry(DAY_MS + 10 * b + k, actor=f"user{b % 3}") for k in range(5)] for b in range(16)]
    errors: list[BaseException] = []
    conflicts: list[int] = []
    # Every writer reads the (empty) head before any of them writes, so the first round is a
    # guaranteed race for object 1; later rounds race as the threads happen to interleave.
    real_read_head, first_read, seen = writer.read_head, threading.Barrier(4), threading.local()

    def read_head_together(day: str) -> tuple[int, str]:
        head = real_read_head(day)
        if not getattr(seen, "done", False):
            seen.done = True
            first_read.wait()
        return head

    monkeypatch.setattr(writer, "read_head", read_head_together)

    def run(mine: list[list[AuditEntry]]) -> None:
        try:
            for batch in mine:
                conflicts.append(writer.append_partition(DAY, batch).conflicts)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = [item["id"] for items in objects(aws).values() for item in items]
    expected = sorted(e.id for batch in batches for e in batch)
    assert sorted(stored) == expected, "every entry stored exactly once"
    assert len(objects(aws)) == 16
    indexed = [i.sk.partition("#")[2] for i in index_items(day_pk(DAY))]
    assert sorted(indexed) == expected
    assert sum(conflicts) >= 3, "three writers lost the race for object 1"
    result = verify.verify_partition(DAY)
    assert result["ok"] and result["entries"] == 80 and result["duplicates"] == 0


def test_a_redelivered_batch_is_not_stored_or_indexed_twice(aws: Any) -> None:
    event = load("sqs-audit.json")
    assert writer.handle_sqs_batch(event["Records"]) == {"batchItemFailures": []}
    assert writer.handle_sqs_batch(event["Records"]) == {"batchItemFailures": []}
    assert len(objects(aws)) == 1
    assert len(index_items(day_pk(DAY))) == 2 and len(index_items(user_pk("alice"))) == 2
    assert verify.verify_partition(DAY)["entries"] == 2


def test_a_crash_before_indexing_then_redelivery_keeps_one_of_each_in_the_index(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    event = load("sqs-audit.json")
    real_index = writer._index

    def crash(*args: Any) -> None:
        raise RuntimeError("the Lambda timed out")

    monkeypatch.setattr(writer, "_index", crash)
    failed = writer.handle_sqs_batch(event["Records"])["batchItemFailures"]
    assert sorted(f["itemIdentifier"] for f in failed) == sorted(r["messageId"] for r in event["Records"])
    monkeypatch.setattr(writer, "_index", real_index)
    assert writer.handle_sqs_batch(event["Records"]) == {"batchItemFailures": []}
    assert len(objects(aws)) == 2  # appended twice to S3 ...
    assert len(index_items(day_pk(DAY))) == 2  # ... indexed once
    result = verify.verify_partition(DAY)
    assert result["ok"] and result["duplicates"] == 2
    assert [e["id"] for e in query.search(query.AuditQuery(resource=f"prd/{PRD}"))["entries"]] == [
        json.loads(r["body"])["id"] for r in event["Records"]]


def test_an_entry_counts_as_indexed_only_once_all_its_views_are(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    records = load("sqs-audit.json")["Records"]
    real_batch_write = AuditIndexModel.batch_write
    calls: list[int] = []

    def dies_before_the_day_items(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the Lambda timed out between the two index phases")
        return real_batch_write(*args, **kwargs)

    monkeypatch.setattr(AuditIndexModel, "batch_write", dies_before_the_day_items)
    assert len(writer.handle_sqs_batch(records)["batchItemFailures"]) == 2
    assert index_items(day_pk(DAY)) == [] and len(index_items(user_pk("alice"))) == 2
    monkeypatch.setattr(AuditIndexModel, "batch_write", real_batch_write)
    assert writer.handle_sqs_batch(records) == {"batchItemFailures": []}
    for pk in (day_pk(DAY), user_pk("alice"), resource_pk(f"prd/{PRD}")):
        assert len(index_items(pk)) == 2, pk


def test_a_put_whose_response_was_lost_is_still_indexed(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The put succeeds, its response is lost, the SDK retries and gets 412 for our own object."""
    real_client = writer.client

    class LostResponse:
        def __init__(self, s3: Any) -> None:
            self.s3 = s3

        def put_object(self, **kwargs: Any) -> Any:
            self.s3.put_object(**kwargs)
            return self.s3.put_object(**kwargs)  # the retry: 412

        def __getattr__(self, name: str) -> Any:
            return getattr(self.s3, name)

    monkeypatch.setattr(writer, "client", lambda service: LostResponse(real_client(service)))
    batch = [entry(DAY_MS + 1), entry(DAY_MS + 2)]
    result = writer.append_partition(DAY, batch)
    assert (result.appended, result.skipped, result.conflicts) == (0, 2, 1)
    assert [i.sk.partition("#")[2] for i in index_items(day_pk(DAY))] == [e.id for e in batch]
    assert AuditHeadModel.get(head_pk(DAY), "head").last_seq == 1
    assert verify.verify_partition(DAY)["ok"] is True


def test_a_malformed_message_fails_alone(aws: Any) -> None:
    records = load("sqs-audit.json")["Records"]
    records.append({**records[0], "messageId": "bad-1", "body": "{not json"})
    records.append({**records[0], "messageId": "bad-2", "body": json.dumps({"id": "x"})})
    assert writer.handle_sqs_batch(records) == {"batchItemFailures": [{"itemIdentifier": "bad-1"},
                                                                      {"itemIdentifier": "bad-2"}]}
    assert len(index_items(day_pk(DAY))) == 2


def test_the_writer_redacts_what_a_producer_forgot_to(aws: Any) -> None:
    record = load("sqs-audit.json")["Records"][0]
    body = json.loads(record["body"])
    body["changes"] = {"password": "hunter2", "note": "prdk_abcdefSECRET"}
    writer.handle_sqs_batch([{**record, "body": json.dumps(body)}])
    stored = json.dumps(objects(aws)) + json.dumps([i.entry for i in index_items(day_pk(DAY))])
    assert "hunter2" not in stored and "SECRET" not in stored


# ----------------------------------------------------------------------------- queries
def test_queries_by_resource_user_and_time_are_oldest_first_with_a_cursor(aws: Any) -> None:
    other = f"prd/{'01jd' + '1' * 22}"
    written = [entry(DAY_MS + 1000 * n, actor=("alice", "bob")[n % 2], resource=(f"prd/{PRD}", other)[n % 3 == 0])
               for n in range(12)]
    writer.write_entries(written[6:])  # later entries written first: order comes from the index
    writer.write_entries(written[:6])
    writer.write_entries([entry(NEXT_DAY_MS + 5, actor="carol", resource="auth")])

    def ids(**kw: Any) -> list[str]:
        return [e["id"] for e in query.search(query.AuditQuery(**kw), now_ms=NEXT_DAY_MS + 60_000)["entries"]]

    on_prd = [e.id for e in written if e.resource == f"prd/{PRD}"]
    assert ids(resource=f"prd/{PRD}") == on_prd
    assert ids(user="bob") == [e.id for e in written if e.actor == "bob"]
    assert ids(resource=f"prd/{PRD}", user="alice") == [e.id for e in written if e.resource == f"prd/{PRD}"
                                                         and e.actor == "alice"]
    assert ids(resource=f"prd/{PRD}", since=DAY_MS + 4000, until=DAY_MS + 8000) == [
        e.id for e in written if e.resource == f"prd/{PRD}" and DAY_MS + 4000 <= e.at <= DAY_MS + 8000]
    everything = ids(since=DAY_MS)
    assert everything == [e.id for e in written] + [ids(user="carol")[0]]  # across two day partitions
    pages, cursor = [], None
    while True:
        page = query.search(query.AuditQuery(since=DAY_MS, limit=5, cursor=cursor), now_ms=NEXT_DAY_MS + 60_000)
        pages.append([e["id"] for e in page["entries"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 3] and [i for p in pages for i in p] == everything
    first = query.search(query.AuditQuery(resource=f"prd/{PRD}"))["entries"][0]
    assert first["time"] == "2026-11-25T00:00:01.000Z" and first["changes"] == {"n": int(first["request_id"][4:])}
    assert set(first) >= {"id", "at", "actor", "action", "resource", "status", "duration_ms", "ip", "user_agent",
                          "path", "request_id", "channel", "changes"}


def test_bad_query_parameters_are_400() -> None:
    assert query.parse_time("2026-11-25T00:00:00Z", "since") == DAY_MS
    assert query.parse_time("2026-11-25", "since") == DAY_MS
    assert query.parse_time(str(DAY_MS), "since") == DAY_MS
    assert query.parse_time("", "since") is None
    with pytest.raises(BadRequest):
        query.parse_time("yesterday", "since")
    with pytest.raises(BadRequest):
        query.search(query.AuditQuery(user="a", since=2, until=1))
    with pytest.raises(BadRequest):
        query.search(query.AuditQuery(user="a", cursor="%%%"))
    with pytest.raises(BadRequest):
        query.search(query.AuditQuery(since=0, until=DAY_MS))  # 20,000 days of partitions


def admin() -> Principal:
    return Principal("erin", "j", "o", 0, ("admins",), is_admin=True)


def person(name: str) -> Principal:
    return Principal(name, "j", "o", 0)


def test_access_admins_see_all_owners_their_prd_others_nothing(aws: Any) -> None:
    for username, role in (("alice", "owner"), ("bob", "editor")):
        MemberModel(PRD, username, role=role, added_by="alice", added_at=1).save()
    query.authorize(admin(), "")
    query.authorize(admin(), "auth")
    query.authorize(person("alice"), f"prd/{PRD}")
    with pytest.raises(Forbidden):
        query.authorize(person("bob"), f"prd/{PRD}")
    with pytest.raises(NotFound):
        query.authorize(person("dave"), f"prd/{PRD}")
    with pytest.raises(NotFound):
        query.authorize(person("alice"), "prd/not-a-ulid")
    for resource in ("", "auth", "user/alice", f"prd/{PRD}/x"):
        with pytest.raises(Forbidden):
            query.authorize(person("alice"), resource)


# ----------------------------------------------------------------------------- the HTTP routes
def call(path: str, params: dict[str, str], principal: dict[str, str]) -> tuple[int, Any]:
    from urllib.parse import urlencode

    from prdtool.audit.routes import router
    from prdtool.http import lambda_handler

    event = load("http-audit-query.json")
    event.update(rawPath=path, rawQueryString=urlencode(params), queryStringParameters=params)
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["authorizer"]["lambda"].update(principal)
    response = lambda_handler(router)(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_the_routes_apply_the_access_rules_and_map_errors(aws: Any, mangum_loop: None) -> None:
    MemberModel(PRD, "alice", role="owner", added_by="alice", added_at=1).save()
    MemberModel(PRD, "bob", role="viewer", added_by="alice", added_at=1).save()
    writer.write_entries([entry(DAY_MS + 1), entry(DAY_MS + 2, resource="auth")])
    admin_ctx = {"username": "erin", "groups": "admins", "is_admin": "true"}
    alice = {"username": "alice", "groups": "", "is_admin": "false"}
    status, body = call("/api/audit", {"resource": f"prd/{PRD}", "since": "2026-11-25T00:00:00Z"}, admin_ctx)
    assert status == 200 and len(body["entries"]) == 1 and body["next"] is None
    status, body = call("/api/audit", {"resource": f"prd/{PRD}"}, alice)
    assert status == 200 and body["entries"][0]["resource"] == f"prd/{PRD}"
    assert call("/api/audit", {"resource": f"prd/{PRD}"}, {**alice, "username": "bob"})[0] == 403
    assert call("/api/audit", {"resource": f"prd/{PRD}"}, {**alice, "username": "dave"})[0] == 404
    status, body = call("/api/audit", {"resource": "auth"}, alice)
    assert (status, body["error"]["code"]) == (403, "audit_admins_only")
    status, body = call("/api/audit", {"user": "alice", "since": "soon"}, admin_ctx)
    assert (status, body["error"]["code"]) == (400, "invalid_time")
    assert call("/api/audit", {"user": "alice", "limit": "0"}, admin_ctx)[0] == 422
    status, body = call("/api/audit/verify", {"date": DAY}, admin_ctx)
    assert status == 200 and body["ok"] is True and body["entries"] == 2
    assert call("/api/audit/verify", {"date": DAY}, alice)[0] == 403
    assert call("/api/audit/verify", {"date": "2026-13-45"}, admin_ctx)[0] == 400
    assert call("/api/audit/verify", {"date": "yesterday"}, admin_ctx)[0] == 422


def test_text_with_unicode_line_separators_stays_one_entry(aws: Any) -> None:
    """JSON with ensure_ascii=False keeps U+2028, U+0085, \\x1c... raw; they are not line breaks."""
    from dataclasses import replace

    odd = replace(entry(DAY_MS + 1), changes={"title": "a\u2028b\u2029c\x85d\x1ce\x1df\x1eg\x0bh\x0ci\rj"})
    writer.write_entries([odd, entry(DAY_MS + 2)])
    (stored,) = objects(aws).values()
    assert [item["id"] for item in stored] == [odd.id, stored[1]["id"]] and len(stored) == 2
    assert stored[0]["changes"] == odd.changes
    assert not problems()


# ----------------------------------------------------------------------------- one bad entry (hardening item 1)
def _record(body: str | dict[str, Any], message_id: str) -> dict[str, Any]:
    template = load("sqs-audit.json")["Records"][0]
    return {**template, "messageId": message_id, "body": body if isinstance(body, str) else json.dumps(body)}


def test_a_lone_surrogate_is_stored_escaped_and_holds_nothing_back(aws: Any) -> None:
    """``{"username": "\\ud800"}`` at the login route: valid JSON, not UTF-8. Its entry and the rest land."""
    records = load("sqs-audit.json")["Records"]
    bad = {**json.loads(records[0]["body"]), "id": "01jd00000000000000000000s1", "actor": "anonymous",
           "action": "POST /api/auth/login", "resource": "auth", "status": 422,
           "changes": {"username": "\ud800", "note\udfff": ["x\ud83d"]}}
    records.append(_record(json.dumps(bad), "surrogate"))  # json.dumps writes the surrogates as \\u escapes
    assert writer.handle_sqs_batch(records) == {"batchItemFailures": []}
    assert len(index_items(day_pk(DAY))) == 3
    (stored,) = [e for e in objects(aws)[chain.object_key(DAY, 1)] if e["id"] == bad["id"]]
    assert stored["changes"] == {"claimed_username": "\\ud800", "note\\udfff": ["x\\ud83d"]}
    assert not problems()
    found = query.search(query.AuditQuery(user="anonymous"))["entries"]
    assert [e["id"] for e in found] == [bad["id"]]
    json.dumps(found, allow_nan=False).encode("utf-8")  # what GET /api/audit sends: strict JSON, UTF-8


def test_poison_messages_fail_alone_and_every_other_entry_is_stored(aws: Any) -> None:
    records = load("sqs-audit.json")["Records"]
    good = json.loads(records[0]["body"])
    # Built by hand: json.dumps itself refuses to nest this deep.
    deep_fields = {k: v for k, v in good.items() if k != "changes"} | {"id": "01jd00000000000000000000d1"}
    deep = json.dumps(deep_fields)[:-1] + ', "changes": {"deep": ' + "[" * 1400 + '"x"' + "]" * 1400 + "}}"
    poison = {
        "not-json": "{not json",
        "not-a-ulid": json.dumps({**good, "id": "\u00ff"}),
        "far-future": json.dumps({**good, "id": "01jd00000000000000000000f1", "at": 10**20}),
        "huge-id": json.dumps({**good, "id": "x" * 5000}),
        "list": json.dumps([good]),
    }
    records += [_record(body, mid) for mid, body in poison.items()]
    records.append(_record(deep, "deep-but-storable"))
    records.append(_record({**good, "id": "01jd00000000000000000000n1", "changes": {"n": float("nan")}}, "nan"))
    failed = {f["itemIdentifier"] for f in writer.handle_sqs_batch(records)["batchItemFailures"]}
    assert failed == set(poison)
    stored = {e["id"]: e for e in objects(aws)[chain.object_key(DAY, 1)]}
    assert set(stored) == {json.loads(r["body"])["id"] for r in load("sqs-audit.json")["Records"]} | {
        "01jd00000000000000000000d1", "01jd00000000000000000000n1"}
    assert stored["01jd00000000000000000000n1"]["changes"] == {"n": "NaN"}
    assert len(index_items(day_pk(DAY))) == 4 and not problems()
    json.dumps(query.search(query.AuditQuery(since=DAY_MS), now_ms=NEXT_DAY_MS)["entries"], allow_nan=False)


def test_an_entry_the_index_refuses_fails_alone_and_the_chain_stays_whole(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: if the index refuses one item (a ValidationException), only its message fails."""
    from prdtool.audit import models

    batch = [entry(DAY_MS + 1), entry(DAY_MS + 2, actor="mallory"), entry(DAY_MS + 3)]
    real_user_pk = models.user_pk
    # DynamoDB refuses partition keys over 2048 bytes: simulate a sanitiser bug for one actor.
    monkeypatch.setattr(writer, "user_pk", lambda actor: real_user_pk(actor * (1000 if actor == "mallory" else 1)))
    monkeypatch.setattr(writer, "check_storable", lambda entry: None)  # let it past the pre-flight
    outcome = writer.write_entries(batch)
    assert outcome.failed_ids == {batch[1].id} and outcome.appended == 3
    assert [i.sk.partition("#")[2] for i in index_items(day_pk(DAY))] == [batch[0].id, batch[2].id]
    assert verify.verify_partition(DAY)["ok"] is True


def test_the_pre_flight_refuses_an_entry_the_index_could_not_hold(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.audit import models

    real_user_pk = models.user_pk
    monkeypatch.setattr(writer, "user_pk", lambda actor: real_user_pk(actor * (1000 if actor == "mallory" else 1)))
    records = load("sqs-audit.json")["Records"]
    records.append(_record({**json.loads(records[0]["body"]), "id": "01jd00000000000000000000m1",
                            "actor": "mallory"}, "oversized-key"))
    assert writer.handle_sqs_batch(records) == {"batchItemFailures": [{"itemIdentifier": "oversized-key"}]}
    assert len(index_items(day_pk(DAY))) == 2 and len(objects(aws)) == 1 and not problems()
