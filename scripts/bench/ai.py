"""AI drafting (issue #15): what the pipeline adds between the model and the person's screen.

A fresh local stack runs with the Bedrock provider pointed at the local Bedrock endpoint
(``scripts/localstack/bedrock.py``: the real event-stream wire format, parsed by botocore in the
worker), which emits a scripted answer at a fixed rate and records when it wrote each delta.  alice
is connected to the PRD by WebSocket (a real Yjs client) and asks for a draft; for every chunk:

* **overhead per chunk** = received by the WebSocket client - written by the model endpoint (both
  clocks are this machine's): botocore's parse, the worker's loop, the @connections post through the
  gateway, the client's read;
* **time to first chunk, excluding the model** = (first chunk received - request sent) - (the
  model's own time to its first delta): the API call, the queue, the worker's start, context build;
* **posts per chunk** = the worker's @connections posts / chunks (from the job's interaction record).

Each rate runs ``JOBS`` jobs of ``CHUNKS`` chunks on one warm stack (the first job of all is a
warm-up, not counted: it pays the functions' cold starts).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from scripts.bench.collab_calls import Api, bench_stack

RATES = (20, 100)  # chunks per second from the model
JOBS = 5
CHUNKS = 100


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _job(stack: Any, api: Api, fake: Any, client: Any, token: str, prd_id: str, rate: int) -> dict[str, Any]:
    from scripts.localstack.bedrock import Script

    fake.reset()
    fake.push(Script(chunks=[f"c{i} " for i in range(CHUNKS)], delay=1 / rate, usage=(1000, CHUNKS)))
    seen = len(fake.requests)
    sent = time.time()
    job_id = api.call("POST", f"/api/prds/{prd_id}/ai/jobs", {"prompt": "Draft the risks", "section": "Risks"},
                      token=token)["jobId"]
    deadline = time.monotonic() + 60
    while not any(f.get("job") == job_id and f.get("event") in ("done", "error") for f in list(client.ai)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} never finished")
        time.sleep(0.02)
    frames = [f for f in list(client.ai) if f.get("job") == job_id and f.get("event") == "chunk"]
    request = fake.requests[seen]
    emitted = request.delta_sent_at
    if len(frames) != CHUNKS or len(emitted) != CHUNKS:
        raise RuntimeError(f"job {job_id}: {len(frames)} chunks received, {len(emitted)} emitted")
    if [f["seq"] for f in frames] != list(range(1, CHUNKS + 1)):
        raise RuntimeError(f"job {job_id}: chunks out of order")
    overhead = [(f["_received_at"] - emitted[f["seq"] - 1]) * 1000 for f in frames]
    first = (frames[0]["_received_at"] - sent) * 1000 - (emitted[0] - request.received_at) * 1000
    record = _interaction(stack, prd_id, job_id)
    return {"overhead": overhead, "first": first, "posts": record["posts"] / max(1, record["chunks"])}


def _interaction(stack: Any, prd_id: str, job_id: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.moto_url, region_name=stack.manifest["region"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = stack.manifest["functions"]["AiWorkerFunction"]["environment"]["DOCUMENTS_BUCKET"]
    for _ in range(50):
        try:
            body = s3.get_object(Bucket=bucket, Key=f"ai/{prd_id}/{job_id}.json")["Body"].read()
            return dict(json.loads(body))
        except s3.exceptions.NoSuchKey:
            time.sleep(0.1)
    raise RuntimeError(f"no interaction record for {job_id}")


def run() -> dict[int, list[dict[str, Any]]]:
    from scripts.localstack.bedrock import serve_bedrock
    from tests.e2e.yclient import YClient

    results: dict[int, list[dict[str, Any]]] = {}
    with serve_bedrock() as fake, bench_stack(function_env={
            "AI_PROVIDER": "bedrock", "BEDROCK_ENDPOINT_URL": fake.url,
            "AI_MODEL_ID": "anthropic.claude-3-haiku-20240307-v1:0"}) as stack:
        api = Api(stack.base_url)
        token = api.login("alice")
        prd_id = api.call("POST", "/api/prds", {"title": "AI bench", "template": "standard"}, token=token)["id"]
        client = YClient(stack.ws_url, prd_id, token, name="alice").connect(timeout=30)
        try:
            _job(stack, api, fake, client, token, prd_id, RATES[0])  # warm-up: cold starts
            for rate in RATES:
                results[rate] = [_job(stack, api, fake, client, token, prd_id, rate) for _ in range(JOBS)]
        finally:
            client.close()
    return results


def report(results: dict[int, list[dict[str, Any]]]) -> str:
    lines = [f"{JOBS} jobs of {CHUNKS} chunks per rate, after one warm-up job; the Bedrock path (botocore's "
             "event-stream parser) against the local endpoint; one WebSocket client (the requester).\n",
             "| model emits | overhead per chunk p50 | p99 | max | time to first chunk (excl. model) median "
             "| posts per chunk |",
             "|---|---|---|---|---|---|"]
    for rate, jobs in results.items():
        overhead = [v for job in jobs for v in job["overhead"]]
        first = statistics.median(job["first"] for job in jobs)
        posts = statistics.mean(job["posts"] for job in jobs)
        lines.append(f"| {rate} chunks/s | {_percentile(overhead, 50):.1f} ms | {_percentile(overhead, 99):.1f} ms "
                     f"| {max(overhead):.1f} ms | {first:.0f} ms | {posts:.2f} |")
    return "\n".join(lines)


def main() -> str:
    return report(run())
