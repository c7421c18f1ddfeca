"""The audit pipeline on the local stack: record() -> AuditQueue -> AuditWriterFunction (SQS poller,
batching window) -> S3 + index -> GET /api/audit; and /api/audit/verify catching a modified object."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from prdtool.audit import chain
from prdtool.audit.recorder import AuditEntry, record
from prdtool.ids import ulid
from scripts.localstack.stack import LocalStack
from tests.e2e.storage import bound_to
from tests.integration.fixtures import Api, cognito, ensure_user, login

pytestmark = pytest.mark.integration

SECRET = "hunter2-do-not-store"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture(scope="module")
def erin(stack: LocalStack) -> Api:
    """An org admin (the user pool's `admins` group)."""
    ensure_user(stack, "erin")
    pool = next(iter(stack.manifest["user_pools"].values()))
    cognito(stack).admin_add_user_to_group(UserPoolId=pool, Username="erin", GroupName="admins")
    return Api(stack.base_url, login(stack, "erin")["access_token"])


def wait_for(api: Api, path: str, ids: list[str], timeout: float = 40.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(path)
        assert response.status_code == 200, response.text
        entries = [e for e in response.json()["entries"] if e["id"] in ids]
        if len(entries) == len(ids) or time.monotonic() > deadline:
            return entries
        time.sleep(0.5)


def test_a_scripted_session_is_audited_in_order_and_tampering_is_detected(
        stack: LocalStack, erin: Api, alice: Api, bob: Api, dave: Api) -> None:
    created = alice.post("/api/prds", {"title": "Audited PRD"})
    assert created.status_code == 201, created.text
    prd = created.json()["id"]
    assert alice.put(f"/api/prds/{prd}/members/bob", {"role": "editor"}).status_code == 200
    resource = f"prd/{prd}"
    start = int(time.time() * 1000)
    script: list[tuple[str, str, int, dict[str, Any] | None, str]] = [
        ("alice", "POST /api/prds", 201, {"title": "Audited PRD"}, "http"),
        ("alice", "PUT /api/prds/{id}/members/{username}", 200, {"role": "editor"}, "http"),
        ("bob", "websocket.connect", 101, None, "websocket"),
        ("bob", "PATCH /api/prds/{id}", 200, {"title": "Audited PRD v2", "password": SECRET}, "http"),
        ("bob", "websocket.disconnect", 1000, {"frames": 12, "token": JWT}, "websocket"),
        ("alice", "DELETE /api/prds/{id}/members/{username}", 204, None, "http"),
    ]
    sent = [AuditEntry(id=ulid(start + n), at=start + n, actor=actor, action=action, resource=resource,
                       status=status, duration_ms=10 + n, ip="127.0.0.1", user_agent=f"pytest Bearer {JWT}",
                       path=f"/api/prds/{prd}", request_id=f"req-{n}", channel=channel, changes=changes)
            for n, (actor, action, status, changes, channel) in enumerate(script)]
    with bound_to(stack):  # a function's environment: AUDIT_QUEUE_URL of the stack
        for entry in sent:
            record(entry)
    ids = [e.id for e in sent]

    entries = wait_for(erin, f"/api/audit?resource={resource}&since={start}", ids)
    assert [e["id"] for e in entries] == ids, "every action, in order"
    for got, want in zip(entries, sent, strict=True):
        assert {k: got[k] for k in ("actor", "action", "resource", "status", "duration_ms", "ip", "path",
                                    "request_id", "channel", "at")} == {
            "actor": want.actor, "action": want.action, "resource": resource, "status": want.status,
            "duration_ms": want.duration_ms, "ip": "127.0.0.1", "path": want.path, "request_id": want.request_id,
            "channel": want.channel, "at": want.at}
    assert entries[3]["changes"] == {"title": "Audited PRD v2", "password": "[redacted]"}
    assert entries[4]["changes"] == {"frames": 12, "token": "[redacted]"}
    assert entries[0]["user_agent"] == "pytest Bearer [redacted]"
    assert SECRET not in json.dumps(entries) and JWT not in json.dumps(entries)

    # by user and by time window; the owner sees their PRD's entries, an editor and a stranger do not
    by_bob = erin.get(f"/api/audit?user=bob&since={start}&until={start + 3}")
    assert [e["id"] for e in by_bob.json()["entries"] if e["id"] in ids] == [ids[2], ids[3]]
    owner_view = alice.get(f"/api/audit?resource={resource}&since={start}")
    assert owner_view.status_code == 200
    assert [e["id"] for e in owner_view.json()["entries"] if e["id"] in ids] == ids
    assert bob.get(f"/api/audit?resource={resource}").status_code == 403
    assert dave.get(f"/api/audit?resource={resource}").status_code == 404
    assert alice.get("/api/audit").status_code == 403

    # the partition verifies; a modified object is reported, and restoring it makes it whole again
    day = chain.partition_of(start)
    verified = erin.get(f"/api/audit/verify?date={day}").json()
    assert verified["ok"] is True, verified["problems"]
    s3 = boto3.client("s3", endpoint_url=stack.moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = stack.manifest["functions"]["AuditFunction"]["environment"]["AUDIT_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=chain.partition_prefix(day))["Contents"]
    stored = [(o["Key"], s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]
    key, original = next((k, b) for k, b in stored if any(i["id"] == ids[3] for i in chain.decode(b)))
    items = chain.decode(original)
    line = next(n for n, item in enumerate(items, start=1) if item["id"] == ids[3])
    items[line - 1]["actor"] = "mallory"
    s3.put_object(Bucket=bucket, Key=key, Body=chain.encode(items))
    report = erin.get(f"/api/audit/verify?date={day}")
    assert report.status_code == 200
    body = report.json()
    assert body["ok"] is False
    assert {"object": key, "line": line, "problem": "hash mismatch: the entry was modified"} in body["problems"]
    assert alice.get(f"/api/audit/verify?date={day}").status_code == 403
    s3.put_object(Bucket=bucket, Key=key, Body=original)
    assert erin.get(f"/api/audit/verify?date={day}").json()["ok"] is True
