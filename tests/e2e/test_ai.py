"""AI drafting on the local stack (issue #15): real handlers, the real Bedrock path (boto3's
ConverseStream against a local endpoint speaking Bedrock's event-stream wire format), real Yjs
clients receiving the chunks and the approved edit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.localstack.bedrock import FakeBedrock, Script
from tests.e2e.yclient import YClient
from tests.integration.fixtures import Api

RISKS = ["- **Vendor lock-in:** the payment ", "provider may change ", "its terms.\n",
         "- **Peak load:** Black Friday ", "traffic doubles — ", "plan capacity early."]


@pytest.fixture
def bedrock(fake_bedrock: FakeBedrock) -> Iterator[FakeBedrock]:
    fake_bedrock.reset()
    yield fake_bedrock
    fake_bedrock.reset()  # the next test starts from the echo


def wait_job(api: Api, job_id: str, *, until: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/ai/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"the job never got there: {job}")
        time.sleep(0.1)


def finished(job: dict[str, Any]) -> bool:
    return job["status"] not in ("queued", "running")


def ask(api: Api, prd_id: str, **body: Any) -> str:
    response = api.post(f"/api/prds/{prd_id}/ai/jobs", {"prompt": "Write it", "mode": "draft", **body})
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


def ai_frames(client: YClient, job_id: str) -> list[dict[str, Any]]:
    return [f for f in list(client.ai) if f.get("job") == job_id]


def test_a_draft_streams_to_its_requester_is_pending_for_others_and_lands_verbatim_when_approved(
        alice: Api, bob: Api, prd: dict[str, Any], client_factory: Callable[..., YClient],
        bedrock: FakeBedrock) -> None:
    bedrock.push(Script(chunks=RISKS, delay=0.03, usage=(812, 41)))
    alice_ws, bob_ws = client_factory("alice"), client_factory("bob")
    job_id = ask(alice, prd["id"], prompt="Draft the risks of the checkout launch", section="Risks")

    alice_ws.wait_until(lambda: any(f["event"] == "done" for f in ai_frames(alice_ws, job_id)), what="done")
    frames = ai_frames(alice_ws, job_id)
    chunks = [f for f in frames if f["event"] == "chunk"]
    assert [f["seq"] for f in chunks] == list(range(1, len(RISKS) + 1))  # in order, none lost
    assert "".join(f["text"] for f in chunks) == "".join(RISKS)
    assert frames[-1]["event"] == "done" and frames[-1]["usage"]["inputTokens"] == 812
    assert not ai_frames(bob_ws, job_id), "chunks go to the requester only"
    bob_ws.wait_until(lambda: any(n.get("type") == "ai-suggestion" and n.get("job") == job_id
                                  and n.get("status") == "pending" for n in bob_ws.notices), what="pending notice")
    pending = bob.get(f"/api/prds/{prd['id']}/ai/jobs?status=pending").json()["items"]
    assert [j["jobId"] for j in pending] == [job_id] and pending[0]["output"] == "".join(RISKS)
    assert "Vendor lock-in" not in alice_ws.content(), "nothing is applied before approval"
    request = bedrock.requests[-1]
    assert request.operation == "ConverseStream" and "Draft the risks" in str(request.body)

    approved = alice.post(f"/api/ai/jobs/{job_id}/approve")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved" and body["version"] and body["decidedBy"] == "alice"
    for client in (alice_ws, bob_ws):
        client.wait_until(lambda: "".join(RISKS) in client.content(), what="the approved text")  # noqa: B023
        assert "## Risks\n\n" + "".join(RISKS) in client.content()
    versions = alice.get(f"/api/prds/{prd['id']}/versions").json()["items"]
    newest = versions[0]
    assert newest["version"] == body["version"] and job_id in (newest.get("message") or "")
    assert "alice" in newest["message"] and newest["summary"].startswith("AI draft")
    again = alice.post(f"/api/ai/jobs/{job_id}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"


def test_bad_requests_get_clear_errors(alice: Api, bob: Api, carol: Api, dave: Api, prd: dict[str, Any],
                                       bedrock: FakeBedrock) -> None:
    path = f"/api/prds/{prd['id']}/ai/jobs"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"prompt": "", "section": "Risks"}, 422, "validation_error"),
        ({"prompt": "   ", "section": "Risks"}, 422, "empty_prompt"),
        ({"prompt": "x" * 5000, "section": "Risks"}, 413, "prompt_too_large"),
        ({"prompt": "Write", "section": "Pricing and packaging"}, 422, "unknown_section"),
        ({"prompt": "Write", "section": "Risks", "mode": "poem"}, 422, "unknown_mode"),
        ({"prompt": "Write", "mode": "rewrite", "section": "Risks"}, 422, "unknown_section"),  # absent: no rewrite
        ({"prompt": "Write", "mode": "draft"}, 422, "unknown_section"),
        ({"prompt": "Write", "section": "Risks", "extra": 1}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = alice.post(path, {"mode": "draft", **body})
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (body, response.text)
    assert carol.post(path, {"prompt": "Write", "section": "Risks"}).status_code == 403  # a viewer
    assert dave.post(path, {"prompt": "Write", "section": "Risks"}).status_code == 404  # not a member
    assert alice.post(path, data="{not json", headers={"content-type": "application/json"}).status_code == 400

    job_id = ask(alice, prd["id"], section="Risks")
    wait_job(alice, job_id, until=finished)
    assert dave.get(f"/api/ai/jobs/{job_id}").status_code == 404  # another PRD's job does not exist
    assert bob.get(f"/api/ai/jobs/{job_id}").status_code == 200  # a collaborator may read it
    for action in ("approve", "reject", "cancel"):
        refused = bob.post(f"/api/ai/jobs/{job_id}/{action}")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_job", action
        assert dave.post(f"/api/ai/jobs/{job_id}/{action}").status_code == 404
    assert alice.get("/api/ai/jobs/not-a-job").status_code == 404
    assert alice.get("/api/ai/jobs/01jd0000000000000000000000").status_code == 404
    assert alice.post(f"/api/ai/jobs/{job_id}/cancel").status_code == 409  # finished: nothing to cancel
    assert alice.post(f"/api/ai/jobs/{job_id}/reject").json()["status"] == "rejected"
    assert alice.post(f"/api/ai/jobs/{job_id}/approve").status_code == 409
    assert alice.post(f"/api/ai/jobs/{job_id}/reject").status_code == 409


def test_approving_after_the_section_was_deleted_or_edited_is_a_conflict_that_changes_nothing(
        alice: Api, prd: dict[str, Any], client_factory: Callable[..., YClient], bedrock: FakeBedrock) -> None:
    writer = client_factory("alice")
    writer.append("## Goals\n\nShip a faster checkout.\n\n## Scope\n\nWeb only.\n")
    writer.flush()
    bedrock.push(Script(chunks=["Ship a checkout ", "that is twice as fast."]))
    job_id = ask(alice, prd["id"], mode="rewrite", section="Goals", prompt="Sharpen the goals")
    assert wait_job(alice, job_id, until=finished)["status"] == "done"
    text = writer.content()
    start = text.index("## Goals")
    writer.delete(start, text.index("## Scope") - start)  # someone deletes the section meanwhile
    writer.flush()
    before = alice.get(f"/api/prds/{prd['id']}").json()["markdown"]
    refused = alice.post(f"/api/ai/jobs/{job_id}/approve")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "section_conflict" and "'Goals' was deleted" in error["message"]
    assert alice.get(f"/api/prds/{prd['id']}").json()["markdown"] == before
    assert alice.get(f"/api/ai/jobs/{job_id}").json()["status"] == "done"  # still decidable: reject it

    bedrock.push(Script(chunks=["Web and mobile ", "apps."]))
    second = ask(alice, prd["id"], mode="expand", section="Scope", prompt="More")
    wait_job(alice, second, until=finished)
    writer.append("More scope, typed by hand.\n")  # the section is edited after the model read it
    writer.flush()
    edited = alice.post(f"/api/ai/jobs/{second}/approve")
    assert edited.status_code == 409 and "'Scope' was edited" in edited.json()["error"]["message"]


def test_cancel_stops_the_stream_at_the_model(alice: Api, prd: dict[str, Any],
                                               client_factory: Callable[..., YClient], bedrock: FakeBedrock) -> None:
    watcher = client_factory("alice")
    bedrock.push(Script(chunks=[f"word{i} " for i in range(400)], delay=0.05))
    job_id = ask(alice, prd["id"], section="Risks")
    watcher.wait_until(lambda: len(ai_frames(watcher, job_id)) >= 3, what="first chunks")
    cancelled = alice.post(f"/api/ai/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    request = bedrock.requests[-1]
    assert request.finished.wait(10) and request.outcome == "client_gone"  # the stream was closed
    watcher.wait_until(lambda: any(f["event"] == "error" and f.get("code") == "cancelled"
                                   for f in ai_frames(watcher, job_id)), what="cancelled frame")
    count = len(ai_frames(watcher, job_id))
    time.sleep(0.5)
    assert len(ai_frames(watcher, job_id)) == count and count < 100
    assert alice.get(f"/api/ai/jobs/{job_id}").json()["status"] == "cancelled"
    assert alice.post(f"/api/ai/jobs/{job_id}/approve").status_code == 409


def test_throttling_is_retried_and_a_mid_stream_failure_is_reported_clearly(
        alice: Api, prd: dict[str, Any], client_factory: Callable[..., YClient], bedrock: FakeBedrock) -> None:
    watcher = client_factory("alice")
    seen = len(bedrock.requests)
    bedrock.push(Script(http_error=(429, "ThrottlingException")), Script(chunks=["Fine ", "now."]))
    job_id = ask(alice, prd["id"], section="Risks")
    job = wait_job(alice, job_id, until=finished)
    assert job["status"] == "done" and job["output"] == "Fine now." and len(bedrock.requests) - seen == 2

    bedrock.push(Script(chunks=["Half ", "an ", "answer"], fail_after=2))
    failing = ask(alice, prd["id"], section="Risks")
    job = wait_job(alice, failing, until=finished)
    assert job["status"] == "failed" and job["error"]["code"] == "throttled"
    assert "busy" in job["error"]["message"] and job["output"] == "Half an "  # what came is kept
    watcher.wait_until(lambda: any(f["event"] == "error" for f in ai_frames(watcher, failing)), what="error frame")
    assert alice.post(f"/api/ai/jobs/{failing}/approve").status_code == 409


def test_a_requester_who_loses_the_connection_gets_the_whole_answer_from_the_job(
        alice: Api, prd: dict[str, Any], client_factory: Callable[..., YClient], bedrock: FakeBedrock) -> None:
    words = [f"w{i} " for i in range(40)]
    bedrock.push(Script(chunks=words, delay=0.05))
    first = client_factory("alice")
    job_id = ask(alice, prd["id"], section="Risks")
    first.wait_until(lambda: len(ai_frames(first, job_id)) >= 2, what="first chunks")
    first.close()  # the laptop lid closes mid-stream
    job = wait_job(alice, job_id, until=finished)
    assert job["status"] == "done" and job["output"] == "".join(words) and job["seq"] == len(words)


def test_a_prd_runs_a_bounded_number_of_jobs_at_once(alice: Api, bob: Api, prd: dict[str, Any],
                                                      bedrock: FakeBedrock) -> None:
    bedrock.push(Script(chunks=[f"x{i} " for i in range(200)], delay=0.05))
    running = [ask(alice, prd["id"], section="Risks"), ask(bob, prd["id"], section="Goals")]
    refused = alice.post(f"/api/prds/{prd['id']}/ai/jobs", {"prompt": "More", "section": "Risks"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_ai_jobs"
    assert refused.headers["Retry-After"] == "10"
    assert alice.post(f"/api/ai/jobs/{running[0]}/cancel").status_code == 200
    assert bob.post(f"/api/ai/jobs/{running[1]}/cancel").status_code == 200
    bedrock.push(Script(chunks=["ok"]))
    assert wait_job(alice, ask(alice, prd["id"], section="Risks"), until=finished)["status"] == "done"


def test_fill_gaps_drafts_the_missing_sections_and_approval_adds_them_in_order(
        alice: Api, bedrock: FakeBedrock) -> None:
    created = alice.post("/api/prds", {"title": "Loyalty", "template": "standard"})
    assert created.status_code == 201
    prd_id = created.json()["id"]
    bedrock.push(Script(chunks=["## Risks\n\n- Members ", "may churn.\n\n", "## Timeline\n\n- Beta in Q3.\n"]))
    job_id = ask(alice, prd_id, mode="fill-gaps", prompt="Fill what is missing")
    job = wait_job(alice, job_id, until=finished)
    assert job["status"] == "done", job
    approved = alice.post(f"/api/ai/jobs/{job_id}/approve")
    assert approved.status_code == 200, approved.text
    markdown = alice.get(f"/api/prds/{prd_id}").json()["markdown"]
    assert "- Members may churn.\n" in markdown and "- Beta in Q3.\n" in markdown
    assert markdown.index("## Success metrics") < markdown.index("## Risks") < markdown.index("## Timeline") \
        < markdown.index("## Open questions")
