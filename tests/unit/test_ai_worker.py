"""The AI worker (prdtool.ai.worker) against moto in-process: a job from queued to done, failed or
cancelled, with the frames its requester receives, the checkpoints, the slot, the interaction record
and the event.  Providers are scripted fakes (plus one run of the real offline provider); WebSocket
posts and bus events are recorded instead of sent (the real posting path is in tests/e2e/test_ai.py).

The fixture and helpers here are shared with tests/unit/test_ai_service.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws
from moto.s3.responses import S3Response
from pycrdt import Doc

from prdtool import events
from prdtool.ai import config, jobs, prompting, worker
from prdtool.ai.jobs import JobItem
from prdtool.ai.providers import Brief, Delta, Done, Usage, provider_error
from prdtool.auth.principal import Principal
from prdtool.auth.ratelimit import RateLimitModel, reset_limiter
from prdtool.aws import client, reset_clients
from prdtool.collab import connections, document, relay, store
from prdtool.collab.connections import ConnectionModel
from prdtool.ids import ulid
from prdtool.prds.models import MemberModel, PrdModel
from prdtool.settings import get_settings, reset_settings_cache
from prdtool.storage import rebind_models
from prdtool.versions.records import VersionItem
from scripts.localstack.moto_main import make_dynamodb_writes_atomic, s3_object_patches

BUCKET = "ai-unit-bucket"
QUEUE = "ai-unit-jobs"
REGION = "us-east-1"

START = ("# Checkout\n\n## Overview\n\nOne-tap checkout for returning customers on mobile.\n\n"
         "## Goals\n\nCut abandonment by a fifth.\n\n## Requirements\n\nSaved cards; one tap to pay.\n")
MEMBERS = {"alice": "owner", "bob": "editor", "carol": "editor", "cora": "commenter", "vera": "viewer"}


# ----------------------------------------------------------------------------- the environment
@dataclass
class Recorder:
    """What left the process: frames posted to connections, notices broadcast, bus events."""

    sent: list[tuple[str, list[str]]] = field(default_factory=list)  # (connection id, frames)
    broadcasts: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (connection ids, frames)
    events: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    provider: Any = None  # what config.provider() returns (None: the configured one)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def frames(self, connection_id: str, job_id: str) -> list[dict[str, Any]]:
        """The ``ai`` frames of one job posted to one connection, in order."""
        with self.lock:
            posted = [frame for cid, frames in self.sent if cid == connection_id for frame in frames]
        decoded = [json.loads(frame) for frame in posted]
        return [f for f in decoded if f.get("action") == "ai" and f.get("job") == job_id]

    def notices(self, job_id: str) -> list[str]:
        """The statuses of the ai-suggestion notices broadcast about a job, in order."""
        with self.lock:
            posted = [frame for _, frames in self.broadcasts for frame in frames]
        decoded = [json.loads(frame) for frame in posted if frame.startswith("{")]
        return [n["status"] for n in decoded if n.get("type") == "ai-suggestion" and n.get("job") == job_id]

    def notice_targets(self, job_id: str) -> list[list[str]]:
        with self.lock:
            return [sorted(ids) for ids, frames in self.broadcasts
                    if any(f'"job":"{job_id}"' in frame for frame in frames)]


_loaders: dict[str | None, botocore.loaders.Loader] = {}


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    found = _loaders.get(search_path_string)
    if found is None:
        found = _loaders.setdefault(search_path_string, botocore.loaders.create_loader(search_path_string))
    return found


@pytest.fixture
def ai(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[Recorder]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AI_JOBS_TABLE": "ai-unit-jobs", "DOCS_TABLE": "ai-unit-docs", "PRDS_TABLE": "ai-unit-prds",
        "MEMBERS_TABLE": "ai-unit-members", "VERSIONS_TABLE": "ai-unit-versions",
        "CONNECTIONS_TABLE": "ai-unit-connections", "RATE_LIMITS_TABLE": "ai-unit-rate-limits",
        "DOCUMENTS_BUCKET": BUCKET, "EVENT_BUS_NAME": "ai-unit-bus", "WEBSOCKET_CALLBACK_URL": "",
        "DOC_WRITE_QUEUE_URL": "", "AI_PROVIDER": "bedrock", "AI_JOBS_PER_MINUTE": "100/1000/1000",
        "AI_CONCURRENT_JOBS_PER_PRD": "4", "AI_JOB_SECONDS": "60", "AI_OFFLINE_CHUNK_MS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    # Every botocore session (pynamodb makes one per model and thread, prdtool.aws one per reset) would
    # parse the services' JSON models again: ~1 s per test.  One loader for all of them (read-only).
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)
    # In AWS each DynamoDB write and each conditional S3 put is atomic; moto's in-process ones are not.
    make_dynamodb_writes_atomic()
    for name, method in s3_object_patches(S3Response).items():
        monkeypatch.setattr(S3Response, name, method)
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        reset_limiter()
        for model in (JobItem, store.DocItem, PrdModel, MemberModel, VersionItem, ConnectionModel, RateLimitModel):
            model.create_table(billing_mode="PAY_PER_REQUEST")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("events", region_name=REGION).create_event_bus(Name="ai-unit-bus")
        url = boto3.client("sqs", region_name=REGION).create_queue(QueueName=QUEUE)["QueueUrl"]
        monkeypatch.setenv("AI_QUEUE_URL", url)
        reset_settings_cache()

        recorder = Recorder()

        def send(connection_id: str, frames: Sequence[str]) -> bool:
            with recorder.lock:
                recorder.sent.append((connection_id, list(frames)))
            return True

        def broadcast(targets: Any, frames: Sequence[str]) -> relay.Broadcast:
            ids = [t.connection_id for t in targets]
            with recorder.lock:
                recorder.broadcasts.append((ids, list(frames)))
            return relay.Broadcast(len(ids), 0, 0)

        def publish(detail_type: str, detail: Any, *, actor: str | None = None) -> bool:
            with recorder.lock:
                recorder.events.append((detail_type, dict(detail), actor))
            return True

        configured = config.provider
        monkeypatch.setattr(relay, "send", send)
        monkeypatch.setattr(relay, "broadcast", broadcast)
        monkeypatch.setattr(events, "publish", publish)
        monkeypatch.setattr(config, "provider",
                            lambda: recorder.provider if recorder.provider is not None else configured())
        yield recorder
    reset_settings_cache()
    reset_clients()
    rebind_models()
    reset_limiter()


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change settings mid-test (``ai_max_output_chars="25"`` sets AI_MAX_OUTPUT_CHARS)."""
    for name, value in values.items():
        monkeypatch.setenv(name.upper(), value)
    reset_settings_cache()


