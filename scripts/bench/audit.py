"""Audit trail costs (issue #5): the overhead ``record()`` adds to each audited request, and the
writer's throughput.

Both run the real ``prdtool.audit`` code in this process against the local stack's moto server,
with ``AuditWriterFunction``'s environment, while the stack runs as usual (its SQS poller drains the
audit queue into the writer, so the queue stays as shallow as in AWS; moto's ``SendMessage`` slows
down linearly with queue depth — 6 ms empty, 35 ms at 2,000 messages, measured here — real SQS
does not):

* **overhead per request** — one ``record()`` = redact + JSON + one SQS ``SendMessage``, timed over
  N calls with a realistic body; plus redaction alone, to show where the time goes;
* **writer throughput** — ``writer.write_entries`` on batches of 100 entries of one date partition
  (the batch size of the SQS event source): idempotency read, one conditional S3 put, chain head
  update, 300 index items; entries/s and ms per batch, and the compressed bytes per entry.

    python -m scripts.bench.audit [--calls 500] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "shared") not in sys.path:
    sys.path.insert(0, str(ROOT / "shared"))

BATCH = 100
BODY = {"title": "Checkout redesign, second pass", "status": "in_review",
        "markdown": "# Checkout\n\n## Goals\n\n" + "Make paying faster for returning customers. " * 12,
        "password": "not-stored", "nested": {"refresh_token": "not-stored-either", "tags": ["q3", "payments"]}}


def _entry(n: int, at: int) -> Any:
    from prdtool.audit.recorder import AuditEntry
    from prdtool.ids import ulid

    return AuditEntry(id=ulid(at), at=at, actor=f"user{n % 20}", action="PATCH /api/prds/{id}",
                      resource=f"prd/01jd{n % 50:022d}", status=200, duration_ms=23, ip="203.0.113.7",
                      user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                      path="/api/prds/01jd0000000000000000000000",
                      request_id=f"JKJaXmPLvHcESHA={n}", changes=BODY)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_record(calls: int) -> dict[str, float]:
    """ms per ``record()`` (mean, p50, p99), per bare ``SendMessage`` of the same body, and µs per redaction."""
    from prdtool.audit.recorder import record, sanitise
    from prdtool.aws import client
    from prdtool.settings import get_settings

    now = int(time.time() * 1000)
    for n in range(20):  # warm the client and its connection
        record(_entry(n, now))
    # Interleaved with bare sends of the same (sanitised) body, so both see the same load.
    samples, bare = [], []
    sqs, queue_url = client("sqs"), get_settings().audit_queue_url
    for n in range(calls):
        entry = _entry(n, now + n)
        started = time.perf_counter()
        record(entry)
        samples.append((time.perf_counter() - started) * 1000)
        body = json.dumps(sanitise(_entry(n, now + calls + n)).to_dict())
        started = time.perf_counter()
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        bare.append((time.perf_counter() - started) * 1000)
    entry = _entry(0, now)
    started = time.perf_counter()
    for _ in range(2000):
        sanitise(entry)
    redact_us = (time.perf_counter() - started) / 2000 * 1e6
    return {"mean": statistics.fmean(samples), "p50": _percentile(samples, 0.5), "p99": _percentile(samples, 0.99),
            "redact_us": redact_us, "bare_p50": _percentile(bare, 0.5)}


def measure_writer(batches: int) -> dict[str, float]:
    """Entries/s and ms per batch of 100 for ``writer.write_entries`` on one partition.

    The stack's own writer appends the ``record()`` entries to the same partition meanwhile, so
    some batches lose the race for an object and chain after the winner, as in AWS.
    """
    from prdtool.audit import chain, writer
    from prdtool.aws import client
    from prdtool.settings import get_settings

    base = int(time.time() * 1000)
    writer.write_entries([_entry(n, base + n) for n in range(BATCH)])  # warm-up batch
    samples, written = [], []
    for b in range(1, batches + 1):
        entries = [_entry(n, base + b * BATCH + n) for n in range(BATCH)]
        started = time.perf_counter()
        outcome = writer.write_entries(entries)
        samples.append((time.perf_counter() - started) * 1000)
        assert outcome.appended == BATCH and not outcome.failed_ids, outcome
        written.extend(outcome.objects)
    s3, bucket = client("s3"), get_settings().audit_bucket
    bodies = [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in written]
    raw_bytes = sum(len(chain.canonical(item)) + 1 for body in bodies for item in chain.decode(body))
    stored_bytes = sum(len(body) for body in bodies)
    return {"batch_ms": statistics.fmean(samples), "batch_p99_ms": _percentile(samples, 0.99),
            "entries_per_s": BATCH / (statistics.fmean(samples) / 1000),
            "bytes_per_entry": stored_bytes / (BATCH * batches), "ratio": raw_bytes / stored_bytes}


def run(stack: Any, calls: int = 500, batches: int = 20) -> dict[str, dict[str, float]]:
    """Both measures against a running local stack (``collab_calls.bench_stack``)."""
    from .collab_calls import bind_to

    with bind_to(stack, "AuditWriterFunction"):
        return {"record": measure_record(calls), "writer": measure_writer(batches)}


def report(results: dict[str, dict[str, float]], calls: int = 500, batches: int = 20) -> str:
    rec, wr = results["record"], results["writer"]
    return "\n".join([
        f"Against the local stack's moto server; {calls} `record()` calls, {batches} batches of {BATCH}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `record()` per audited request (redact + 1 SQS SendMessage), mean | {rec['mean']:.2f} ms |",
        f"| `record()` p50 / p99 | {rec['p50']:.2f} / {rec['p99']:.2f} ms |",
        f"| a bare SendMessage of the same body (moto's own cost), p50 | {rec['bare_p50']:.2f} ms |",
        f"| redaction of a ~700-byte body | {rec['redact_us']:.0f} µs |",
        f"| writer: one batch of {BATCH} (dedupe read, 1 S3 put, head, {3 * BATCH} index items), mean | "
        f"{wr['batch_ms']:.0f} ms (p99 {wr['batch_p99_ms']:.0f} ms) |",
        f"| writer throughput, one partition | {wr['entries_per_s']:.0f} entries/s |",
        f"| stored size (gzip JSON lines) | {wr['bytes_per_entry']:.0f} bytes/entry ({wr['ratio']:.1f}x smaller) |",
        "",
    ])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    from .collab_calls import bench_stack

    with bench_stack(seed=False) as stack:
        return report(run(stack, args.calls, args.batches), args.calls, args.batches)


if __name__ == "__main__":
    print(main())
