"""Audit recording: redaction (no secret or token survives) and one SQS message per entry (moto, in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from prdtool.audit.recorder import MAX_CHANGES_BYTES, REDACTED, AuditEntry, record, redact, sanitise
from prdtool.aws import reset_clients
from prdtool.settings import reset_settings_cache

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiJhbGljZSIsInRva2VuX3VzZSI6ImFjY2VzcyJ9."
       "c2lnbmF0dXJlLWJ5dGVzLWdvLWhlcmUtYW5kLWhlcmU")
JWE = "eyJjdHkiOiJKV1QiLCJlbmMiOiJBMjU2R0NNIn0.ZW5jcnlwdGVka2V5.aXZpdmFsdWU.Y2lwaGVydGV4dA.dGFnLXZhbHVl"
API_KEY = "prdk_01jd0000000000000000000000_s3cr3tS3cr3tS3cr3t"
SECRETS = ("hunter2-password", "refresh-opaque-123", "cookie-value-xyz", "client-secret-456", JWT, JWE, API_KEY,
           "signed-key-material")


def entry(**overrides: Any) -> AuditEntry:
    values: dict[str, Any] = {"id": "01jd00000000000000000000aa", "at": 1795599000000, "actor": "alice",
                              "action": "POST /api/auth/login", "resource": "auth", "status": 200, "duration_ms": 12,
                              "ip": "203.0.113.7", "user_agent": "curl/8.5.0", "path": "/api/auth/login",
                              "request_id": "req-1"}
    values.update(overrides)
    return AuditEntry(**values)


def test_redact_removes_every_secret_at_any_depth_and_keeps_the_rest() -> None:
    body = {
        "username": "alice",
        "password": "hunter2-password",
        "profile": {"title": "Checkout", "Refresh_Token": "refresh-opaque-123",
                    "items": [{"Cookie": "cookie-value-xyz"}, {"note": f"sent Bearer {JWT} by mistake"}]},
        "headers": {"Authorization": f"Bearer {JWT}", "X-Api-Key": API_KEY, "accept": "json"},
        "client_secret": "client-secret-456",
        "apiKeyId": "signed-key-material",
        "tuple": ("plain", f"refresh {JWE}"),
        "text": f"my key is {API_KEY}, keep it safe",
        JWT: "a token used as a key",
        "count": 3,
        "flag": None,
    }
    original = json.dumps(body, default=list)
    cleaned = redact(body)
    dumped = json.dumps(cleaned)
    for secret in SECRETS:
        assert secret not in dumped, secret
    assert json.dumps(body, default=list) == original, "redact must not change its input"
    assert cleaned["username"] == "alice" and cleaned["count"] == 3 and cleaned["flag"] is None
    assert cleaned["password"] == REDACTED and cleaned["headers"]["Authorization"] == REDACTED
    assert cleaned["profile"]["title"] == "Checkout" and cleaned["headers"]["accept"] == "json"
    assert cleaned["profile"]["items"][1]["note"] == f"sent Bearer {REDACTED} by mistake"
    assert cleaned["text"] == f"my key is {REDACTED}, keep it safe"
    assert cleaned["tuple"][0] == "plain"


def test_plain_dotted_text_is_not_mistaken_for_a_token() -> None:
    text = "see docs.example.com v1.2.0 and a.b.c"
    assert redact({"note": text}) == {"note": text}


def test_sanitise_redacts_string_fields_and_bounds_large_changes() -> None:
    big = {"markdown": "x" * (MAX_CHANGES_BYTES + 10), "title": "T"}
    safe = sanitise(entry(path=f"/api/things?token={JWT}", changes=big))
    assert JWT not in safe.path
    assert safe.changes is not None and safe.changes["truncated"] is True
    assert safe.changes["fields"] == ["markdown", "title"] and len(safe.changes["sha256"]) == 64
    listed = sanitise(entry(changes=[{"password": "hunter2-password"}]))  # type: ignore[arg-type]
    assert listed.changes == {"value": [{"password": REDACTED}]}


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="audit-test")["QueueUrl"]
        monkeypatch.setenv("AUDIT_QUEUE_URL", url)
        reset_settings_cache()
        reset_clients()
        yield sqs, url
    reset_settings_cache()
    reset_clients()


def test_record_sends_one_redacted_message(queue: Any) -> None:
    sqs, url = queue
    record(entry(changes={"password": "hunter2-password", "title": "Checkout", "nested": {"token": JWT}}))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    for secret in SECRETS:
        assert secret not in messages[0]["Body"]
    assert body == {**entry().to_dict(), "changes": {"password": REDACTED, "title": "Checkout",
                                                     "nested": {"token": REDACTED}}}
    assert AuditEntry.from_dict(body).changes == body["changes"]


def _fallback_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.getMessage() == "audit_fallback"]


def test_record_never_raises_and_logs_the_redacted_entry_when_sqs_fails(
        queue: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    _, url = queue
    monkeypatch.setenv("AUDIT_QUEUE_URL", url + "-missing")
    reset_settings_cache()
    record(entry(id="01jd00000000000000000000bb", changes={"password": "hunter2-password", "title": "T"}))
    fallback = _fallback_records(caplog)
    assert len(fallback) == 1
    logged = fallback[0].audit_entry
    assert logged["id"] == "01jd00000000000000000000bb"
    assert logged["changes"] == {"password": REDACTED, "title": "T"}
    everything = json.dumps([vars(r) for r in caplog.records], default=str) + "\n" + capsys.readouterr().out
    for secret in SECRETS:
        assert secret not in everything
    metrics = [json.loads(line) for line in everything.splitlines() if line.startswith('{"_aws"')]
    assert [m["AuditFallback"] for m in metrics] == [[1.0]]


def test_record_without_a_queue_url_falls_back(monkeypatch: pytest.MonkeyPatch, no_network: None,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AUDIT_QUEUE_URL", "")
    reset_settings_cache()
    try:
        record(entry())
    finally:
        reset_settings_cache()
    assert [r.audit_entry["id"] for r in _fallback_records(caplog)] == [entry().id]


def test_entries_from_the_queue_are_validated() -> None:
    good = entry().to_dict()
    assert AuditEntry.from_dict({**good, "future_field": 1}) == entry()
    for broken in ({**good, "id": ""}, {**good, "at": "soon"}, {**good, "status": True},
                   {**good, "changes": ["not", "an", "object"]}):
        with pytest.raises(ValueError):
            AuditEntry.from_dict(broken)


# ----------------------------------------------------------------------------- safe text (hardening item 1)
def _every_string(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_every_string(k), *_every_string(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _every_string(item)]
    return []


def test_text_utf8_cannot_encode_is_escaped_where_the_entry_is_built() -> None:
    """A lone surrogate is valid JSON (``"\\ud800"``) but not UTF-8: it must not reach the store raw."""
    from prdtool.audit import chain

    unsafe = entry(actor="ann\ud800", user_agent="ua\udfff", path="/api/\udc80",
                   changes={"title\ud83d": ["\udc00", {"note": "a\ud800b", "fine": "caf\u00e9 \U0001f600"}]})
    safe = sanitise(unsafe).to_dict()
    for text in _every_string(safe):
        text.encode("utf-8")  # raises UnicodeEncodeError if anything unencodable is left
    assert safe["actor"] == "ann\\ud800" and safe["user_agent"] == "ua\\udfff" and safe["path"] == "/api/\\udc80"
    assert safe["changes"] == {"title\\ud83d": ["\\udc00", {"note": "a\\ud800b", "fine": "caf\u00e9 \U0001f600"}]}
    # The stored form hashes, and survives the queue (JSON) and the writer's second sanitising unchanged.
    assert chain.entry_hash(safe) and sanitise(AuditEntry.from_dict(json.loads(json.dumps(safe)))).to_dict() == safe


def test_canonical_and_the_chain_survive_unencodable_text_too() -> None:
    """Defence in depth: even an entry nobody sanitised is stored, hashes and verifies."""
    from prdtool.audit import chain

    day, at = "2026-11-25", 1795599000000
    raw = [{**entry().to_dict(), "changes": {"x\ud800": "\udfff"}, "at": at}]
    body = chain.encode(chain.link(raw, chain.genesis(day)))
    report = chain.check_objects(day, [(chain.object_key(day, 1), body)])
    assert report.problems == [] and report.entries == 1
    assert chain.decode(body)[0]["changes"] == {"x\ud800": "\udfff"}  # escaped in the bytes, exact when read


def test_non_finite_numbers_become_text_so_the_entry_stays_standard_json() -> None:
    """``json.loads`` (the API's parser) accepts NaN and Infinity; a JSON response refuses them."""
    safe = sanitise(entry(changes={"n": float("nan"), "big": 1e400, "list": [float("-inf"), 1.5]}))
    assert safe.changes == {"n": "NaN", "big": "Infinity", "list": ["-Infinity", 1.5]}
    json.dumps(safe.to_dict(), allow_nan=False)


def test_deeply_nested_changes_are_cut_instead_of_breaking_the_recorder() -> None:
    deep: Any = "bottom"
    for _ in range(1400):  # deeper than Python's recursion limit
        deep = [deep]
    safe = sanitise(entry(changes={"deep": deep}))
    assert safe.changes is not None
    depth, node = 0, safe.changes["deep"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert node == "[too deep]" and depth < 64
    json.dumps(safe.to_dict())


def test_identity_and_context_fields_are_length_capped() -> None:
    safe = sanitise(entry(actor="a" * 10_000, resource="prd/" + "x" * 10_000, action="POST " + "y" * 10_000,
                          user_agent="u" * 10_000, path="/" + "p" * 10_000, ip="1" * 1000, request_id="r" * 1000))
    assert len(safe.actor) <= 256 and len(safe.resource) <= 256 and len(safe.action) <= 256
    assert len(safe.user_agent) <= 512 and len(safe.path) <= 1024 and len(safe.ip) <= 64
    assert len(safe.request_id) <= 128
    assert safe.actor.startswith("a" * 200)


def test_an_unauthenticated_username_is_recorded_as_a_claim_not_an_identity() -> None:
    claimed = sanitise(entry(actor="anonymous", changes={"username": "alice", "password": "hunter2-password"}))
    assert claimed.actor == "anonymous"
    assert claimed.changes == {"claimed_username": "alice", "password": REDACTED}
    odd = sanitise(entry(actor="anonymous", changes={"username": "\ud800" + "m" * 500}))
    assert odd.changes is not None and odd.changes["claimed_username"].startswith("\\ud800m")
    assert len(odd.changes["claimed_username"]) <= 128 and "username" not in odd.changes
    # A verified actor keeps the body as it was sent.
    assert sanitise(entry(actor="alice", changes={"username": "alice"})).changes == {"username": "alice"}


def test_entries_from_the_queue_need_a_ulid_a_sane_time_and_text_fields() -> None:
    good = entry().to_dict()
    for broken in ({**good, "id": "x" * 5000}, {**good, "id": good["id"] + "\n"}, {**good, "at": 10**20},
                   {**good, "at": -1}, {**good, "resource": {"nested": 1}}, {**good, "ip": 7}):
        with pytest.raises(ValueError):
            AuditEntry.from_dict(broken)
    assert AuditEntry.from_dict({**good, "ip": None}).ip == ""