def principal(username: str) -> Principal:
    return Principal(username=username, jti="j", origin_jti="j", expires_at=int(time.time()) + 3600)


def make_prd(markdown: str, *, members: dict[str, str] | None = None, template: str = "standard",
             connected: Sequence[str] = ("alice", "bob")) -> str:
    """A PRD (owner alice) with its members, its document and WebSocket connections ``c-<name>``."""
    prd_id = ulid()
    PrdModel(id=prd_id, title="Checkout", owner="alice", template=template, created_at=1, created_by="alice",
             updated_at=1, updated_by="alice").save()
    for username, role in (members or MEMBERS).items():
        MemberModel(prd_id=prd_id, username=username, role=role, added_by="alice", added_at=1).save()
    store.create(prd_id, document.new_document(markdown, {"title": "Checkout"}), origin="alice")
    for username in connected:
        connections.register_connection(
            connections.Connection(f"c-{username}", prd_id, username, (members or MEMBERS).get(username, "editor")),
            token_expires_at=0)
    return prd_id


def markdown(prd_id: str) -> str:
    return document.markdown_of(store.read(prd_id).doc)


def edit(prd_id: str, new_markdown: str, *, origin: str = "carol") -> None:
    """Someone edits the live document into ``new_markdown`` (one Yjs update, as an editor would)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(store.read(prd_id).update_since(None))
    update = document.content_update(doc, new_markdown)
    assert update is not None
    store.append_update(prd_id, update, origin=origin)


def queued(prd_id: str, *, mode: str = "draft", section: str | None = "Risks", requester: str = "alice",
           instruction: str = "Draft the risks of the launch", slots: int = 1) -> jobs.Job:
    """A queued job holding one of ``slots`` slots (429 ``too_many_ai_jobs`` when none is free)."""
    return jobs.create(prd_id=prd_id, requester=requester, mode=mode, section=section, instruction=instruction,
                       template="standard", slots=slots, lease_ms=600_000)


def interaction(prd_id: str, job_id: str) -> dict[str, Any]:
    body = client("s3").get_object(Bucket=BUCKET, Key=f"ai/{prd_id}/{job_id}.json")["Body"].read()
    return dict(json.loads(body))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Scripted:
    """A provider that streams the given deltas, in order, then Done — or raises ``error`` before the
    delta numbered ``error_at`` (len(deltas): after the last).  ``pause`` sleeps before each delta
    after the first; ``cancel()`` is polled before each delta and before Done (as real providers do)
    unless ``poll`` is false; ``on_step(i)`` runs before delta ``i`` (``len(deltas)``: before Done)."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, deltas: Sequence[str], *, usage: tuple[int, int] = (120, 30), stop: str = "end_turn",
                 error: BaseException | None = None, error_at: int = 0, pause: float = 0.0, poll: bool = True,
                 done: bool = True, on_step: Callable[[int], None] | None = None) -> None:
        self.deltas, self.usage, self.stop = list(deltas), usage, stop
        self.error, self.error_at, self.pause, self.poll, self.done = error, error_at, pause, poll, done
        self.on_step = on_step
        self.calls = 0
        self.yielded = 0
        self.cancel_results: list[bool] = []
        self.briefs: list[Brief | None] = []
        self.requests: list[dict[str, Any]] = []
        self.exit = ""  # how the stream ended: "end", "cancel", "error" or "closed" (by the worker)

    def stream(self, *, system: str, prompt: str, max_tokens: int, temperature: float = 0.3,
               cancel: Callable[[], bool] | None = None, brief: Brief | None = None) -> Iterator[Delta | Done]:
        self.calls += 1
        self.briefs.append(brief)
        self.requests.append({"system": system, "prompt": prompt, "max_tokens": max_tokens})
        try:
            for index in range(len(self.deltas) + 1):
                if self.on_step is not None:
                    self.on_step(index)
                if self.error is not None and index == self.error_at:
                    self.exit = "error"
                    raise self.error
                if index and self.pause and index < len(self.deltas):
                    time.sleep(self.pause)
                if self.poll and cancel is not None:
                    stop = cancel()
                    self.cancel_results.append(stop)
                    if stop:
                        self.exit = "cancel"
                        return
                if index == len(self.deltas):
                    break
                self.yielded += 1
                yield Delta(self.deltas[index])
            self.exit = "end"
            if self.done:
                yield Done(Usage(*self.usage, latency_ms=7), self.stop)
        except GeneratorExit:
            self.exit = "closed"
            raise


