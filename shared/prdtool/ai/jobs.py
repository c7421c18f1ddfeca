"""AI jobs (AiJobsTable): what was asked, how far the answer got, and what a person decided.

A job's life::

    queued ──► running ──► done ──► approved | rejected
       │          │          (a suggestion pending review)
       └──────────┴──► cancelled      running ──► failed

Every transition is a conditional write on ``status`` (and, while generating, on the worker's
``lease``), so two workers, two approvers or a cancel racing the end of a stream never both win:
the loser gets :class:`StateConflict` and the caller answers 409 or stops.  While a job generates,
the worker checkpoints ``output`` and ``seq`` every fraction of a second; a client that reconnects
reads them here (``GET /api/ai/jobs/{id}``) and then follows the ``ai`` frames from ``seq`` on.

Concurrency per PRD: a job holds one of the PRD's ``ai_concurrent_jobs_per_prd`` *slots* (items
``slot#<prd>#<n>`` in the same table) from its creation until it stops generating; a slot whose
holder died is free again once its lease passes, so a crashed worker never blocks a PRD for good.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..errors import Conflict, NotFound, RateLimited
from ..ids import is_ulid, ulid
from ..storage import is_conditional_failure, register, table_meta

MODES = ("draft", "rewrite", "expand", "summarize", "fill-gaps")
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
APPLYING, APPROVED, REJECTED = "applying", "approved", "rejected"
GENERATING = frozenset({QUEUED, RUNNING})
DECIDED = frozenset({APPROVED, REJECTED})
RETENTION_DAYS = 90  # jobs (and their interactions' index) expire after this (TTL)
SLOT_PREFIX = "slot#"


class JobsByPrd(GlobalSecondaryIndex["JobItem"]):
    class Meta:
        index_name = "by_prd"
        projection = AllProjection()

    prd_id = UnicodeAttribute(hash_key=True)
    job_id = UnicodeAttribute(range_key=True)


@register
class JobItem(Model):
    Meta = table_meta("ai_jobs_table")

    job_id = UnicodeAttribute(hash_key=True)  # a ULID; slots are "slot#<prd>#<n>"
    prd_id = UnicodeAttribute(null=True)  # (slots have none: they stay out of by_prd)
    requester = UnicodeAttribute(null=True)
    mode = UnicodeAttribute(null=True)
    section = UnicodeAttribute(null=True)  # the target section's title (None for fill-gaps)
    instruction = UnicodeAttribute(null=True)  # the person's prompt
    template = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    output = UnicodeAttribute(null=True)  # the answer so far (all of it once done)
    seq = NumberAttribute(null=True)  # the last chunk's sequence number (chunks count from 1)
    truncated = NumberAttribute(null=True)  # 1: the answer was cut at ai_max_output_chars/tokens
    provider = UnicodeAttribute(null=True)
    model = UnicodeAttribute(null=True)
    prompt_version = UnicodeAttribute(null=True)
    input_tokens = NumberAttribute(null=True)
    output_tokens = NumberAttribute(null=True)
    stop_reason = UnicodeAttribute(null=True)
    created_at = NumberAttribute(null=True)  # epoch ms
    started_at = NumberAttribute(null=True)
    first_chunk_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    error_code = UnicodeAttribute(null=True)
    error_message = UnicodeAttribute(null=True)
    # What the model saw of the target (the conflict check on approval): title -> sha256 of the
    # section's body, "" for a section that did not exist.
    base = MapAttribute[str, Any](null=True)
    interaction_key = UnicodeAttribute(null=True)  # S3: prompt, answer, usage (the interaction record)
    decided_by = UnicodeAttribute(null=True)
    decided_at = NumberAttribute(null=True)
    version = UnicodeAttribute(null=True)  # the version the approval made
    slot = UnicodeAttribute(null=True)  # the concurrency slot it holds while generating
    lease = UnicodeAttribute(null=True)  # the worker (or approver) holding the job now
    lease_until = NumberAttribute(null=True)  # epoch ms; for slots too
    applied = UnicodeAttribute(null=True)  # JSON {section title: hash of its body once applied}
    attempts = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL, epoch seconds

    by_prd = JobsByPrd()


@dataclass(frozen=True)
class Job:
    job_id: str
    prd_id: str
    requester: str
    mode: str
    section: str | None
    instruction: str
    template: str
    status: str
    output: str
    seq: int
    created_at: int
    truncated: bool = False
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str | None = None
    started_at: int | None = None
    first_chunk_at: int | None = None
    finished_at: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    base: dict[str, str] | None = None
    interaction_key: str | None = None
    decided_by: str | None = None
    decided_at: int | None = None
    version: str | None = None
    slot: str | None = None
    lease: str | None = None
    lease_until: int | None = None
    applied: dict[str, str] | None = None
    attempts: int = 0

    @classmethod
    def of(cls, item: JobItem) -> Job:
        def num(value: Any) -> int | None:
            return int(value) if value is not None else None

        base = item.base.as_dict() if item.base is not None else None
        return cls(
            job_id=item.job_id, prd_id=item.prd_id or "", requester=item.requester or "", mode=item.mode or "",
            section=item.section, instruction=item.instruction or "", template=item.template or "standard",
            status=item.status or "", output=item.output or "", seq=int(item.seq or 0),
            created_at=int(item.created_at or 0), truncated=bool(item.truncated), provider=item.provider,
            model=item.model, prompt_version=item.prompt_version, input_tokens=num(item.input_tokens),
            output_tokens=num(item.output_tokens), stop_reason=item.stop_reason, started_at=num(item.started_at),
            first_chunk_at=num(item.first_chunk_at), finished_at=num(item.finished_at),
            error_code=item.error_code, error_message=item.error_message,
            base={str(k): str(v) for k, v in base.items()} if base is not None else None,
            interaction_key=item.interaction_key, decided_by=item.decided_by, decided_at=num(item.decided_at),
            version=item.version, slot=item.slot, lease=item.lease, lease_until=num(item.lease_until),
            applied=json.loads(item.applied) if item.applied else None, attempts=int(item.attempts or 0))

    def apply_lease_expired(self, now: int) -> bool:
        """An approval that died mid-way (its lease passed): another may finish it."""
        return self.status == APPLYING and (self.lease_until or 0) < now

    @property
    def pending_review(self) -> bool:
        return self.status == DONE

    def to_json(self, *, with_output: bool = True) -> dict[str, Any]:
        usage = None
        if self.input_tokens is not None or self.output_tokens is not None:
            usage = {"inputTokens": self.input_tokens or 0, "outputTokens": self.output_tokens or 0,
                     "totalTokens": (self.input_tokens or 0) + (self.output_tokens or 0)}
        body: dict[str, Any] = {
            "jobId": self.job_id, "prdId": self.prd_id, "requester": self.requester, "mode": self.mode,
            "section": self.section, "prompt": self.instruction, "status": self.status, "seq": self.seq,
            "truncated": self.truncated, "provider": self.provider, "model": self.model,
            "promptVersion": self.prompt_version, "usage": usage, "stopReason": self.stop_reason,
            "createdAt": self.created_at, "startedAt": self.started_at, "finishedAt": self.finished_at,
            "firstChunkMs": (self.first_chunk_at - self.started_at)
            if self.first_chunk_at and self.started_at else None,
            "latencyMs": (self.finished_at - self.started_at) if self.finished_at and self.started_at else None,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "decidedBy": self.decided_by, "decidedAt": self.decided_at, "version": self.version,
        }
        if with_output:
            body["output"] = self.output
        return body


class StateConflict(Conflict):
    """The job is not in the state the transition needs (someone else got there first)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def get(job_id: str) -> Job:
    if not is_ulid(job_id):
        raise NotFound("AI job not found", code="job_not_found")
    try:
        return Job.of(JobItem.get(job_id, consistent_read=True))
    except DoesNotExist:
        raise NotFound("AI job not found", code="job_not_found") from None


