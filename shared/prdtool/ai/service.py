"""What the AI routes do: ask for a suggestion, follow it, and approve, reject or cancel it.

``POST /api/prds/{id}/ai/jobs`` checks the caller may run AI on the PRD (editors, owners), spends
one of the caller's AI jobs for the minute (a budget of its own, ``AI_JOBS_PER_MINUTE``), checks
the prompt and the target section, takes one of the PRD's generation slots, records the job and
queues it for the worker (``AiWorkerFunction``): the answer is 202 at once.  Generation happens in
:mod:`.worker`; the chunks reach the requester's connections as ``ai`` frames.

A finished answer is a *suggestion* pending review: it lives in the job, outside
``Y.Text("content")``.  Approving it (the requester or a PRD owner, who may send an edited text)
checks the target is as the model saw it — a section deleted, added or edited since is a 409 that
changes nothing — then applies the text verbatim as one CRDT edit every connected editor receives,
and cuts a version whose message names the job and the approver.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..auth.policy import Action, Role
from ..auth.principal import Principal
from ..errors import Conflict, DependencyFailed, Forbidden, PayloadTooLarge, RateLimited, Unprocessable
from ..observability import MetricUnit, logger, metrics
from ..prds.access import authorize
from ..settings import get_settings
from . import jobs, notify

APPLY_LEASE_MS = 60_000


def section_hash(body: str | None) -> str:
    """What the conflict check compares: the section's text without surrounding blank lines ("" when
    the section does not exist)."""
    if body is None:
        return ""
    return hashlib.sha256(body.strip().encode("utf-8")).hexdigest()


def _markdown(prd_id: str) -> str:
    from ..collab import document, store

    return document.markdown_of(store.read(prd_id).doc)


def _target(markdown: str, mode: str, section: str | None, template: str) -> str | None:
    """The title of the section the job writes into (422 when it cannot be one)."""
    from . import sections

    if mode == "fill-gaps":
        if section:
            raise Unprocessable("fill-gaps drafts every missing or thin section; leave 'section' out",
                                code="unknown_section")
        if not sections.gaps(markdown, template):
            raise Unprocessable("this PRD has no missing or thin standard section to fill", code="no_gaps")
        return None
    if not section:
        raise Unprocessable(f"'{mode}' needs the title of the section to write", code="unknown_section")
    span = sections.find(markdown, section)
    if span is not None and span == sections.title_span(markdown):  # its body is the whole document
        raise Unprocessable(f"'{span.title}' is the document's title, not a section: choose one of its sections "
                            "(or fill-gaps for the missing ones)", code="unknown_section")
    if span is not None:
        return span.title
    key = sections.canonical(section)
    if mode == "draft" and key is not None and sections.schema_section(template, key) is not None:
        named = " ".join(section.split())  # a new section takes the person's words ("Risks")
        return named[:1].upper() + named[1:]
    known = ", ".join(f"'{s.title}'" for s in sections.spans(markdown)[:30]) or "none"
    raise Unprocessable(
        f"this PRD has no section '{section}'" + (" (and it is not a standard PRD section to draft)"
                                                  if mode == "draft" else "") + f"; its sections: {known}",
        code="unknown_section")


def create_job(principal: Principal, prd_id: str, *, prompt: str, mode: str, section: str | None) -> dict[str, Any]:
    from ..auth.ratelimit import Limits, limiter

    settings = get_settings()
    prd, _ = authorize(prd_id, principal, Action.RUN_AI)
    if len(prompt) > settings.ai_max_prompt_chars:
        raise PayloadTooLarge(f"the prompt has {len(prompt)} characters; at most {settings.ai_max_prompt_chars} "
                              "are accepted", code="prompt_too_large")
    if not prompt.strip():
        raise Unprocessable("the prompt is empty: say what you want written", code="empty_prompt")
    if mode not in jobs.MODES:
        raise Unprocessable(f"unknown mode '{mode}': one of {', '.join(jobs.MODES)}", code="unknown_mode")
    template = str(prd.template or "standard")
    title = _target(_markdown(prd_id), mode, section, template)
    jobs.check_slot_free(prd_id, slots=settings.ai_concurrent_jobs_per_prd)  # before spending the budget
    decision = limiter().hit(f"ai#{principal.username}", limits=Limits.parse(settings.ai_jobs_per_minute))
    if decision is not None and not decision.allowed:
        raise RateLimited(f"you have started the most AI jobs allowed per {decision.window} "
                          f"({decision.limit}); retry in {decision.retry_after} s", code="ai_rate_limited",
                          retry_after=decision.retry_after)
    job = jobs.create(prd_id=prd_id, requester=principal.username, mode=mode, section=title, instruction=prompt,
                      template=template, slots=settings.ai_concurrent_jobs_per_prd,
                      lease_ms=(settings.ai_job_seconds + 60) * 1000)
    try:
        _queue(job.job_id)
    except Exception as exc:
        logger.exception("could not queue an AI job", extra={"job_id": job.job_id})
        failed = jobs.fail(job.job_id, code="unavailable", message="the job could not be queued; try again")
        jobs.release_slot(failed)
        raise DependencyFailed("the AI queue is unavailable; try again in a moment") from exc
    metrics.add_metric(name="AiJobsCreated", unit=MetricUnit.Count, value=1)
    notify.suggestion(job, "generating")
    return {"jobId": job.job_id, "status": job.status, "mode": mode, "section": title}


def _queue(job_id: str) -> None:
    from ..aws import client

    url = get_settings().ai_queue_url
    if not url:
        raise RuntimeError("AI_QUEUE_URL is not set")
    client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id}))


def _readable_job(principal: Principal, job_id: str) -> tuple[jobs.Job, Role | None]:
    """The job, if the caller may read its PRD (404 otherwise: another PRD's jobs do not exist)."""
    job = jobs.get(job_id)
    _, role = authorize(job.prd_id, principal, Action.READ)
    return job, role


def _decidable_job(principal: Principal, job_id: str, *, edit: bool = False) -> jobs.Job:
    """The job, if the caller may decide about it: its requester, or an owner of the PRD (and, with
    ``edit``, still allowed to edit it) — one membership lookup for both checks."""
    from ..auth.policy import require

    job, role = _readable_job(principal, job_id)
    if principal.username != job.requester and role is not Role.OWNER and not principal.is_admin:
        raise Forbidden("only the person who asked for this suggestion, or the PRD's owner, may decide about it",
                        code="not_your_job")
    if edit:
        require(role, Action.EDIT, is_admin=principal.is_admin)
    return job


# A job nobody will finish: its message was lost or dead-lettered before a worker started it, or its
# worker died and no redelivery came to notice (the worker fails such jobs itself when one does).
QUEUED_GIVE_UP_MS = 30 * 60 * 1000
RUNNING_GRACE_MS = 60 * 1000


def _settle_abandoned(job: jobs.Job) -> jobs.Job:
    """Fail a job that can no longer finish, as it is read (so its slot frees and the person hears)."""
    now = jobs.now_ms()
    expired: int | None = None
    if job.status == jobs.QUEUED and job.created_at < now - QUEUED_GIVE_UP_MS:
        code, message, worker = "unavailable", "the AI job was never started; please ask again", None
    elif job.status == jobs.RUNNING and (job.lease_until or 0) < now - RUNNING_GRACE_MS:
        code, message, worker = "interrupted", "the AI job was interrupted before it finished; please ask again", \
            job.lease
        expired = now - RUNNING_GRACE_MS
    else:
        return job
    try:
        failed = jobs.fail(job.job_id, code=code, message=message, worker=worker, from_states=(job.status,),
                           lease_expired_before=expired)
    except jobs.StateConflict:
        return jobs.get(job.job_id)
    jobs.release_slot(failed)
    notify.suggestion(failed, "failed")
    logger.warning("an abandoned AI job was failed", extra={"job_id": job.job_id, "code": code})
    return failed


def get_job(principal: Principal, job_id: str) -> dict[str, Any]:
    job, _ = _readable_job(principal, job_id)
    return _settle_abandoned(job).to_json()


def list_jobs(principal: Principal, prd_id: str, *, status: str | None) -> dict[str, Any]:
    authorize(prd_id, principal, Action.READ)
    found = [_settle_abandoned(j) if j.status in jobs.GENERATING else j for j in jobs.of_prd(prd_id)]
    if status == "pending":
        found = [j for j in found if j.status == jobs.DONE]
    elif status:
        found = [j for j in found if j.status == status]
    return {"items": [j.to_json(with_output=j.status in (jobs.DONE, jobs.RUNNING)) for j in found]}


def cancel(principal: Principal, job_id: str) -> dict[str, Any]:
    job = _decidable_job(principal, job_id)
    if job.status not in jobs.GENERATING:
        raise Conflict(f"the job is {job.status}: only a queued or generating job can be cancelled",
                       code="job_state")
    done = jobs.cancel(job_id, by=principal.username)
    jobs.release_slot(done)
    notify.suggestion(done, "cancelled")
    return done.to_json()


def reject(principal: Principal, job_id: str) -> dict[str, Any]:
    job = _decidable_job(principal, job_id)
    _check_decidable(job)
    done = jobs.reject(job_id, by=principal.username)
    notify.suggestion(done, "rejected")
    return done.to_json()


def _check_decidable(job: jobs.Job) -> None:
    if job.apply_lease_expired(jobs.now_ms()):
        return  # an approval died half-way: this one finishes it (approve() checks what landed)
    if job.status in jobs.DECIDED or job.status == jobs.APPLYING:
        raise Conflict(f"this suggestion was already {job.status if job.status != jobs.APPLYING else 'approved'}"
                       + (f" by {job.decided_by}" if job.decided_by else ""), code="already_decided")
    if job.status in jobs.GENERATING:
        raise Conflict("the suggestion is still being written; wait for it to finish (or cancel it)",
                       code="job_state")
    if job.status != jobs.DONE:
        raise Conflict(f"the job is {job.status}: there is no suggestion to decide about", code="job_state")


def approve(principal: Principal, job_id: str, *, text: str | None) -> dict[str, Any]:
    """Apply the suggestion (or the caller's edited ``text``) to the live document and version it."""
    from ..collab import document, live, store
    from ..versions import service as versions

    job = _decidable_job(principal, job_id, edit=True)
    _check_decidable(job)
    chosen = text if text is not None else job.output
    if not chosen.strip():
        raise Unprocessable("the suggestion is empty: there is nothing to apply", code="empty_suggestion")
    stored = store.read(job.prd_id)
    markdown = document.markdown_of(stored.doc)
    if job.status == jobs.APPLYING and job.applied and _hashes(job, markdown) == job.applied:
        edits: list[tuple[int, int, str]] = []  # the approval that died had made its edit: finish it
    else:
        try:
            edits = plan_edits(job, markdown, chosen)  # 409 when the target moved on since
        except Conflict:
            _check_decidable(jobs.get(job_id))  # another approval landed meanwhile: say that instead
            raise
    applied = job.applied or {}
    if edits:  # what a successor checks; nothing when the edit would not show in the targets' hashes
        after = _hashes(job, _applied(markdown, edits))
        applied = after if after != _hashes(job, markdown) else {}
    taken = jobs.begin_apply(job_id, by=principal.username, lease_ms=APPLY_LEASE_MS, stale_before=jobs.now_ms(),
                             applied=applied)
    try:
        update = None
        for start, end, replacement in sorted(edits, reverse=True):  # from the end: offsets stay valid
            piece = document.splice_update(stored.doc, start, end, replacement)
            update = piece if update is None or piece is None else _merge(update, piece)
        if update is not None:
            live.apply_server_update(job.prd_id, update, origin=f"ai:{job_id}")
    except Exception:
        jobs.abandon_apply(taken)
        raise
    what = f"{job.mode} of '{job.section}'" if job.section else job.mode
    version = None
    try:
        made = versions.cut(
            job.prd_id, actor=principal.username, name=f"AI {job.mode}", by_hand=True,
            message=(f"Applies AI job {job_id} ({what}) requested by {job.requester}, approved by "
                     f"{principal.username}" + (" with edits" if text is not None and text != job.output else "")
                     + (f"; model {job.model}" if job.model else "") + "."))
        version = made.version if made else None
    except Exception:  # the edit is stored and relayed: VersionFunction versions it when it runs next
        logger.exception("could not cut the version of an approved suggestion", extra={"job_id": job_id})
    done = jobs.approved(taken, by=principal.username, version=version)
    metrics.add_metric(name="AiSuggestionsApproved", unit=MetricUnit.Count, value=1)
    notify.suggestion(done, "approved")
    return done.to_json()


def _applied(markdown: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        markdown = markdown[:start] + replacement + markdown[end:]
    return markdown


def _hashes(job: jobs.Job, markdown: str) -> dict[str, str]:
    """The hash of every section the job writes into, as ``markdown`` has it ("" when absent)."""
    from . import sections

    titles = set(job.base or {}) | ({job.section} if job.section else set())
    found = {title: sections.find(markdown, title) for title in titles}
    return {title: section_hash(span.body(markdown) if span is not None else None) for title, span in found.items()}


def _merge(a: bytes, b: bytes) -> bytes:
    from pycrdt import merge_updates

    return merge_updates(a, b)


def plan_edits(job: jobs.Job, markdown: str, text: str) -> list[tuple[int, int, str]]:
    """The text edits (start, end, replacement — offsets into ``markdown``) that apply ``text``,
    after checking each target section is what the model saw (409 otherwise)."""
    from . import prompting, sections

    base = job.base or {}
    for title, seen in base.items():
        span = sections.find(markdown, title)
        now = section_hash(span.body(markdown)) if span is not None else ""
        if now == seen:
            continue
        if not seen:
            raise Conflict(f"the section '{title}' was added by someone else after this suggestion was written; "
                           "ask again to write into it", code="section_conflict")
        if span is None:
            raise Conflict(f"the section '{title}' was deleted after this suggestion was written; nothing was "
                           "changed", code="section_conflict")
        raise Conflict(f"the section '{title}' was edited after this suggestion was written; nothing was changed "
                       "(ask again, or copy what you need)", code="section_conflict")
    if job.mode != "fill-gaps":
        assert job.section is not None
        span = sections.find(markdown, job.section)
        if span is not None:
            _, start, end, replacement = sections.replace_body(markdown, span, sections.nest_headings(text, span.level))
            return [(start, end, replacement)]
        key = sections.canonical(job.section)
        assert key is not None  # (a draft of a missing section is a standard one: checked on creation)
        _, level = sections.insertion_point(markdown, key, job.template)
        _, offset, inserted = sections.insert_section(markdown, key, job.section,
                                                      sections.nest_headings(text, level), job.template)
        return [(offset, offset, inserted)]
    parts = prompting.parse_fill_gaps(text)
    if not parts:
        raise Unprocessable("the suggestion holds no '## Section' to add", code="empty_suggestion")
    wanted = {sections.canonical(t) or t.lower(): t for t in base}
    edits: list[tuple[int, int, str]] = []
    missing: list[tuple[str, str, str]] = []
    for title, body in parts:
        key = sections.canonical(title) or title.lower()
        if key not in wanted:
            continue  # a section the job did not ask for is not applied
        span = sections.find(markdown, wanted[key])
        if span is not None:
            _, start, end, replacement = sections.replace_body(markdown, span, sections.nest_headings(body, span.level))
            edits.append((start, end, replacement))
        elif sections.schema_section(job.template, key) is not None:
            missing.append((key, title, sections.nest_headings(body, 2)))
    if missing:
        _, insertions = sections.insert_sections(markdown, missing, job.template)
        edits += [(offset, offset, addition) for offset, addition in insertions]
    if not edits:
        raise Unprocessable("the suggestion holds none of the sections it was asked to fill", code="empty_suggestion")
    return edits
