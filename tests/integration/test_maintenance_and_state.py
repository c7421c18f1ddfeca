"""Background maintenance through the schedule, and local data surviving a restart of the stack."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from scripts.localstack import journal
from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import ROOT, Api, login

pytestmark = pytest.mark.integration


def dynamodb(stack: LocalStack) -> Any:
    return boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_daily_gc_sweeps_stale_connections_and_expired_revocations(stack: LocalStack) -> None:
    ddb = dynamodb(stack)
    tables = stack.manifest["tables"]
    connections, revocations = tables["ConnectionsTable"], tables["RevocationsTable"]
    long_ago, now = int(time.time()) - 2 * 3600, int(time.time())
    for pk, sk in (("prd#01jd0000000000000000000000", "conn#stale="), ("conn#stale=", "meta")):
        ddb.put_item(TableName=connections, Item={
            "pk": {"S": pk}, "sk": {"S": sk}, "connection_id": {"S": "stale="},
            "prd_id": {"S": "01jd0000000000000000000000"}, "username": {"S": "alice"}, "role": {"S": "editor"},
            "connected_at": {"N": str(long_ago - 7200)},
            "expires_at": {"N": str(long_ago)}})
    ddb.put_item(TableName=connections, Item={
        "pk": {"S": "conn#fresh="}, "sk": {"S": "meta"}, "connection_id": {"S": "fresh="},
        "prd_id": {"S": "01jd0000000000000000000000"}, "username": {"S": "bob"}, "role": {"S": "editor"},
        "connected_at": {"N": str(now)}, "expires_at": {"N": str(now + 3600)}})
    ddb.put_item(TableName=revocations, Item={"key": {"S": "jti#old"}, "expires_at": {"N": str(now - 10)},
                                              "revoked_at": {"N": str(now - 4000)}})
    ddb.put_item(TableName=revocations, Item={"key": {"S": "jti#live"}, "expires_at": {"N": str(now + 3600)},
                                              "revoked_at": {"N": str(now)}})

    limits = tables["RateLimitsTable"]
    ddb.put_item(TableName=limits, Item={"key": {"S": "ip#198.51.100.1"}, "expires_at": {"N": str(now - 10)},
                                         **{a: {"N": "1"} for a in ("m_b", "m_c", "h_b", "h_c", "d_b", "d_c")}})
    ddb.put_item(TableName=limits, Item={"key": {"S": "ip#198.51.100.2"}, "expires_at": {"N": str(now + 3600)},
                                         **{a: {"N": "1"} for a in ("m_b", "m_c", "h_b", "h_c", "d_b", "d_c")}})

    schedule = stack.manifest["schedules"][0]["name"]
    result = requests.post(f"{stack.base_url}/_local/schedules/{schedule}/run", timeout=60).json()
    assert result["outcome"] == "ok", result
    assert result["payload"]["stale_connections"] >= 2 and result["payload"]["expired_revocations"] >= 1
    assert result["payload"]["expired_rate_limits"] >= 1
    remaining = {i["key"]["S"] for i in ddb.scan(TableName=limits)["Items"]}
    assert "ip#198.51.100.1" not in remaining and "ip#198.51.100.2" in remaining

    keys = {(i["pk"]["S"], i["sk"]["S"]) for i in ddb.scan(TableName=connections)["Items"]}
    assert ("conn#stale=", "meta") not in keys and ("conn#fresh=", "meta") in keys
    revoked = {i["key"]["S"] for i in ddb.scan(TableName=revocations)["Items"]}
    assert "jti#old" not in revoked and "jti#live" in revoked


@pytest.mark.slow
def test_what_people_create_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalStack(ROOT, port=0, state_dir=state, seed=True) as first:
        api = Api(first.base_url, login(first, "alice")["access_token"])
        created = api.post("/api/prds", {"title": "Survives restarts", "markdown": "# Kept\n\nEvery word."})
        assert created.status_code == 201
        prd_id = created.json()["id"]
        assert api.patch(f"/api/prds/{prd_id}", {"title": "Survives restarts, renamed"}).status_code == 200
    # A clean stop folds everything into the snapshot: the journal it leaves has nothing to replay.
    assert journal.latest_images(state / "journal", after=restore_marker(state)).images == []
    assert (tmp_path / "state.lock").read_text() == ""  # nothing for the next start to reclaim
    with LocalStack(ROOT, port=0, state_dir=state, seed=True) as second:
        api = Api(second.base_url, login(second, "alice")["access_token"])
        prd = api.get(f"/api/prds/{prd_id}").json()
        assert prd["title"] == "Survives restarts, renamed"
        assert prd["markdown"] == "# Kept\n\nEvery word."
        titles = [p["title"] for p in api.get("/api/prds").json()["items"]]
        assert titles.count("Sample PRD: Team Calendar Sync") == 1  # seeding is idempotent


def restore_marker(state: Path) -> int:
    """The journal sequence number the current snapshot covers (see provision.save_state)."""
    snapshot = state / (state / "CURRENT").read_text().strip()
    return int(json.loads((snapshot / "journal.json").read_text())["after"])


def test_connections_answers_the_stacks_own_credentials_only(stack: LocalStack) -> None:
    """The functions' credentials are made up at each start; the well-known dummy does not sign."""
    ours = stack.management_api()
    dummy = boto3.client("apigatewaymanagementapi", endpoint_url=stack.base_url, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing")

    with pytest.raises(ours.exceptions.GoneException):  # signed: past the check, to the (unknown) connection
        ours.get_connection(ConnectionId="nobodyHere0000=")
    with pytest.raises(ClientError) as refused:
        dummy.post_to_connection(ConnectionId="nobodyHere0000=", Data=b"hello")
    unsigned = requests.delete(f"{stack.base_url}/@connections/nobodyHere0000=", timeout=30)

    assert stack.credentials.secret_access_key != "testing"
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert (unsigned.status_code, unsigned.headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")


def test_wait_until_idle_returns_once_the_background_work_of_a_change_is_done(stack: LocalStack) -> None:
    """What a benchmark waits for before measuring (scripts/bench): every polled queue empty — here a
    new PRD's indexing, which must be searchable the moment the wait returns."""
    alice = Api(stack.base_url, login(stack, "alice")["access_token"])
    word = f"idle{int(time.time() * 1000)}"
    created = alice.post("/api/prds", {"title": f"Quiet {word}"})
    assert created.status_code == 201, created.text
    assert stack.wait_until_idle(timeout=60) is True
    hits = alice.get(f"/api/search?q={word}&mode=text").json()["results"]
    assert [h["prdId"] for h in hits] == [created.json()["id"]]