def of_prd(prd_id: str, *, limit: int = 50) -> list[Job]:
    """The PRD's jobs, newest first (the index is eventually consistent: a job made a moment ago
    may be missing; its requester learns of it from the 202, its collaborators from a notice)."""
    items = JobItem.by_prd.query(prd_id, scan_index_forward=False, limit=limit)
    return [Job.of(item) for item in items]


def _slot_key(prd_id: str, number: int) -> str:
    return f"{SLOT_PREFIX}{prd_id}#{number}"


def _take_slot(prd_id: str, job_id: str, *, slots: int, lease_ms: int) -> str:
    """One of the PRD's generation slots for ``job_id``, or 429: all are held by live jobs."""
    now = now_ms()
    for number in range(slots):
        key = _slot_key(prd_id, number)
        try:
            JobItem(job_id=key, lease=job_id, lease_until=now + lease_ms,
                    expires_at=(now + lease_ms) // 1000 + 86_400).save(
                condition=JobItem.job_id.does_not_exist() | (JobItem.lease_until < now))
            return key
        except PutError as exc:
            if not is_conditional_failure(exc):
                raise
    raise _busy(slots)


def _busy(slots: int) -> RateLimited:
    return RateLimited(f"this PRD already has {slots} AI jobs generating; wait for one to finish",
                       code="too_many_ai_jobs", retry_after=SLOT_RETRY_SECONDS)


