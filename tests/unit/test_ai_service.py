"""The AI service (prdtool.ai.service) against moto in-process: who may ask, what is refused and
why, the budgets (per person per minute, per PRD at once), queueing, and the review — approve,
reject, cancel — with its conflict checks, the CRDT edit and the version it cuts.

Suggestions are produced by the real worker with a scripted provider (tests/unit/test_ai_worker.py,
whose fixture ``ai`` this module shares).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from pycrdt import Doc

from prdtool.ai import jobs, sections, service, worker
from prdtool.ai.jobs import JobItem
from prdtool.auth import ratelimit
from prdtool.collab import document, protocol, store
from prdtool.errors import Conflict, DependencyFailed, Forbidden, NotFound, PayloadTooLarge, RateLimited, Unprocessable
from prdtool.ids import ulid
from prdtool.prds.models import MemberModel
from prdtool.settings import get_settings
from prdtool.versions import records
from prdtool.versions import service as versions
from tests.unit import test_ai_worker
from tests.unit.test_ai_worker import (
    REGION,
    START,
    Recorder,
    Scripted,
    configure,
    edit,
    make_prd,
    markdown,
    principal,
    sections_doc,
)

ai = test_ai_worker.ai  # the fixture: moto, the tables, recorded frames and events, a scripted provider

GOALS = "- Cut checkout abandonment by 20 % for returning customers.\n- Keep p95 latency under 300 ms 🚀."
RISKS = "- **Vendor lock-in:** the payment provider may change its terms.\n- **Peak load:** plan capacity early."
UNICODE_START = START.replace("One-tap checkout", "Zahlungsabbrüche senken 🙂 — one-tap checkout")


def ask(who: str, prd_id: str, *, mode: str = "draft", section: str | None = "Risks",
        prompt: str = "Write it") -> dict[str, Any]:
    return service.create_job(principal(who), prd_id, prompt=prompt, mode=mode, section=section)


def suggest(ai: Recorder, who: str, prd_id: str, output: str, *, mode: str = "rewrite",
            section: str | None = "Goals") -> str:
    """A job asked by ``who`` that the worker finished with ``output``: a suggestion pending review."""
    job_id = str(ask(who, prd_id, mode=mode, section=section)["jobId"])
    ai.provider = Scripted([output])
    assert worker.handle(job_id) == "done"
    return job_id


def queue_bodies() -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    got = sqs.receive_message(QueueUrl=get_settings().ai_queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def refused(error: type[Exception], call: Any) -> Any:
    with pytest.raises(error) as caught:
        call()
    return caught.value


# ----------------------------------------------------------------------------- asking
def test_who_may_ask(ai: Recorder) -> None:
    prd = make_prd(START)
    for who in ("vera", "cora"):
        assert refused(Forbidden, lambda who=who: ask(who, prd)).status == 403
    assert refused(NotFound, lambda: ask("mallory", prd)).status == 404
    assert refused(NotFound, lambda: ask("alice", ulid())).status == 404
    assert refused(NotFound, lambda: ask("alice", "not-a-prd")).status == 404
    assert ask("bob", prd)["status"] == "queued"  # an editor
    assert ask("alice", prd)["status"] == "queued"  # the owner
    assert len(queue_bodies()) == 2


def test_bad_prompts_modes_and_sections_are_refused_with_their_codes(ai: Recorder) -> None:
    prd = make_prd(START)
    limit = get_settings().ai_max_prompt_chars
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"prompt": ""}, Unprocessable, "empty_prompt"),
        ({"prompt": " \n\t "}, Unprocessable, "empty_prompt"),
        ({"prompt": "x" * (limit + 1)}, PayloadTooLarge, "prompt_too_large"),
        ({"mode": "poem"}, Unprocessable, "unknown_mode"),
        ({"section": "Pricing and packaging"}, Unprocessable, "unknown_section"),  # not a standard section
        ({"mode": "rewrite", "section": "Risks"}, Unprocessable, "unknown_section"),  # missing: nothing to rewrite
        ({"mode": "expand", "section": "Timeline"}, Unprocessable, "unknown_section"),
        ({"mode": "rewrite", "section": None}, Unprocessable, "unknown_section"),
        ({"mode": "draft", "section": ""}, Unprocessable, "unknown_section"),
        ({"mode": "fill-gaps", "section": "Goals"}, Unprocessable, "unknown_section"),
    ]
    for body, error, code in cases:
        caught = refused(error, lambda body=body: ask("bob", prd, **body))
        assert caught.code == code, body
    assert refused(PayloadTooLarge, lambda: ask("bob", prd, prompt="x" * (limit + 1))).status == 413
    complete = make_prd(sections_doc())
    assert refused(Unprocessable, lambda: ask("bob", complete, mode="fill-gaps", section=None)).code == "no_gaps"
    assert jobs.of_prd(prd) == jobs.of_prd(complete) == [] and queue_bodies() == [], "refusals record nothing"
    assert ask("bob", prd, prompt="x" * limit)["status"] == "queued"  # exactly the limit is accepted


def test_a_draft_of_a_missing_standard_section_is_accepted_and_queued(ai: Recorder) -> None:
    prd = make_prd(START)
    created = ask("bob", prd, section="risks")
    assert created["section"] == "Risks" and created["mode"] == "draft" and created["status"] == "queued"
    job = jobs.get(created["jobId"])
    assert (job.prd_id, job.requester, job.section, job.instruction, job.template) == (
        prd, "bob", "Risks", "Write it", "standard")
    assert job.slot is not None and job.slot.startswith(f"slot#{prd}#")
    assert queue_bodies() == [{"job_id": created["jobId"]}]
    assert ai.notices(created["jobId"]) == ["generating"]
    # An existing section is named as the document spells it, found by its meaning too.
    assert ask("bob", prd, mode="rewrite", section="objectives")["section"] == "Goals"
    assert ask("bob", prd, mode="fill-gaps", section=None)["section"] is None


def test_a_person_may_start_only_so_many_jobs_a_minute(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_jobs_per_minute="2/100/100", ai_concurrent_jobs_per_prd="10")
    clock = [1_699_999_980.0 + 10]  # 10 s into a minute: the three asks cannot straddle two minutes
    monkeypatch.setattr(ratelimit, "_limiter", ratelimit.RateLimiter(clock=lambda: clock[0]))
    prd = make_prd(START)
    for _ in range(2):  # refused requests do not spend the budget
        refused(Unprocessable, lambda: ask("bob", prd, section="Pricing"))
    ask("bob", prd)
    ask("bob", prd)
    caught = refused(RateLimited, lambda: ask("bob", prd))
    assert caught.code == "ai_rate_limited" and caught.status == 429 and "minute" in caught.message
    assert "50 s" in caught.message
    assert len(jobs.of_prd(prd)) == 2
    ask("carol", prd)  # a budget of one's own
    clock[0] += 60
    ask("bob", prd)  # the next minute


def test_a_prd_runs_only_so_many_jobs_at_once(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_concurrent_jobs_per_prd="1")
    prd, other = make_prd(START), make_prd(START)
    first = ask("bob", prd)["jobId"]
    caught = refused(RateLimited, lambda: ask("carol", prd))
    assert caught.code == "too_many_ai_jobs" and caught.status == 429
    ask("carol", other)  # another PRD has slots of its own

    # Once the first job is done its slot is free.
    ai.provider = Scripted(["- a risk"])
    assert worker.handle(first) == "done"
    second = ask("carol", prd)["jobId"]

    # A slot whose holder died is free once its lease passed; the dead job cannot free it afterwards.
    slot = jobs.get(second).slot
    assert slot is not None
    JobItem(job_id=slot).update(actions=[JobItem.lease_until.set(jobs.now_ms() - 1)])
    third = ask("bob", prd)["jobId"]
    assert jobs.get(third).slot == slot and JobItem.get(slot).lease == third
    jobs.release_slot(jobs.get(second))
    assert JobItem.get(slot).lease == third
    assert refused(RateLimited, lambda: ask("alice", prd)).code == "too_many_ai_jobs"


def test_a_busy_prd_refuses_before_spending_the_persons_budget(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_concurrent_jobs_per_prd="1", ai_jobs_per_minute="2/100/100")
    prd = make_prd(START)
    ask("bob", prd)
    for _ in range(5):
        busy = refused(RateLimited, lambda: ask("carol", prd))
        assert busy.code == "too_many_ai_jobs" and busy.retry_after == jobs.SLOT_RETRY_SECONDS
    ask("carol", make_prd(START))  # carol's budget (2 a minute) is untouched by the five refusals
    ask("carol", make_prd(START))
    spent = refused(RateLimited, lambda: ask("carol", make_prd(START)))
    assert spent.code == "ai_rate_limited" and spent.retry_after is not None and spent.retry_after > 0


def test_the_document_title_is_not_a_section_to_write_into(ai: Recorder) -> None:
    prd = make_prd(START)
    title = sections.title_span(START)
    assert title is not None
    for mode in ("rewrite", "summarize", "draft"):
        caught = refused(Unprocessable, lambda mode=mode: ask("bob", prd, mode=mode, section=title.title))
        assert caught.code == "unknown_section" and "title" in caught.message


def test_cancelling_a_queued_job_frees_its_slot(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, ai_concurrent_jobs_per_prd="1")
    prd = make_prd(START)
    job_id = ask("bob", prd)["jobId"]
    assert refused(Forbidden, lambda: service.cancel(principal("carol"), job_id)).code == "not_your_job"
    cancelled = service.cancel(principal("bob"), job_id)
    assert cancelled["status"] == "cancelled" and cancelled["decidedBy"] == "bob"
    ask("carol", prd)
    assert refused(Conflict, lambda: service.cancel(principal("bob"), job_id)).code == "job_state"
    ai.provider = provider = Scripted(["- never"])
    assert worker.handle(job_id) == "skipped" and provider.calls == 0


def test_a_job_that_cannot_be_queued_fails_and_frees_its_slot(ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    good = get_settings().ai_queue_url
    configure(monkeypatch, ai_concurrent_jobs_per_prd="1", ai_queue_url=good.rsplit("/", 1)[0] + "/no-such-queue")
    prd = make_prd(START)
    caught = refused(DependencyFailed, lambda: ask("bob", prd))
    assert caught.status == 503
    (failed,) = jobs.of_prd(prd)
    assert (failed.status, failed.error_code) == ("failed", "unavailable")
    assert failed.slot is not None
    with pytest.raises(JobItem.DoesNotExist):
        JobItem.get(failed.slot)
    configure(monkeypatch, ai_queue_url=good)
    created = ask("bob", prd)  # the PRD's one slot is free
    assert queue_bodies() == [{"job_id": created["jobId"]}]


# ----------------------------------------------------------------------------- approving
def version_message(prd_id: str, version: str | None) -> str:
    assert version is not None
    return records.get(prd_id, version).message or ""


def test_an_approved_rewrite_lands_verbatim_as_one_edit_and_is_versioned(ai: Recorder) -> None:
    prd = make_prd(UNICODE_START)
    job_id = suggest(ai, "bob", prd, GOALS)
    peer: Doc[Any] = Doc()  # an editor's copy of the document, connected before the approval
    peer.apply_update(store.read(prd).update_since(None))
    assert GOALS not in markdown(prd), "nothing is applied before approval"
    approved = service.approve(principal("bob"), job_id, text=None)
    after = markdown(prd)
    assert after == UNICODE_START.replace("Cut abandonment by a fifth.", GOALS)
    assert (approved["status"], approved["decidedBy"]) == ("approved", "bob") and approved["version"]
    message = version_message(prd, approved["version"])
    assert job_id in message and "bob" in message and "with edits" not in message
    assert versions.read_markdown(records.get(prd, approved["version"]).markdown_key) == after
    job = jobs.get(job_id)
    assert (job.status, job.version, job.lease) == ("approved", approved["version"], None)
    assert ai.notices(job_id)[-1] == "approved"
    relayed = [(ids, frames) for ids, frames in ai.broadcasts if json.loads(frames[0])["action"] == "y"]
    assert len(relayed) == 1 and sorted(relayed[0][0]) == ["c-alice", "c-bob"], "one edit, relayed to every editor"
    (frame,) = relayed[0][1]
    message_bytes = protocol.parse_frame(frame).message
    assert message_bytes is not None
    update = protocol.decode_message(message_bytes)
    assert isinstance(update, protocol.SyncUpdate)
    peer.apply_update(update.update)
    assert document.markdown_of(peer) == after
    assert refused(Conflict, lambda: service.approve(principal("bob"), job_id, text=None)).code == "already_decided"
    assert markdown(prd) == after


def test_an_approved_draft_of_a_new_section_is_inserted_where_the_schema_puts_it(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, RISKS, mode="draft", section="risks")
    service.approve(principal("bob"), job_id, text=None)
    assert markdown(prd) == START + "\n## Risks\n\n" + RISKS + "\n"


def test_the_owner_may_decide_about_anyones_suggestion_other_editors_may_not(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    for who in ("carol", "vera"):
        assert refused(Forbidden, lambda who=who: service.approve(principal(who), job_id, text=None)).code == \
            "not_your_job"
        assert refused(Forbidden, lambda who=who: service.reject(principal(who), job_id)).code == "not_your_job"
    assert refused(NotFound, lambda: service.approve(principal("mallory"), job_id, text=None)).status == 404
    assert jobs.get(job_id).status == "done"
    approved = service.approve(principal("alice"), job_id, text=None)
    assert approved["decidedBy"] == "alice" and approved["requester"] == "bob"
    message = version_message(prd, approved["version"])
    assert "requested by bob" in message and "approved by alice" in message


def test_a_requester_who_lost_the_right_to_edit_may_not_apply(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    MemberModel(prd_id=prd, username="bob", role="viewer", added_by="alice", added_at=2).save()
    refused(Forbidden, lambda: service.approve(principal("bob"), job_id, text=None))
    assert markdown(prd) == START and jobs.get(job_id).status == "done"


def test_an_edited_suggestion_applies_the_edited_text(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    mine = "- Cut abandonment by a quarter.\n\n### Guardrail\n\nNo slower checkout."
    approved = service.approve(principal("bob"), job_id, text=mine)
    after = markdown(prd)
    assert after == START.replace("Cut abandonment by a fifth.", mine) and GOALS not in after
    assert "with edits" in version_message(prd, approved["version"])
    assert jobs.get(job_id).output == GOALS  # the suggestion itself is kept as the model wrote it


def test_an_empty_edited_text_is_refused(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    assert refused(Unprocessable, lambda: service.approve(principal("bob"), job_id, text="  \n")).code == \
        "empty_suggestion"
    assert jobs.get(job_id).status == "done" and markdown(prd) == START


def test_two_approvals_at_once_apply_the_suggestion_once(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def approve(who: str) -> None:
        barrier.wait()
        try:
            results.append(service.approve(principal(who), job_id, text=None))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=approve, args=(who,)) for who in ("bob", "alice")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1 and len(losses) == 1, results
    # The loser's 409 depends on when it looked: the job already taken (already_decided / job_state), or
    # the job still "done" but the document already holding the winner's edit (section_conflict).
    assert losses[0].code in ("already_decided", "job_state", "section_conflict")
    assert markdown(prd).count(GOALS) == 1 and markdown(prd) == START.replace("Cut abandonment by a fifth.", GOALS)
    assert jobs.get(job_id).version == wins[0]["version"]


class Killed(BaseException):
    """The approving process dies here (kill -9, a Lambda timeout): nothing after it runs."""


def _expire_apply_lease(job_id: str) -> None:
    JobItem(job_id=job_id).update(actions=[JobItem.lease_until.set(jobs.now_ms() - 1)])


@pytest.mark.parametrize(("dies_in", "mode", "output", "section"), [
    ("prdtool.ai.jobs.approved", "rewrite", GOALS, "Goals"),  # after the edit and the version
    ("prdtool.collab.live.apply_server_update", "rewrite", GOALS, "Goals"),  # before the edit landed
    ("prdtool.ai.jobs.approved", "draft", RISKS, "risks"),  # a new section, inserted
])
def test_an_approval_that_died_half_way_is_finished_by_the_next_applying_the_edit_once(
        ai: Recorder, monkeypatch: pytest.MonkeyPatch, dies_in: str, mode: str, output: str, section: str) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, output, mode=mode, section=section)
    with monkeypatch.context() as patched:
        def die(*_args: Any, **_kwargs: Any) -> Any:
            raise Killed
        patched.setattr(dies_in, die)
        with pytest.raises(Killed):
            service.approve(principal("bob"), job_id, text=None)
    assert jobs.get(job_id).status == jobs.APPLYING
    code = refused(Conflict, lambda: service.approve(principal("alice"), job_id, text=None)).code
    assert code == "already_decided", "while its lease runs, the approval in progress is left alone"
    _expire_apply_lease(job_id)
    finished = service.approve(principal("alice"), job_id, text=None)
    assert finished["status"] == "approved" and finished["decidedBy"] == "alice"
    assert markdown(prd).count(output) == 1, "the edit is in the document exactly once"
    assert jobs.get(job_id).status == "approved"


def test_a_dead_approval_whose_target_was_edited_since_is_a_conflict_not_a_second_edit(
        ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    with monkeypatch.context() as patched:
        def die(*_args: Any, **_kwargs: Any) -> Any:
            raise Killed
        patched.setattr("prdtool.ai.jobs.approved", die)
        with pytest.raises(Killed):
            service.approve(principal("bob"), job_id, text=None)
    edit(prd, markdown(prd).replace(GOALS, GOALS + "\n- Someone added a goal meanwhile."))
    _expire_apply_lease(job_id)
    assert refused(Conflict, lambda: service.approve(principal("bob"), job_id, text=None)).code == "section_conflict"
    assert markdown(prd).count(GOALS) == 1


def test_a_job_whose_message_was_lost_or_whose_worker_died_fails_when_read_and_frees_its_slot(
        ai: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    prd = make_prd(START)
    lost = str(ask("bob", prd)["jobId"])  # queued; its message never reaches a worker
    assert service.get_job(principal("bob"), lost)["status"] == "queued", "young: still waiting for a worker"
    JobItem(job_id=lost).update(actions=[JobItem.created_at.set(jobs.now_ms() - service.QUEUED_GIVE_UP_MS - 1)])
    seen = service.get_job(principal("bob"), lost)
    assert seen["status"] == "failed" and seen["error"]["code"] == "unavailable"
    assert ai.notices(lost)[-1] == "failed"
    dead = str(ask("alice", prd)["jobId"])
    jobs.start(dead, worker="w1", lease_ms=1000, provider="bedrock", model="m")
    JobItem(job_id=dead).update(actions=[JobItem.lease_until.set(jobs.now_ms() - service.RUNNING_GRACE_MS - 1)])
    listed = {j["jobId"]: j for j in service.list_jobs(principal("alice"), prd, status=None)["items"]}
    assert listed[dead]["status"] == "failed" and listed[dead]["error"]["code"] == "interrupted"
    for _ in range(get_settings().ai_concurrent_jobs_per_prd):  # both slots are free again
        ask("alice", prd)


@pytest.mark.parametrize("change", ["edited", "deleted", "added"])
def test_a_target_changed_since_the_suggestion_is_a_conflict_that_changes_nothing(
        ai: Recorder, change: str) -> None:
    prd = make_prd(START)
    if change == "added":
        job_id = suggest(ai, "bob", prd, RISKS, mode="draft", section="Risks")
        edit(prd, START + "\n## Risks\n\nCarol's own risks.\n")
    else:
        job_id = suggest(ai, "bob", prd, GOALS)
        if change == "edited":
            edit(prd, START.replace("by a fifth", "by a third"))
        else:
            edit(prd, START.replace("## Goals\n\nCut abandonment by a fifth.\n\n", ""))
    before = markdown(prd)
    caught = refused(Conflict, lambda: service.approve(principal("bob"), job_id, text=None))
    assert caught.code == "section_conflict" and change in caught.message
    assert markdown(prd) == before
    job = jobs.get(job_id)
    assert (job.status, job.version, job.decided_by) == ("done", None, None)
    assert records.head(prd).version is None, "no version was cut"
    service.reject(principal("bob"), job_id)  # it can still be dismissed


def test_an_edit_elsewhere_is_not_a_conflict_and_is_kept(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    elsewhere = START.replace("Saved cards; one tap to pay.", "Saved cards; one tap to pay; Apple Pay.")
    edit(prd, elsewhere)
    edit(prd, elsewhere.replace("Cut abandonment by a fifth.\n", "Cut abandonment by a fifth.  \n\n"))
    service.approve(principal("bob"), job_id, text=None)  # blank lines around the target do not count
    assert markdown(prd) == elsewhere.replace("Cut abandonment by a fifth.", GOALS)


def test_an_approved_fill_gaps_inserts_only_the_asked_sections_in_schema_order(ai: Recorder) -> None:
    start = sections_doc(problem="TBD.", risks="", timeline="")
    prd = make_prd(start)
    answer = ("## Problem\n\nShoppers re-enter card details on every order.\n\n"
              "## Goals\n\nNOT ASKED: Goals is complete.\n\n"
              "## Timeline\n\n- Beta in May.\n\n"
              "## Risks and mitigations\n\n- Vendor lock-in.\n\n"
              "## Pricing\n\nNOT ASKED: not a gap.\n")
    job_id = suggest(ai, "bob", prd, answer, mode="fill-gaps", section=None)
    service.approve(principal("bob"), job_id, text=None)
    after = markdown(prd)
    at = start.index("## Open questions")
    expected = (start[:at].replace("## Problem\n\nTBD.\n", "## Problem\n\nShoppers re-enter card details on every "
                                   "order.\n")
                + "## Risks and mitigations\n\n- Vendor lock-in.\n\n## Timeline\n\n- Beta in May.\n\n" + start[at:])
    assert after == expected
    assert "NOT ASKED" not in after
    assert [s.title for s in sections.spans(after)][-4:] == [
        "Success metrics", "Risks and mitigations", "Timeline", "Open questions"]


def test_a_fill_gaps_suggestion_holding_none_of_the_gaps_is_refused(ai: Recorder) -> None:
    start = sections_doc(risks="")
    prd = make_prd(start)
    job_id = suggest(ai, "bob", prd, "## Goals\n\nOnly goals.\n", mode="fill-gaps", section=None)
    assert refused(Unprocessable, lambda: service.approve(principal("bob"), job_id, text=None)).code == \
        "empty_suggestion"
    assert markdown(prd) == start and jobs.get(job_id).status == "done"


# ----------------------------------------------------------------------------- states
def test_only_a_finished_suggestion_can_be_approved_or_rejected(ai: Recorder) -> None:
    prd = make_prd(START)
    queued_id = ask("bob", prd)["jobId"]
    assert refused(Conflict, lambda: service.approve(principal("bob"), queued_id, text=None)).code == "job_state"
    jobs.start(queued_id, worker="w#1", lease_ms=60_000, provider="scripted", model="scripted-1")
    assert refused(Conflict, lambda: service.approve(principal("bob"), queued_id, text="x")).code == "job_state"
    assert refused(Conflict, lambda: service.reject(principal("bob"), queued_id)).code == "job_state"
    jobs.fail(queued_id, code="timeout", message="too slow")
    assert refused(Conflict, lambda: service.approve(principal("bob"), queued_id, text="x")).code == "job_state"
    assert markdown(prd) == START


def test_a_rejected_suggestion_cannot_be_approved_nor_a_done_one_cancelled(ai: Recorder) -> None:
    prd = make_prd(START)
    job_id = suggest(ai, "bob", prd, GOALS)
    assert refused(Conflict, lambda: service.cancel(principal("bob"), job_id)).code == "job_state"
    rejected = service.reject(principal("alice"), job_id)
    assert (rejected["status"], rejected["decidedBy"]) == ("rejected", "alice")
    caught = refused(Conflict, lambda: service.approve(principal("bob"), job_id, text=None))
    assert caught.code == "already_decided" and "alice" in caught.message
    assert refused(Conflict, lambda: service.reject(principal("bob"), job_id)).code == "already_decided"
    assert markdown(prd) == START and records.head(prd).version is None
    assert ai.notices(job_id)[-1] == "rejected"


def test_members_read_jobs_others_do_not_and_pending_lists_only_suggestions(ai: Recorder) -> None:
    prd = make_prd(START)
    done_id = suggest(ai, "bob", prd, GOALS)
    queued_id = ask("carol", prd)["jobId"]
    seen = service.get_job(principal("vera"), done_id)  # a viewer reads the suggestion
    assert (seen["status"], seen["output"], seen["requester"]) == ("done", GOALS, "bob")
    assert seen["usage"] == {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150}
    assert refused(NotFound, lambda: service.get_job(principal("mallory"), done_id)).status == 404
    assert refused(NotFound, lambda: service.list_jobs(principal("mallory"), prd, status=None)).status == 404
    pending = service.list_jobs(principal("vera"), prd, status="pending")["items"]
    assert [j["jobId"] for j in pending] == [done_id] and pending[0]["output"] == GOALS
    everything = service.list_jobs(principal("vera"), prd, status=None)["items"]
    assert [j["jobId"] for j in everything] == [queued_id, done_id]  # newest first
    assert "output" not in everything[0]
