"""The AI worker (``AiWorkerFunction``, an SQS consumer): one job from prompt to pending suggestion.

For a queued job it builds the context — the PRD's current content, the target section and its
neighbours, the template's guidance, the person's prompt — bounded to the model's context window
(:mod:`.prompting`), streams the completion from the configured provider and posts each chunk, in
order, to the requester's connections on the PRD.  The answer accumulates in the job (checkpointed
every ``CHECKPOINT_SECONDS``), so a client that loses its connection misses nothing: it reads the
job and follows the frames from there.  The job ends ``done`` (a suggestion pending review, with
usage), ``failed`` (a message a person can act on) or ``cancelled`` (noticed at the next checkpoint
or cancel check: the provider's stream is closed, which stops the model).

The interaction — prompts as sent, answer, model, usage, latency — is kept in S3
(``ai/<prdId>/<jobId>.json``); the job item holds the summary.

Redeliveries: a job that is not queued is left alone; a job still ``running`` under a live lease
belongs to another worker (the message is retried later, so the job is failed if that worker
died); one whose lease expired lost its worker mid-way and is failed as interrupted.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ..errors import NotFound
from ..observability import MetricUnit, logger, metrics
from ..settings import get_settings
from . import jobs, notify

CHECKPOINT_SECONDS = 0.5
CANCEL_CHECK_SECONDS = 0.5


class Retry(Exception):
    """The message must come back later (another worker holds the job under a live lease)."""

    expected = True  # logged as such, not as an error (prdtool.sqsbatch)


def handle(job_id: str) -> str:
    """Work on one job; returns what happened (for logs and tests)."""
    try:
        job = jobs.get(job_id)
    except NotFound:
        logger.warning("an AI job on the queue does not exist", extra={"job_id": job_id})
        return "missing"
    if job.status == jobs.RUNNING:
        now = jobs.now_ms()
        if (job.lease_until or 0) > now:
            raise Retry(job_id)
        try:
            failed = jobs.fail(job_id, code="interrupted", worker=job.lease, from_states=(jobs.RUNNING,),
                               lease_expired_before=now + 1,
                               message="the AI job was interrupted before it finished; please ask again")
        except jobs.StateConflict:
            return "skipped"  # finished meanwhile, or the read raced the start: the lease is alive
        jobs.release_slot(failed)
        notify.Requester(job.prd_id, job.requester).send(
            [notify.error_frame(job_id, failed.seq, "interrupted", failed.error_message or "")], now=time.monotonic())
        notify.suggestion(failed, "failed")
        return "interrupted"
    if job.status != jobs.QUEUED:
        return "skipped"
    return _generate(job)


def _worker_id() -> str:
    from ..ids import ulid

    return f"{os.environ.get('AWS_LAMBDA_LOG_STREAM_NAME', 'local')}#{ulid()}"


def _generate(job: jobs.Job) -> str:
    from . import config

    settings = get_settings()
    provider = config.provider()
    worker = _worker_id()
    lease_ms = (settings.ai_job_seconds + 60) * 1000
    try:
        job = jobs.start(job.job_id, worker=worker, lease_ms=lease_ms, provider=provider.name, model=provider.model)
    except jobs.StateConflict:
        return "skipped"  # cancelled meanwhile, or another delivery started it
    jobs.renew_slot(job, lease_ms=lease_ms)
    requester = notify.Requester(job.prd_id, job.requester)
    run = _Run(job, worker, lease_ms, requester)
    try:
        return run.go(provider)
    finally:
        try:
            jobs.release_slot(job)
        except Exception:
            logger.exception("could not release an AI slot", extra={"job_id": job.job_id})


class _Run:
    def __init__(self, job: jobs.Job, worker: str, lease_ms: int, requester: notify.Requester) -> None:
        self.job, self.worker, self.lease_ms, self.requester = job, worker, lease_ms, requester
        self.parts: list[str] = []
        self.size = 0
        self.seq = 0
        self.truncated = False
        self.cancelled = False
        self.timed_out = False
        self.first_chunk_at: int | None = None
        self.first_saved = False
        self.started = time.monotonic()
        self.last_check = self.started
        self.deadline = self.started + get_settings().ai_job_seconds
        self.system = self.prompt = ""
        self.prompt_version = ""

    # -- cancellation ------------------------------------------------------------------------
    def should_stop(self) -> bool:
        now = time.monotonic()
        if now >= self.deadline:
            self.timed_out = True
        elif not self.cancelled and now - self.last_check >= CANCEL_CHECK_SECONDS:
            self.last_check = now
            try:
                self.cancelled = jobs.is_cancelled(self.job.job_id)
            except Exception:
                logger.warning("could not check for a cancel", extra={"job_id": self.job.job_id})
        return self.cancelled or self.timed_out or self.truncated

    # -- the run -------------------------------------------------------------------------------
    def go(self, provider: Any) -> str:
        from .providers import Delta, Done, ProviderError

        settings = get_settings()
        job = self.job
        try:
            brief, base = _brief(job)
            from . import prompting

            built = prompting.build(brief, context_tokens=settings.ai_context_tokens,
                                    max_output_tokens=settings.ai_max_output_tokens)
            self.system, self.prompt, self.prompt_version = built.system, built.prompt, built.version
            jobs.record_base(job.job_id, worker=self.worker, base=base, prompt_version=built.version)
            done: Done | None = None
            stream = provider.stream(system=built.system, prompt=built.prompt,
                                     max_tokens=settings.ai_max_output_tokens, cancel=self.should_stop, brief=brief)
            try:
                last_save = time.monotonic()
                for event in stream:
                    if isinstance(event, Done):
                        done = event
                        continue
                    if not isinstance(event, Delta) or not event.text:
                        continue
                    self._chunk(event.text, settings.ai_max_output_chars)
                    now = time.monotonic()
                    if now - last_save >= CHECKPOINT_SECONDS or not self.first_saved:
                        last_save = self.last_check = now
                        self._checkpoint()  # StateConflict: cancelled meanwhile
                    if self.truncated:
                        break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except jobs.StateConflict:
            self.cancelled = True
        except ProviderError as err:
            metrics.add_metric(name="AiJobsFailed", unit=MetricUnit.Count, value=1)
            return self._fail(err.code, err.message + (" (the partial answer is kept in the job)"
                                                       if err.partial else ""))
        except Exception:
            logger.exception("an AI job failed", extra={"job_id": job.job_id})
            metrics.add_metric(name="AiJobsFailed", unit=MetricUnit.Count, value=1)
            return self._fail("internal_error", "the AI job failed on our side; it has been logged. Please try again")
        if self.cancelled or (done is None and not self.truncated and not self.timed_out
                              and _cancelled_now(job.job_id)):
            self._save_interaction(None, "cancelled")
            self.requester.send([notify.error_frame(job.job_id, self.seq, "cancelled",
                                                    "the job was cancelled")], now=time.monotonic())
            return "cancelled"
        if self.timed_out:
            return self._fail("timeout", f"the AI took longer than {get_settings().ai_job_seconds} s; the partial "
                                         "answer is kept in the job. Please try again")
        if done is None and not self.truncated:
            return self._fail("incomplete", "the AI answer ended without finishing; please try again")
        return self._finish(done)

    def _chunk(self, text: str, cap: int) -> None:
        if self.size + len(text) > cap:
            text = text[: max(0, cap - self.size)]
            self.truncated = True
            if not text:
                return
        self.seq += 1
        self.parts.append(text)
        self.size += len(text)
        if self.first_chunk_at is None:
            self.first_chunk_at = jobs.now_ms()
        self.requester.send([notify.chunk_frame(self.job.job_id, text, self.seq)], now=time.monotonic())

    def _checkpoint(self) -> None:
        jobs.checkpoint(self.job.job_id, worker=self.worker, output="".join(self.parts), seq=self.seq,
                        lease_ms=self.lease_ms, first_chunk_at=None if self.first_saved else self.first_chunk_at)
        self.first_saved = True

    def _finish(self, done: Any) -> str:
        from .providers import Usage

        usage = done.usage if done is not None else Usage(0, 0)
        stop_reason = done.stop_reason if done is not None else "output_limit"
        from .prompting import clean

        # The suggestion: the answer without a fence wrapped around it or its section's heading repeated.
        output = clean("".join(self.parts), self.job.section)
        key = self._save_interaction(usage, "done", stop_reason=stop_reason)
        try:
            finished = jobs.finish(self.job.job_id, worker=self.worker, output=output, seq=self.seq,
                                   input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                   stop_reason=stop_reason, truncated=self.truncated or stop_reason == "max_tokens",
                                   interaction_key=key)
        except jobs.StateConflict:  # cancelled in the last moment
            self.requester.send([notify.error_frame(self.job.job_id, self.seq, "cancelled",
                                                    "the job was cancelled")], now=time.monotonic())
            return "cancelled"
        usage_json = {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                      "totalTokens": usage.input_tokens + usage.output_tokens}
        self.requester.send([notify.done_frame(self.job.job_id, self.seq, usage_json, truncated=finished.truncated,
                                               stop_reason=stop_reason)], now=time.monotonic())
        notify.suggestion(finished, "pending")
        metrics.add_metric(name="AiJobsDone", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="AiTokens", unit=MetricUnit.Count, value=usage.input_tokens + usage.output_tokens)
        _publish(finished)
        return "done"

    def _fail(self, code: str, message: str) -> str:
        output = "".join(self.parts)
        self._save_interaction(None, "failed", error=code)
        try:
            failed = jobs.fail(self.job.job_id, code=code, message=message, output=output, seq=self.seq,
                               worker=self.worker, from_states=(jobs.RUNNING,))
        except jobs.StateConflict:
            return "cancelled"
        self.requester.send([notify.error_frame(self.job.job_id, self.seq, code, message)], now=time.monotonic())
        notify.suggestion(failed, "failed")
        return "failed"

    def _save_interaction(self, usage: Any, outcome: str, *, stop_reason: str | None = None,
                          error: str | None = None) -> str | None:
        """The interaction record in S3 (best effort: the job item holds the essentials)."""
        from ..aws import client

        job = self.job
        key = f"ai/{job.prd_id}/{job.job_id}.json"
        record = {
            "jobId": job.job_id, "prdId": job.prd_id, "requester": job.requester, "mode": job.mode,
            "section": job.section, "instruction": job.instruction, "provider": job.provider, "model": job.model,
            "promptVersion": self.prompt_version, "system": self.system, "prompt": self.prompt,
            "response": "".join(self.parts), "outcome": outcome, "stopReason": stop_reason, "error": error,
            "usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                      "providerLatencyMs": usage.latency_ms} if usage is not None else None,
            "latencyMs": round((time.monotonic() - self.started) * 1000), "chunks": self.seq,
            "firstChunkAt": self.first_chunk_at, "posts": self.requester.posts,
        }
        try:
            client("s3").put_object(Bucket=get_settings().documents_bucket, Key=key,
                                    Body=json.dumps(record, ensure_ascii=False).encode("utf-8"),
                                    ContentType="application/json")
            return key
        except Exception:
            logger.exception("could not store an AI interaction", extra={"job_id": job.job_id})
            return None


def _cancelled_now(job_id: str) -> bool:
    try:
        return jobs.is_cancelled(job_id)
    except Exception:
        return False


def _brief(job: jobs.Job) -> tuple[Any, dict[str, str]]:
    """The structured request and, per target section, what the model sees of it (for approval)."""
    from ..collab import document, store
    from . import sections
    from .providers import Brief
    from .service import section_hash

    markdown = document.markdown_of(store.read(job.prd_id).doc)
    if job.mode == "fill-gaps":
        gaps = sections.gaps(markdown, job.template)
        base = {}
        for gap in gaps:
            span = sections.find(markdown, gap.title)
            base[span.title if span is not None else gap.title] = section_hash(
                span.body(markdown) if span is not None else None)
        titles = tuple(base)
        return Brief(mode=job.mode, section=None, instruction=job.instruction, document=markdown,
                     guidance="\n".join(f"{g.title}: {sections.guidance(job.template, g.title)}" for g in gaps),
                     gaps=titles), base
    assert job.section is not None
    span = sections.find(markdown, job.section)
    current = span.body(markdown) if span is not None else None
    brief = Brief(mode=job.mode, section=job.section, instruction=job.instruction, document=markdown,
                  current=current or "", guidance=sections.guidance(job.template, job.section))
    return brief, {job.section: section_hash(current)}


def _publish(job: jobs.Job) -> None:
    from .. import events

    events.publish("ai.job.completed", {"prd_id": job.prd_id, "job_id": job.job_id, "mode": job.mode,
                                        "section": job.section, "provider": job.provider, "model": job.model,
                                        "input_tokens": job.input_tokens, "output_tokens": job.output_tokens},
                   actor=job.requester)


def on_sqs(event: dict[str, Any]) -> dict[str, Any]:
    """The SQS batch: each record one AI job (``prdtool.sqsbatch``)."""
    from ..sqsbatch import handle_batch

    return handle_batch(event, field="job_id", handle=handle, what="AI job")