SLOT_RETRY_SECONDS = 10  # what a refused request is told to wait (a generation takes seconds to minutes)


def check_slot_free(prd_id: str, *, slots: int) -> None:
    """429 if every generation slot of the PRD is held by a live job (a look, not a claim: asking
    first keeps a refused request from spending the person's AI budget)."""
    now = now_ms()
    keys = [_slot_key(prd_id, number) for number in range(slots)]
    held = {item.job_id for item in JobItem.batch_get(keys, consistent_read=True)
            if item.lease_until is not None and item.lease_until >= now}
    if len(held) >= slots:
        raise _busy(slots)


def release_slot(job: Job) -> None:
    """Free the job's slot (if it still holds it: an expired slot may have been taken since)."""
    if not job.slot:
        return
    try:
        JobItem(job_id=job.slot).delete(condition=JobItem.lease == job.job_id)
    except DeleteError as exc:
        if not is_conditional_failure(exc):
            raise


def create(*, prd_id: str, requester: str, mode: str, section: str | None, instruction: str, template: str,
           slots: int, lease_ms: int) -> Job:
    """Record a queued job holding one of the PRD's slots (429 when none is free)."""
    job_id = ulid()
    slot = _take_slot(prd_id, job_id, slots=slots, lease_ms=lease_ms)
    now = now_ms()
    item = JobItem(job_id=job_id, prd_id=prd_id, requester=requester, mode=mode, section=section,
                   instruction=instruction, template=template, status=QUEUED, output="", seq=0, created_at=now,
                   slot=slot, attempts=0, expires_at=now // 1000 + RETENTION_DAYS * 86_400)
    try:
        item.save(condition=JobItem.job_id.does_not_exist())
    except Exception:
        release_slot(Job.of(item))
        raise
    return Job.of(item)


def _update(job_id: str, actions: list[Any], condition: Any, what: str) -> Job:
    try:
        item = JobItem(job_id=job_id)
        item.update(actions=actions, condition=JobItem.job_id.exists() & condition)
        return Job.of(item)
    except UpdateError as exc:
        if is_conditional_failure(exc):
            raise StateConflict(what, code="job_state") from None
        raise


def renew_slot(job: Job, *, lease_ms: int) -> None:
    """Extend the job's hold on its slot (from when it starts generating, not when it was queued)."""
    if not job.slot:
        return
    try:
        JobItem(job_id=job.slot).update(actions=[JobItem.lease_until.set(now_ms() + lease_ms)],
                                        condition=JobItem.lease == job.job_id)
    except UpdateError as exc:
        if not is_conditional_failure(exc):
            raise


def start(job_id: str, *, worker: str, lease_ms: int, provider: str, model: str) -> Job:
    """queued → running, leased to ``worker`` (StateConflict if anything else holds it)."""
    now = now_ms()
    return _update(job_id, [JobItem.status.set(RUNNING), JobItem.lease.set(worker),
                            JobItem.lease_until.set(now + lease_ms), JobItem.started_at.set(now),
                            JobItem.provider.set(provider), JobItem.model.set(model),
                            JobItem.attempts.add(1)],
                   JobItem.status == QUEUED, "the job is not queued")


def record_base(job_id: str, *, worker: str, base: dict[str, str], prompt_version: str) -> None:
    _update(job_id, [JobItem.base.set(base), JobItem.prompt_version.set(prompt_version)],
            (JobItem.status == RUNNING) & (JobItem.lease == worker), "the job is no longer this worker's")


def checkpoint(job_id: str, *, worker: str, output: str, seq: int, lease_ms: int,
               first_chunk_at: int | None = None) -> None:
    """Save the answer so far; StateConflict when the job was cancelled (or taken) meanwhile."""
    actions = [JobItem.output.set(output), JobItem.seq.set(seq), JobItem.lease_until.set(now_ms() + lease_ms)]
    if first_chunk_at is not None:
        actions.append(JobItem.first_chunk_at.set(first_chunk_at))
    _update(job_id, actions, (JobItem.status == RUNNING) & (JobItem.lease == worker),
            "the job was cancelled or taken over")


def finish(job_id: str, *, worker: str, output: str, seq: int, input_tokens: int, output_tokens: int,
           stop_reason: str, truncated: bool, interaction_key: str | None) -> Job:
    """running → done: the answer is complete and pending review."""
    now = now_ms()
    return _update(job_id, [JobItem.status.set(DONE), JobItem.output.set(output), JobItem.seq.set(seq),
                            JobItem.input_tokens.set(input_tokens), JobItem.output_tokens.set(output_tokens),
                            JobItem.stop_reason.set(stop_reason), JobItem.truncated.set(1 if truncated else 0),
                            JobItem.finished_at.set(now), JobItem.interaction_key.set(interaction_key or ""),
                            JobItem.lease.remove(), JobItem.lease_until.remove()],
                   (JobItem.status == RUNNING) & (JobItem.lease == worker), "the job was cancelled or taken over")


def fail(job_id: str, *, code: str, message: str, output: str | None = None, seq: int | None = None,
         worker: str | None = None, from_states: tuple[str, ...] = (QUEUED, RUNNING),
         lease_expired_before: int | None = None) -> Job:
    """→ failed with a message a person can act on (only from a generating state).

    ``lease_expired_before`` fails a job only if its lease really ran out before that instant: the check is
    in the write, so a read that raced the worker's start or checkpoint never fails a live job.
    """
    actions = [JobItem.status.set(FAILED), JobItem.error_code.set(code), JobItem.error_message.set(message),
               JobItem.finished_at.set(now_ms()), JobItem.lease.remove(), JobItem.lease_until.remove()]
    if output is not None:
        actions.append(JobItem.output.set(output))
    if seq is not None:
        actions.append(JobItem.seq.set(seq))
    condition = JobItem.status.is_in(*from_states)
    if worker is not None:
        condition = condition & (JobItem.lease == worker)
    if lease_expired_before is not None:
        condition = condition & (JobItem.lease_until < lease_expired_before)
    return _update(job_id, actions, condition, "the job is no longer generating")


def cancel(job_id: str, *, by: str) -> Job:
    """queued | running → cancelled (the worker notices at its next check and stops the stream)."""
    return _update(job_id, [JobItem.status.set(CANCELLED), JobItem.decided_by.set(by),
                            JobItem.decided_at.set(now_ms()), JobItem.finished_at.set(now_ms())],
                   JobItem.status.is_in(QUEUED, RUNNING), "the job is no longer generating")


def is_cancelled(job_id: str) -> bool:
    item = JobItem.get(job_id, consistent_read=True, attributes_to_get=["status"])
    return item.status == CANCELLED


def reject(job_id: str, *, by: str) -> Job:
    """done → rejected: the suggestion is discarded."""
    return _update(job_id, [JobItem.status.set(REJECTED), JobItem.decided_by.set(by),
                            JobItem.decided_at.set(now_ms())],
                   JobItem.status == DONE, "the suggestion was already decided")


def begin_apply(job_id: str, *, by: str, lease_ms: int, stale_before: int, applied: dict[str, str]) -> Job:
    """done → applying, leased to this approval (or take over one that died before ``stale_before``);
    ``applied`` says what the target sections hash to once the edit is in, so that whoever takes a
    dead approval over can tell whether its edit landed."""
    now = now_ms()
    return _update(job_id, [JobItem.status.set(APPLYING), JobItem.lease.set(by + "#" + ulid()),
                            JobItem.lease_until.set(now + lease_ms), JobItem.decided_by.set(by),
                            JobItem.applied.set(json.dumps(applied, sort_keys=True))],
                   (JobItem.status == DONE) | ((JobItem.status == APPLYING) & (JobItem.lease_until < stale_before)),
                   "the suggestion was already decided")


def abandon_apply(job: Job) -> None:
    """applying → done again (the approval failed before changing anything)."""
    with contextlib.suppress(StateConflict):
        _update(job.job_id, [JobItem.status.set(DONE), JobItem.lease.remove(), JobItem.lease_until.remove(),
                             JobItem.decided_by.remove()],
                (JobItem.status == APPLYING) & (JobItem.lease == (job.lease or "")), "not applying")


def approved(job: Job, *, by: str, version: str | None) -> Job:
    """applying → approved, naming the version it made."""
    actions = [JobItem.status.set(APPROVED), JobItem.decided_by.set(by), JobItem.decided_at.set(now_ms()),
               JobItem.lease.remove(), JobItem.lease_until.remove()]
    if version:
        actions.append(JobItem.version.set(version))
    return _update(job.job_id, actions, (JobItem.status == APPLYING) & (JobItem.lease == (job.lease or "")),
                   "the approval was taken over")
