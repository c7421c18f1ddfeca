"""The indexing worker (seed flow 2.2): domain events → ``SearchQueue`` (SQS) → the search engine.

An EventBridge rule sends ``prd.created``, ``prd.updated``, ``prd.version.created``, ``prd.deleted`` and
``prd.member.changed`` to the queue; :func:`reindex` sends ``search.reindex`` messages of the same shape
(a PRD's current document and every version, e.g. after the index was lost or the engine changed).

Each message only says *which* PRD changed: the worker reads the durable state when it runs (the PRD,
its members, its document, a version's Markdown), so a redelivered, late or out-of-order event indexes
what is true now, and applying one twice changes nothing (the engine's writes are replaces).  A batch
is planned PRD by PRD (reads and embeddings: a failure there fails only that PRD's messages, reported
as batch item failures so SQS delivers them again, and after ``maxReceiveCount`` to the DLQ), then
written in one ``engine.batch()`` (one bulk request / one commit).  Embeddings are reused for sections
whose text did not change, so typing in one section embeds one section.  A PRD being typed in is
indexed at most once per ``SEARCH_INDEX_INTERVAL``, and by one worker at a time: the worker that takes
its slot claims it on the PRD's item (``search_claim_until``/``search_claim_by``, lapsing with the
invocation), and a worker with a message of the same slot looks again after it instead of embedding
the same text beside it.

Every indexed PRD records its index status on its item in the PRDs table: ``search_indexed_at``
(when), ``search_indexed_version`` (the newest version indexed) and ``search_error`` (the last failure,
cleared by the next success).  Metrics: ``SearchIndexed``, ``SearchIndexFailed``, ``SearchIndexLag``
(event published → searchable, ms).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from .model import PrdMeta, SectionDoc, section_docs

if TYPE_CHECKING:
    from .engine import SearchEngine

#: The events the rule sends here (and the reindex message).
INDEXED_EVENTS = ("prd.created", "prd.updated", "prd.version.created", "prd.deleted", "prd.member.changed")
REINDEX = "search.reindex"


@dataclass
class _Work:
    """What a batch asks of one PRD."""

    prd_id: str
    message_ids: list[str] = field(default_factory=list)
    current: bool = False  # re-read the PRD and its document
    versions: set[str] = field(default_factory=set)
    all_versions: bool = False
    published_at: list[float] = field(default_factory=list)  # epoch seconds of the events (lag)
    # Only edits of the text (``prd.updated`` with ``changes: {content}``), each with its time: the
    # work may wait for the PRD's next indexing slot (setting ``SEARCH_INDEX_INTERVAL``).
    deferrable: bool = True
    newest_at: float = 0.0  # the newest change's time
    body: dict[str, Any] | None = None  # its message (sent again, delayed, when the work waits)


@dataclass
class _Plan:
    """What will be written for one PRD (everything read and embedded already)."""

    prd_id: str
    delete: bool = False
    meta: PrdMeta | None = None  # the PRD as read for this plan (None: gone)
    current: list[SectionDoc] | None = None
    versions: list[list[SectionDoc]] = field(default_factory=list)
    newest_version: str | None = None
    embedded: int = 0  # sections embedded (the others reused their indexed vector)
    read_at: float = 0.0  # when the plan began reading (epoch seconds): the index holds what was true then
    warning: str | None = None  # indexed, but something is missing (e.g. "embedding_refused")


def _parse(record: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    try:
        body = json.loads(record.get("body") or "")
        kind = str(body.get("detail-type") or "")
        detail = body.get("detail") or {}
        if not isinstance(detail, dict) or not isinstance(detail.get("prd_id"), str) or not detail["prd_id"]:
            return None
    except (ValueError, AttributeError):
        return None
    if kind not in INDEXED_EVENTS and kind != REINDEX:
        return None
    return kind, detail, body


def _published(detail: dict[str, Any], key: str = "at") -> float | None:
    """When the change was published (epoch seconds): ``at``, its event's time; ``first_at``, on a
    message that waited for its PRD's indexing slot, the time of the first change it stands for."""
    try:
        return datetime.fromisoformat(str(detail[key])).timestamp()
    except (KeyError, ValueError):
        return None