# ----------------------------------------------------------------------------- a job from start to end
def test_a_queued_job_streams_in_order_to_its_requester_and_ends_done_pending_review(ai: Recorder) -> None:
    prd = make_prd(START)
    deltas = ["- **Vendor lock-in:** the payment ", "provider may change ", "its terms.\n",
              "- **Peak load:** Black Friday traffic doubles — plan capacity early."]
    seen_mid_stream: list[jobs.Job] = []
    job = queued(prd)

    def step(index: int) -> None:
        if index == 1:  # the first chunk is out: a client that reconnects now finds it in the job
            seen_mid_stream.append(jobs.get(job.job_id))

    ai.provider = provider = Scripted(deltas, usage=(812, 41), on_step=step)
    assert worker.handle(job.job_id) == "done"

    frames = ai.frames("c-alice", job.job_id)
    chunks = [f for f in frames if f["event"] == "chunk"]
    assert [f["seq"] for f in chunks] == [1, 2, 3, 4] and [f["text"] for f in chunks] == deltas
    assert len(frames) == 5 and frames[-1] == {
        "action": "ai", "job": job.job_id, "event": "done", "seq": 4,
        "usage": {"inputTokens": 812, "outputTokens": 41, "totalTokens": 853},
        "truncated": False, "stopReason": "end_turn"}
    assert ai.frames("c-bob", job.job_id) == [], "chunks go to the requester's connections only"

    (mid,) = seen_mid_stream
    assert (mid.status, mid.output, mid.seq) == ("running", deltas[0], 1)
    assert mid.first_chunk_at is not None and (mid.lease_until or 0) > jobs.now_ms()

    done = jobs.get(job.job_id)
    assert (done.status, done.output, done.seq, done.truncated) == ("done", "".join(deltas), 4, False)
    assert (done.input_tokens, done.output_tokens, done.stop_reason) == (812, 41, "end_turn")
    assert (done.provider, done.model, done.attempts, done.lease, done.lease_until) == (
        "scripted", "scripted-1", 1, None, None)
    assert done.started_at and done.first_chunk_at and done.finished_at
    assert done.created_at <= done.started_at <= done.first_chunk_at <= done.finished_at
    assert done.prompt_version == prompting.PROMPT_VERSION

    assert provider.calls == 1 and provider.exit == "end"
    request = provider.requests[0]
    assert "Draft the risks of the launch" in request["prompt"] and request["system"]
    assert request["max_tokens"] == get_settings().ai_max_output_tokens

    queued(prd)  # the slot (one per PRD here) was released: a new job takes it

    record = interaction(prd, job.job_id)
    assert done.interaction_key == f"ai/{prd}/{job.job_id}.json"
    assert record["prompt"] == request["prompt"] and record["system"] == request["system"]
    assert record["response"] == "".join(deltas) and record["outcome"] == "done"
    assert record["usage"] == {"inputTokens": 812, "outputTokens": 41, "providerLatencyMs": 7}
    assert record["promptVersion"] == prompting.PROMPT_VERSION and record["chunks"] == 4
    assert (record["requester"], record["mode"], record["section"]) == ("alice", "draft", "Risks")

    assert ai.notices(job.job_id) == ["pending"]
    assert ai.notice_targets(job.job_id) == [["c-alice", "c-bob"]], "everyone on the PRD hears of it"
    completed = [(d["job_id"], d["prd_id"], d["input_tokens"], d["output_tokens"], actor)
                 for kind, d, actor in ai.events if kind == "ai.job.completed"]
    assert completed == [(job.job_id, prd, 812, 41, "alice")]