def _text_edit(kind: str, detail: dict[str, Any]) -> bool:
    """An edit of the document's text only (the write queue's ``prd.updated``): nothing a reader's
    permissions, a title or a version depends on."""
    changes = detail.get("changes")
    return kind == "prd.updated" and isinstance(changes, dict) and set(changes) == {"content"}


def on_sqs(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One SQS batch (``ReportBatchItemFailures``): returns the messages to deliver again.  With the
    Lambda ``context``, PRDs not planned before the time left falls under :data:`RESERVE_MS` are left
    to their redelivery (a re-index of long histories, a slow embedding service) instead of the whole
    batch timing out."""
    work: dict[str, _Work] = {}
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId", ""))
        parsed = _parse(record)
        if parsed is None:
            logger.error("a malformed search message was dropped", extra={"message_id": message_id})
            continue
        kind, detail, body = parsed
        item = work.setdefault(detail["prd_id"], _Work(detail["prd_id"]))
        item.message_ids.append(message_id)
        at = _published(detail)
        first = _published(detail, "first_at") or at
        if first is not None:
            item.published_at.append(first)
        if at is None or not _text_edit(kind, detail):
            item.deferrable = False
        elif at >= item.newest_at:
            item.newest_at, item.body = at, body
        item.current = True
        if kind == "prd.version.created" and isinstance(detail.get("version"), str):
            item.versions.add(detail["version"])
        if kind == REINDEX:
            item.all_versions = True
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    failures = process(list(work.values()), remaining_ms=remaining)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}


def _code(exc: BaseException) -> str:
    """What a PRD's index status says about a failure: a short code (details go to the logs only —
    the status is shown to every reader of the PRD, and a batch's error may name another PRD)."""
    from ..errors import DependencyFailed
    from .embeddings import EmbeddingError

    if isinstance(exc, EmbeddingError):
        return "embedding_failed"
    if isinstance(exc, DependencyFailed):
        return "index_unavailable"
    if type(exc).__name__ in ("BulkError", "IndexMismatch"):
        return "index_refused"
    return "internal_error"


#: Time kept for writing, checking and answering: planning stops when less is left (ms).
RESERVE_MS = 30_000

#: How far the clocks of the publisher and this worker may disagree (seconds): a change published
#: less than this before the PRD was last read for the index is not taken as covered by that read.
SKEW_SECONDS = 2.0
#: The longest SQS delay (seconds).
MAX_DELAY_SECONDS = 900


def _slot(item: _Work, interval: float) -> tuple[str, float]:
    """Whether text edits are indexed now: ``("covered", 0)`` if the PRD was read for the index
    after the newest of them was published (an earlier message of the same burst indexed it),
    ``("wait", seconds)`` if it was indexed less than ``interval`` ago, else ``("now", 0)``.

    Text is saved about every 5 s while people type, and each save publishes ``prd.updated``;
    indexing every one would embed the sections being typed in every 5 s (CPU locally, Titan calls
    in AWS) for a PRD nobody searches yet.  So a PRD being edited is indexed at most once per
    interval, the first change after a quiet spell at once; membership, title, versions and
    deletion never wait."""
    from ..prds.models import PrdModel

    try:
        prd = PrdModel.get(item.prd_id, consistent_read=True)
    except PrdModel.DoesNotExist:
        return "now", 0.0  # the plan finds it gone and deletes it from the index
    if prd.deleted_at or not prd.search_read_at:
        return "now", 0.0
    read_at = float(prd.search_read_at) / 1000
    if item.newest_at < read_at - SKEW_SECONDS:
        return "covered", 0.0
    wait = read_at + interval - time.time()
    return ("wait", min(wait, MAX_DELAY_SECONDS)) if wait >= 1 else ("now", 0.0)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _wait(item: _Work, seconds: float, body: dict[str, Any] | None = None) -> bool:
    """Send the work back to the queue, delayed by ``seconds``, as one text-edit message standing
    for all of ``item``'s (``first_at``: the first change's time, so the lag metric stays honest).
    False if it could not be sent (the caller keeps the messages instead)."""
    from ..aws import client

    queue = get_settings().search_queue_url
    body = body or item.body
    if not queue or body is None:
        return False
    detail = dict(body.get("detail") or {})
    if item.published_at:
        detail["first_at"] = _iso(min(item.published_at))
    try:
        client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps({**body, "detail": detail}),
                                   DelaySeconds=max(1, min(MAX_DELAY_SECONDS, math.ceil(seconds))))
    except Exception:
        logger.exception("could not queue a PRD's next indexing", extra={"prd_id": item.prd_id})
        return False
    logger.info("search indexing waits for the PRD's next slot", extra={"prd_id": item.prd_id,
                                                                         "seconds": math.ceil(seconds)})
    return True


def _text_edit_body(prd_id: str, at: float) -> dict[str, Any]:
    return {"detail-type": "prd.updated", "source": "prdtool",
            "detail": {"prd_id": prd_id, "changes": {"content": True}, "at": _iso(at)}}


def process(work: Sequence[_Work], *, remaining_ms: Any = None) -> list[str]:
    """Plan every PRD, write the plans in one batch; the message ids to retry."""
    from .service import engine

    search_engine = engine()
    failed: list[str] = []
    claims: dict[str, str] = {}  # PRD id -> this worker's claim on its indexing
    try:
        plans = _plan_all(work, search_engine, failed, claims, remaining_ms)
        rounds = 0
        while plans:
            rounds += 1
            written = _write(plans, search_engine, failed)
            plans = _stale(written, search_engine, failed, last_round=rounds >= MAX_ROUNDS)
    finally:
        for prd_id, token in claims.items():
            _release(prd_id, token)
    return failed


def _plan_all(work: Sequence[_Work], search_engine: SearchEngine, failed: list[str], claims: dict[str, str],
              remaining_ms: Any) -> list[tuple[_Work, _Plan]]:
    """The plans of the PRDs to index now (the others wait for their slot, are covered, or failed);
    a text edit's slot is claimed in ``claims`` before it is planned."""
    plans: list[tuple[_Work, _Plan]] = []
    for position, item in enumerate(work):
        if remaining_ms is not None and remaining_ms() < RESERVE_MS:
            later = work[position:]
            logger.warning("search indexing out of time: the rest comes back", extra={"prds": len(later)})
            failed.extend(m for rest in later for m in rest.message_ids)
            break
        interval = get_settings().search_index_interval
        if item.deferrable and interval > 0:
            try:
                verdict, seconds = _slot(item, interval)
                if verdict == "now":
                    token, seconds = _claim(item.prd_id, _lease_seconds(remaining_ms))
                    if token is None:
                        verdict, seconds = "wait", min(seconds, interval)
                    elif token:
                        claims[item.prd_id] = token
            except Exception:  # DynamoDB failing: the plan's own reads decide
                logger.exception("could not read a PRD's index status", extra={"prd_id": item.prd_id})
                verdict, seconds = "now", 0.0
            if verdict == "covered":
                logger.info("search index already holds these edits", extra={"prd_id": item.prd_id})
                metrics.add_metric(name="SearchIndexCoalesced", unit=MetricUnit.Count, value=len(item.message_ids))
                continue
            if verdict == "wait":
                if _wait(item, seconds):
                    metrics.add_metric(name="SearchIndexCoalesced", unit=MetricUnit.Count,
                                       value=len(item.message_ids))
                    continue
                failed.extend(item.message_ids)  # delivered again after the visibility timeout
                continue
        try:
            plans.append((item, plan(item, search_engine)))
        except Exception as exc:
            logger.exception("could not prepare a PRD for the search index", extra={"prd_id": item.prd_id})
            failed.extend(item.message_ids)
            metrics.add_metric(name="SearchIndexFailed", unit=MetricUnit.Count, value=1)
            _record_status(item.prd_id, error=_code(exc))
    return plans


#: How long a claim holds when the worker's time left is unknown (seconds): the worker's timeout.
CLAIM_SECONDS = 120.0


def _lease_seconds(remaining_ms: Any) -> float:
    """A claim lasts as long as this invocation can (a worker that dies leaves it to lapse)."""
    return remaining_ms() / 1000 + 1 if remaining_ms is not None else CLAIM_SECONDS