def test_the_stored_suggestion_drops_a_repeated_heading_and_a_wrapping_fence(ai: Recorder) -> None:
    prd = make_prd(START)
    deltas = ["```markdown\n", "## Risks\n\n", "- Vendor lock-in.\n", "```\n"]
    ai.provider = Scripted(deltas)
    job = queued(prd)
    assert worker.handle(job.job_id) == "done"
    assert jobs.get(job.job_id).output == "- Vendor lock-in."
    assert [f["text"] for f in ai.frames("c-alice", job.job_id) if f["event"] == "chunk"] == deltas
    assert interaction(prd, job.job_id)["response"] == "".join(deltas)  # the record keeps the raw answer


def test_the_offline_provider_end_to_end(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.ai import offline

    configure(monkeypatch, ai_provider="offline", ai_offline_chunk_ms="0")
    prd = make_prd(START + "\n## Timeline\n\nThe launch depends on the legacy payments API, which may be retired.\n")
    job = queued(prd)
    assert worker.handle(job.job_id) == "done"
    done = jobs.get(job.job_id)
    frames = ai.frames("c-alice", job.job_id)
    chunks = [f for f in frames if f["event"] == "chunk"]
    joined = "".join(f["text"] for f in chunks)
    assert len(chunks) > 3 and [f["seq"] for f in chunks] == list(range(1, len(chunks) + 1))
    assert done.status == "done" and done.output == prompting.clean(joined, "Risks")
    assert done.output and joined.strip() == done.output.strip()
    assert done.output.startswith(offline.NOTE) and "Draft the risks of the launch" in done.output
    assert (done.provider, done.model) == (offline.NAME, offline.MODEL)
    assert done.input_tokens and done.output_tokens == offline.estimate_tokens(joined)
    assert frames[-1]["event"] == "done" and frames[-1]["usage"]["outputTokens"] == done.output_tokens
    assert frames[-1]["usage"]["inputTokens"] == done.input_tokens
    assert ai.notices(job.job_id) == ["pending"]


# ----------------------------------------------------------------------------- deliveries
def test_a_redelivered_message_is_skipped_and_the_model_is_asked_once(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One risk."])
    job = queued(prd)
    assert worker.handle(job.job_id) == "done"
    posted = len(ai.sent)
    assert worker.handle(job.job_id) == "skipped"
    assert provider.calls == 1 and len(ai.sent) == posted
    assert jobs.get(job.job_id).attempts == 1


def test_two_deliveries_at_once_generate_once(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One ", "risk."], pause=0.05)
    job = queued(prd)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(worker.handle(job.job_id))
        except worker.Retry:
            outcomes.append("retry")

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes)[0] == "done" and sorted(outcomes)[1] in ("retry", "skipped")
    assert provider.calls == 1
    assert [f["seq"] for f in ai.frames("c-alice", job.job_id)] == [1, 2, 2]


def test_a_missing_or_cancelled_job_is_not_generated(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One risk."])
    assert worker.handle(ulid()) == "missing"
    assert worker.handle("not-a-job") == "missing"
    job = queued(prd)
    jobs.cancel(job.job_id, by="alice")
    assert worker.handle(job.job_id) == "skipped"
    assert provider.calls == 0 and jobs.get(job.job_id).status == "cancelled"


def test_a_job_under_another_workers_live_lease_is_retried_later(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One risk."])
    job = queued(prd)
    jobs.start(job.job_id, worker="other#1", lease_ms=60_000, provider="scripted", model="scripted-1")
    with pytest.raises(worker.Retry):
        worker.handle(job.job_id)
    after = jobs.get(job.job_id)
    assert (after.status, after.lease) == ("running", "other#1") and provider.calls == 0
    assert ai.frames("c-alice", job.job_id) == []


def test_a_job_whose_worker_died_is_failed_as_interrupted_and_its_slot_freed(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One risk."])
    job = queued(prd)
    jobs.start(job.job_id, worker="dead#1", lease_ms=-1000, provider="scripted", model="scripted-1")
    jobs.checkpoint(job.job_id, worker="dead#1", output="- Vendor lock-", seq=2, lease_ms=-1000)
    with pytest.raises(jobs.RateLimited):
        queued(prd)  # the dead worker's job still holds the PRD's only slot
    assert worker.handle(job.job_id) == "interrupted"
    failed = jobs.get(job.job_id)
    assert (failed.status, failed.error_code, failed.output, failed.seq) == ("failed", "interrupted",
                                                                              "- Vendor lock-", 2)
    assert failed.lease is None and failed.finished_at and provider.calls == 0
    assert ai.frames("c-alice", job.job_id) == [
        {"action": "ai", "job": job.job_id, "event": "error", "seq": 2, "code": "interrupted",
         "message": failed.error_message}]
    assert ai.notices(job.job_id) == ["failed"]
    queued(prd)  # the slot is free again
    assert worker.handle(job.job_id) == "skipped"  # a later redelivery changes nothing


def test_a_read_that_raced_the_start_never_fails_the_live_job(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A redelivery whose read shows the job running without a live lease (read before the start's
    write landed whole) leaves it alone: the lease check is in the failing write itself."""
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- One risk."])
    job = queued(prd)
    jobs.start(job.job_id, worker="live#1", lease_ms=60_000, provider="scripted", model="scripted-1")
    stale = dataclasses.replace(jobs.get(job.job_id), lease_until=None)
    with monkeypatch.context() as patch:
        patch.setattr(jobs, "get", lambda job_id: stale)
        assert worker.handle(job.job_id) == "skipped"
    after = jobs.get(job.job_id)
    assert (after.status, after.lease, after.error_code) == ("running", "live#1", None)
    assert provider.calls == 0 and ai.frames("c-alice", job.job_id) == []


def test_on_sqs_reports_only_the_messages_to_retry(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    prd = make_prd(START)
    ai.provider = Scripted(["- One risk."])
    busy = queued(prd, slots=3)
    jobs.start(busy.job_id, worker="other#1", lease_ms=60_000, provider="scripted", model="scripted-1")
    fresh = queued(prd, slots=3)
    result = worker.on_sqs({"Records": [
        {"messageId": "m-busy", "body": json.dumps({"job_id": busy.job_id})},
        {"messageId": "m-junk", "body": "{not json"},
        {"messageId": "m-list", "body": "[1, 2]"},
        {"messageId": "m-none", "body": "{}"},
        {"messageId": "m-fresh", "body": json.dumps({"job_id": fresh.job_id})},
    ]})
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-busy"}]}
    assert jobs.get(fresh.job_id).status == "done"

    # An unexpected failure (here: a misconfigured provider) is reported, so SQS delivers it again.
    ai.provider = None
    configure(monkeypatch, ai_provider="no-such-provider")
    later = queued(prd, slots=3)
    result = worker.on_sqs({"Records": [{"messageId": "m-later", "body": json.dumps({"job_id": later.job_id})}]})
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-later"}]}
    assert jobs.get(later.job_id).status == "queued"
    assert worker.on_sqs({}) == {"batchItemFailures": []}


# ----------------------------------------------------------------------------- cancelling
def test_a_cancel_mid_stream_stops_the_model_and_the_job_stays_cancelled(ai: Recorder) -> None:
    from prdtool.ai import service

    prd = make_prd(START)
    first_out, go_on = threading.Event(), threading.Event()

    def step(index: int) -> None:
        if index == 1:
            first_out.set()
            assert go_on.wait(5)

    ai.provider = provider = Scripted(["word "] * 300, pause=0.01, on_step=step)
    job = queued(prd)
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(worker.handle(job.job_id)))
    runner.start()
    assert first_out.wait(5)
    service.cancel(principal("alice"), job.job_id)
    cancelled_at = time.monotonic()
    go_on.set()
    runner.join(10)
    assert not runner.is_alive() and outcome == ["cancelled"]
    assert time.monotonic() - cancelled_at < 3.0, "the worker notices a cancel within its check cadence (0.5 s)"
    assert provider.exit in ("cancel", "closed") and provider.yielded < 300
    assert True in provider.cancel_results or provider.exit == "closed"

    final = jobs.get(job.job_id)
    assert (final.status, final.decided_by) == ("cancelled", "alice")
    frames = ai.frames("c-alice", job.job_id)
    assert frames[-1]["event"] == "error" and frames[-1]["code"] == "cancelled"
    assert not any(f["event"] == "done" for f in frames)
    assert ai.notices(job.job_id) == ["cancelled"]
    assert interaction(prd, job.job_id)["outcome"] == "cancelled"
    assert not [e for e in ai.events if e[0] == "ai.job.completed"]
    queued(prd)  # the slot is free


def test_a_cancel_after_the_last_chunk_wins_over_finishing(ai: Recorder) -> None:
    prd = make_prd(START)
    job = queued(prd)

    def step(index: int) -> None:
        if index == 2:  # both chunks are out, Done is next: the requester cancels now
            jobs.cancel(job.job_id, by="alice")

    ai.provider = Scripted(["- One ", "risk."], poll=False, on_step=step)
    assert worker.handle(job.job_id) == "cancelled"
    final = jobs.get(job.job_id)
    assert final.status == "cancelled" and final.input_tokens is None
    frames = ai.frames("c-alice", job.job_id)
    assert [f["event"] for f in frames] == ["chunk", "chunk", "error"] and frames[-1]["code"] == "cancelled"
    assert ai.notices(job.job_id) == []
    assert not [e for e in ai.events if e[0] == "ai.job.completed"]


# ----------------------------------------------------------------------------- limits and failures
def test_an_answer_beyond_the_output_cap_is_cut_and_says_so(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_max_output_chars="25")
    prd = make_prd(START)
    ai.provider = provider = Scripted(["abcdefghij"] * 6)
    job = queued(prd)
    assert worker.handle(job.job_id) == "done"
    done = jobs.get(job.job_id)
    assert done.status == "done" and done.truncated and done.stop_reason == "output_limit"
    assert done.output == "abcdefghij" * 2 + "abcde" and len(done.output) == 25
    frames = ai.frames("c-alice", job.job_id)
    assert [f["text"] for f in frames if f["event"] == "chunk"] == ["abcdefghij", "abcdefghij", "abcde"]
    assert frames[-1]["event"] == "done" and frames[-1]["truncated"] is True and frames[-1]["seq"] == 3
    assert provider.exit == "closed" and provider.yielded == 3, "the stream is closed at the cap"


def test_an_answer_of_exactly_the_cap_is_not_truncated(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_max_output_chars="20")
    prd = make_prd(START)
    ai.provider = Scripted(["abcdefghij"] * 2, usage=(50, 6))
    job = queued(prd)
    assert worker.handle(job.job_id) == "done"
    done = jobs.get(job.job_id)
    assert done.output == "abcdefghij" * 2
    assert (done.truncated, done.stop_reason, done.output_tokens) == (False, "end_turn", 6)


def test_a_provider_error_before_any_chunk_fails_the_job_with_its_safe_message(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = Scripted(["- never sent"], error=provider_error("throttled"), error_at=0)
    job = queued(prd)
    assert worker.handle(job.job_id) == "failed"
    failed = jobs.get(job.job_id)
    safe = provider_error("throttled").message
    assert (failed.status, failed.error_code, failed.error_message, failed.output) == ("failed", "throttled", safe, "")
    assert ai.frames("c-alice", job.job_id) == [
        {"action": "ai", "job": job.job_id, "event": "error", "seq": 0, "code": "throttled", "message": safe}]
    assert ai.notices(job.job_id) == ["failed"]
    assert interaction(prd, job.job_id)["error"] == "throttled"
    queued(prd)  # the slot is free


def test_a_provider_error_after_chunks_keeps_the_partial_answer(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = Scripted(["- Vendor ", "lock-in", " never sent"],
                           error=provider_error("unavailable", partial=True), error_at=2)
    job = queued(prd)
    assert worker.handle(job.job_id) == "failed"
    failed = jobs.get(job.job_id)
    assert (failed.status, failed.error_code, failed.output, failed.seq) == ("failed", "unavailable",
                                                                              "- Vendor lock-in", 2)
    assert failed.error_message is not None and "partial answer" in failed.error_message
    assert failed.error_message.startswith(provider_error("unavailable").message)
    frames = ai.frames("c-alice", job.job_id)
    assert [f["event"] for f in frames] == ["chunk", "chunk", "error"]
    assert frames[-1]["message"] == failed.error_message and frames[-1]["seq"] == 2


def test_an_unexpected_provider_exception_fails_the_job_without_leaking_it(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = Scripted(["- x"], error=RuntimeError("secret internals"), error_at=1)
    job = queued(prd)
    assert worker.handle(job.job_id) == "failed"
    failed = jobs.get(job.job_id)
    assert failed.error_code == "internal_error" and "secret" not in (failed.error_message or "")
    assert failed.output == "- x"


def test_a_stream_that_ends_without_done_is_failed_as_incomplete(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = Scripted(["- Vendor ", "lock-in"], done=False)
    job = queued(prd)
    assert worker.handle(job.job_id) == "failed"
    failed = jobs.get(job.job_id)
    assert (failed.error_code, failed.output) == ("incomplete", "- Vendor lock-in")


def test_a_generation_that_runs_too_long_is_stopped_as_a_timeout(ai: Recorder,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_job_seconds="1")
    prd = make_prd(START)
    ai.provider = provider = Scripted(["word "] * 200, pause=0.05)
    job = queued(prd)
    began = time.monotonic()
    assert worker.handle(job.job_id) == "failed"
    assert time.monotonic() - began < 3
    failed = jobs.get(job.job_id)
    assert failed.status == "failed" and failed.error_code == "timeout"
    assert provider.exit == "cancel" and 5 < provider.yielded < 200
    assert failed.output == "word " * provider.yielded and failed.seq == provider.yielded
    frames = ai.frames("c-alice", job.job_id)
    assert frames[-1]["event"] == "error" and frames[-1]["code"] == "timeout"
    queued(prd)  # the slot is free


# ----------------------------------------------------------------------------- what the model sees
def sections_doc(**bodies: str) -> str:
    """A PRD with every standard section, each long enough not to be a gap, unless given a body
    here (keyword: the schema key with '_' for '-'; an empty body leaves the section out)."""
    titles = {"overview": "Overview", "problem": "Problem", "users": "Target users", "goals": "Goals",
              "non_goals": "Non-goals", "user_stories": "User stories", "requirements": "Requirements",
              "success_metrics": "Success metrics", "risks": "Risks and mitigations", "timeline": "Timeline",
              "open_questions": "Open questions"}
    filler = " ".join(f"Returning shoppers on mobile abandon carts at step {n} of the flow." for n in range(5))
    parts = ["# Checkout\n"]
    for key, title in titles.items():
        body = bodies.get(key, filler)
        if body:
            parts.append(f"## {title}\n\n{body}\n")
    return "\n".join(parts)


def test_a_fill_gaps_brief_names_every_gap_and_the_base_records_what_each_was(ai: Recorder) -> None:
    prd = make_prd(sections_doc(problem="TBD.", risks="", timeline=""))
    ai.provider = provider = Scripted(["## Problem\n\nShoppers give up.\n"])
    job = queued(prd, mode="fill-gaps", section=None, instruction="Fill the gaps")
    assert worker.handle(job.job_id) == "done"
    (brief,) = provider.briefs
    assert brief is not None and brief.mode == "fill-gaps" and brief.section is None
    assert brief.gaps == ("Problem", "Risks and mitigations", "Timeline")
    for title in brief.gaps:
        assert title in brief.guidance and title in provider.requests[0]["prompt"]
    assert jobs.get(job.job_id).base == {"Problem": sha("TBD."), "Risks and mitigations": "", "Timeline": ""}


def test_a_section_jobs_base_is_the_hash_of_its_target_or_empty_when_missing(ai: Recorder) -> None:
    prd = make_prd(START)
    ai.provider = provider = Scripted(["- Cut abandonment by 20 %."])
    rewrite = queued(prd, mode="rewrite", section="Goals", instruction="Make it measurable", slots=2)
    draft = queued(prd, mode="draft", section="Risks", slots=2)
    assert worker.handle(rewrite.job_id) == worker.handle(draft.job_id) == "done"
    assert jobs.get(rewrite.job_id).base == {"Goals": sha("Cut abandonment by a fifth.")}
    assert jobs.get(draft.job_id).base == {"Risks": ""}
    first, second = provider.briefs
    assert first is not None and (first.mode, first.section, first.current) == (
        "rewrite", "Goals", "\nCut abandonment by a fifth.\n\n")
    assert first.document == START and first.instruction == "Make it measurable"
    assert second is not None and (second.section, second.current) == ("Risks", "")