def _claim(prd_id: str, lease: float) -> tuple[str | None, float]:
    """Claim the indexing of ``prd_id`` for this worker while it reads, embeds and writes it.

    Two workers take batches at once (the queue's pollers), and each save of a PRD being typed in
    publishes an event, so the messages of one slot can reach both: without a claim both read the
    same text and embed the same sections (seconds of CPU locally, Titan calls in AWS).  Returns
    ``(token, 0)`` when claimed (``""``: nothing to claim, the PRD's item is gone), or ``(None,
    seconds)`` while another worker's claim holds, for that long at most."""
    import uuid

    from pynamodb.exceptions import UpdateError

    from ..prds.models import PrdModel
    from ..storage import is_conditional_failure

    token, now_ms = uuid.uuid4().hex, int(time.time() * 1000)
    try:
        PrdModel(prd_id).update(
            actions=[PrdModel.search_claim_until.set(now_ms + int(lease * 1000)),
                     PrdModel.search_claim_by.set(token)],
            condition=PrdModel.id.exists() & (PrdModel.search_claim_until.does_not_exist()
                                              | (PrdModel.search_claim_until < now_ms)))
        return token, 0.0
    except UpdateError as exc:
        if not is_conditional_failure(exc):
            raise
    try:
        held = PrdModel.get(prd_id, consistent_read=True)
    except PrdModel.DoesNotExist:
        return "", 0.0  # the plan finds it gone and deletes it from the index
    until = int(held.search_claim_until or 0)
    if until < now_ms:
        return "", 0.0  # lapsed since: index without one (a third worker at most repeats the work)
    logger.info("another worker is indexing this PRD now: after it", extra={"prd_id": prd_id})
    return None, max(1.0, (until - now_ms) / 1000)


def _release(prd_id: str, token: str) -> None:
    """Give the claim up (only this worker's own: a lapsed one may have been taken since)."""
    from ..prds.models import PrdModel

    try:
        PrdModel(prd_id).update(actions=[PrdModel.search_claim_until.remove(), PrdModel.search_claim_by.remove()],
                                condition=PrdModel.search_claim_by == token)
    except Exception as exc:  # taken over after it lapsed, deleted, or DynamoDB failing: it lapses
        logger.info("search claim not released", extra={"prd_id": prd_id, "reason": type(exc).__name__})


def _write(plans: list[tuple[_Work, _Plan]], search_engine: SearchEngine,
           failed: list[str]) -> list[tuple[_Work, _Plan]]:
    """All plans in one batch; if the engine refuses it, each PRD in a batch of its own, so one PRD's
    refused document (or a failure of its own) delays only that PRD's messages.  The plans written."""
    try:
        with search_engine.batch():
            for _, p in plans:
                apply(p, search_engine)
        return plans
    except Exception as exc:
        if len(plans) == 1:
            _refused(plans[0], exc, failed)
            return []
        logger.warning("the search index refused a batch: PRD by PRD", extra={"prds": len(plans)})
    written: list[tuple[_Work, _Plan]] = []
    for item, p in plans:
        try:
            with search_engine.batch():
                apply(p, search_engine)
        except Exception as exc:
            _refused((item, p), exc, failed)
            continue
        written.append((item, p))
    return written


def _refused(planned: tuple[_Work, _Plan], exc: BaseException, failed: list[str]) -> None:
    item, p = planned
    logger.error("the search index refused a PRD", extra={"prd_id": p.prd_id, "error": repr(exc)[:500]})
    metrics.add_metric(name="SearchIndexFailed", unit=MetricUnit.Count, value=1)
    failed.extend(item.message_ids)
    _record_status(p.prd_id, error=_code(exc))


#: Rounds of "write, then check the PRD did not change meanwhile" before leaving it to a redelivery.
MAX_ROUNDS = 3


def _stale(plans: list[tuple[_Work, _Plan]], search_engine: SearchEngine, failed: list[str], *,
           last_round: bool) -> list[tuple[_Work, _Plan]]:
    """After a write: the plans whose PRD changed since they read it, planned again.

    Two batches may hold events of one PRD (SQS standard queues, two pollers): one that read the PRD
    earlier can write after one that read it later.  Every change that matters moves the PRD's item
    (``updated_at`` on each save, ``deleted_at``, the members), so a writer that finds it moved since
    its read writes again — whichever writes last wrote what is true now, or will write again."""
    now = time.time()
    again: list[tuple[_Work, _Plan]] = []
    for item, p in plans:
        try:
            current = _meta(p.prd_id)
        except Exception:  # DynamoDB failing after the write: the redelivery checks again
            logger.exception("could not check a PRD after indexing it", extra={"prd_id": p.prd_id})
            failed.extend(item.message_ids)
            continue
        if current == p.meta or (p.delete and current is None):
            metrics.add_metric(name="SearchIndexed", unit=MetricUnit.Count, value=1)
            if item.published_at:
                lag = (now - min(item.published_at)) * 1000
                metrics.add_metric(name="SearchIndexLag", unit=MetricUnit.Milliseconds, value=round(lag, 1))
            if not p.delete:
                _record_status(p.prd_id, error=p.warning, indexed=True, version=p.newest_version, read_at=p.read_at)
            logger.info("search index updated", extra={"prd_id": p.prd_id, "embedded": p.embedded,
                                                       "deleted": p.delete})
            continue
        interval = get_settings().search_index_interval
        if (interval > 0 and current is not None and p.meta is not None and not p.delete
                and replace(current, updated_at=p.meta.updated_at) == p.meta
                and _wait(_Work(p.prd_id), p.read_at + interval - now,
                          _text_edit_body(p.prd_id, (current.updated_at / 1000) or now))):
            # Only the text moved on (someone is typing): what was written is right as of its read,
            # and the index takes the newer text in the PRD's next slot instead of at once.
            metrics.add_metric(name="SearchIndexed", unit=MetricUnit.Count, value=1)
            _record_status(p.prd_id, error=p.warning, indexed=True, version=p.newest_version, read_at=p.read_at)
            continue
        if last_round:  # still moving: a redelivery (or the next event) indexes it
            failed.extend(item.message_ids)
            continue
        logger.info("a PRD changed while it was indexed: again", extra={"prd_id": p.prd_id})
        retry = _Work(item.prd_id, message_ids=item.message_ids, current=True, published_at=item.published_at)
        try:
            again.append((retry, plan(retry, search_engine)))
        except Exception:
            logger.exception("could not prepare a PRD for the search index", extra={"prd_id": item.prd_id})
            failed.extend(item.message_ids)
    return again


def _meta(prd_id: str) -> PrdMeta | None:
    """The PRD's searchable metadata with its members, or None when it is gone (deleted or never was)."""
    from ..prds.models import MemberModel, PrdModel

    try:
        prd = PrdModel.get(prd_id, consistent_read=True)
    except PrdModel.DoesNotExist:
        return None
    if prd.deleted_at:
        return None
    members = frozenset(str(m.username) for m in MemberModel.query(prd_id, consistent_read=True))
    return PrdMeta(prd_id=prd_id, title=str(prd.title), owner=str(prd.owner), members=members,
                   status=str(prd.status or "draft"), updated_at=int(prd.updated_at or 0))


def _passage_key(doc: SectionDoc) -> str:
    return hashlib.sha256(doc.passage().encode("utf-8")).hexdigest()


class _Vectors:
    """One PRD's section vectors while it is planned: those the engine holds (any version) by passage,
    and those embedded for this plan — so an edit embeds the sections it changed and a version
    cut from the current text embeds nothing."""

    def __init__(self, prd_id: str, search_engine: SearchEngine, versions: set[str] | None) -> None:
        from .service import make_embedder

        stored = getattr(search_engine, "stored_vectors", None)
        self.known: dict[str, Any] = dict(stored(prd_id, versions)) if stored is not None else {}
        self.embedder = getattr(search_engine, "embedder", None) or make_embedder(get_settings().search_embedder)
        self.embedded = 0
        self.refused: str | None = None  # why some sections have no meaning vector (found by words only)

    def fill(self, sections: list[SectionDoc]) -> list[SectionDoc]:
        from .embeddings import EmbeddingError, embed_sections

        keys = [_passage_key(s) for s in sections]
        reused = [s.with_embedding(self.known.get(k)) if s.embedding is None else s for s, k in zip(sections, keys,
                                                                                                   strict=True)]
        self.embedded += sum(1 for s in reused if s.embedding is None)
        try:
            done = embed_sections(reused, self.embedder)
        except EmbeddingError as exc:
            if exc.retryable:
                raise  # throttled or down: the redelivery tries again
            # Refused for good (no model access, an input it rejects): the words are still indexed; the
            # status says why meaning-based search does not find these sections.
            import numpy as np

            logger.error("embeddings refused: indexing words only", extra={"error": str(exc)[:300]})
            self.refused = "embedding_refused"
            zero = np.zeros(self.embedder.dim, dtype=np.float32)
            done = [s if s.embedding is not None else s.with_embedding(zero) for s in reused]
        for key, section in zip(keys, done, strict=True):
            self.known[key] = section.embedding
        return done


def plan(item: _Work, search_engine: SearchEngine) -> _Plan:
    """Read what the PRD is now and prepare its sections (embedded) — no writes to the index."""
    read_at = time.time()
    meta = _meta(item.prd_id)
    if meta is None:
        return _Plan(item.prd_id, delete=True, read_at=read_at)
    from ..collab import document, store

    markdown = document.markdown_of(store.read(item.prd_id).doc)
    # Vectors to reuse: the current sections' (an edit), the versions' being indexed (a redelivery); a
    # full re-index reads them all once.
    vectors = _Vectors(item.prd_id, search_engine, None if item.all_versions else {"", *item.versions})
    result = _Plan(item.prd_id, meta=meta, current=vectors.fill(section_docs(meta, markdown)), read_at=read_at)
    from ..versions import records
    from ..versions.service import read_markdown

    wanted = set(item.versions)
    if item.all_versions:
        before: str | None = None
        while True:
            page, before = records.page(item.prd_id, limit=100, before=before)
            wanted.update(v.version for v in page)
            if before is None:
                break
    from ..versions.changes import parse_version

    for version in sorted(wanted, key=parse_version):
        try:
            record = records.get(item.prd_id, version)
        except NotFound:  # an event about a version that was never committed (other errors: retried)
            logger.warning("a version to index does not exist", extra={"prd_id": item.prd_id, "version": version})
            continue
        if record.state != records.COMMITTED or not record.markdown_key:
            continue  # still being cut: its own prd.version.created event comes when it is committed
        sections = section_docs(meta, read_markdown(record.markdown_key), version=version)
        result.versions.append(vectors.fill(sections))
        result.newest_version = version
    result.embedded = vectors.embedded
    result.warning = vectors.refused
    return result


def apply(p: _Plan, search_engine: SearchEngine) -> None:
    if p.delete:
        search_engine.delete_prd(p.prd_id)
        return
    if p.current is not None:
        search_engine.upsert_prd(p.current)
    for sections in p.versions:
        search_engine.add_version(sections)


def _record_status(prd_id: str, *, error: str | None, indexed: bool = False, version: str | None = None,
                   read_at: float | None = None) -> None:
    """The PRD's index status (best effort: the index itself is what matters); never recreates a
    deleted PRD's item.  ``error``: a short code (never an exception's text: readers see it);
    ``read_at``: when the indexed text was read (what :func:`_slot` compares changes with)."""
    from ..prds.models import PrdModel

    actions: list[Any] = [PrdModel.search_indexed_at.set(int(time.time() * 1000))] if indexed else []
    if read_at:
        actions.append(PrdModel.search_read_at.set(int(read_at * 1000)))
    actions.append(PrdModel.search_error.set(error) if error else PrdModel.search_error.remove())
    if version is not None:
        actions.append(PrdModel.search_indexed_version.set(version))
    try:
        PrdModel(prd_id).update(actions=actions, condition=PrdModel.id.exists())
    except Exception as exc:  # deleted meanwhile, or DynamoDB is failing: the index is still right
        logger.info("search status not recorded", extra={"prd_id": prd_id, "reason": type(exc).__name__})


def reindex(prd_ids: Sequence[str] | None = None) -> int:
    """Queue every PRD (or these) for a full re-index: its current document and every version.
    Returns how many were queued.  Used by the local stack when its index is new, and by
    ``python -m prdtool.search.reindex`` after an engine or model change in AWS."""
    from ..aws import client
    from ..prds.models import PrdModel

    queue = get_settings().search_queue_url
    if not queue:
        raise RuntimeError("SEARCH_QUEUE_URL is not set")
    if prd_ids is None:
        prd_ids = [str(p.id) for p in PrdModel.scan(attributes_to_get=["id", "deleted_at"]) if not p.deleted_at]
    sqs = client("sqs")
    sent = 0
    for start in range(0, len(prd_ids), 10):
        chunk = prd_ids[start : start + 10]
        entries = [{"Id": str(n), "MessageBody": json.dumps({"detail-type": REINDEX, "source": "prdtool",
                                                             "detail": {"prd_id": prd_id}})}
                   for n, prd_id in enumerate(chunk)]
        response = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"could not queue {len(response['Failed'])} re-index messages")
        sent += len(chunk)
    return sent
