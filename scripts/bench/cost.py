"""Estimated AWS cost per 1,000,000 edits, from counted calls and measured durations (issue #3).

Inputs, all measured in the same invocation:
- per relayed edit (``collab_calls``, N = 2, 5, 10 peers): DynamoDB write and read units, posts
  (API Gateway messages), SQS sends, and the ``$default`` handler's duration (in-process p50);
- the write-queue consumer (``DocWriterFunction``: ``prdtool.collab.writer.save``), measured here on
  a PRD holding one 5-second bucket's worth of keystroke updates: its calls, units and duration.

Assumptions (stated in the output): every one of the N connected people types 5 edits/s; the write
queue delivers one message per PRD per 5 s bucket, so one compaction folds 25·N edits; each warm
``$default`` container sends at most one write-queue message per PRD per bucket (counted as N sends
per bucket: an upper bound, every connection on its own container); memory sizes from template.yaml.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

from scripts.bench.collab_calls import ROOT, SAMPLE_MARKDOWN, Api, ApiCounter, PeerResult, Tally, bench_stack, bind_to

PRICES_AS_OF = "the list prices quoted in issue #3 (us-east-1, on-demand; not re-checked from this machine, Nov 2026)"
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86_64
APIGW_PER_MESSAGE = 1.00 / 1e6  # WebSocket, first billion, per 32 KB
APIGW_PER_CONNECTION_MINUTE = 0.25 / 1e6
DDB_PER_WRU = 0.625 / 1e6
DDB_PER_RRU = 0.125 / 1e6
SQS_FIFO_PER_REQUEST = 0.50 / 1e6
EVENTBRIDGE_PER_EVENT = 1.00 / 1e6  # custom events (prd.updated per compaction)

EDITS_PER_SECOND_PER_EDITOR = 5
BUCKET_SECONDS = 5
CONSUMER_RUNS = 3
MILLION = 1_000_000


def memory_mb(function: str) -> int:
    """MemorySize of ``function`` in template.yaml (Globals' if the function sets none)."""
    text = (ROOT / "template.yaml").read_text()
    globals_match = re.search(r"^Globals:\n(?:  .*\n|\n)*?    MemorySize: (\d+)", text, re.MULTILINE)
    default = int(globals_match.group(1)) if globals_match else 128
    block = re.search(rf"^  {function}:\n((?:    .*\n|\n)*)", text, re.MULTILINE)
    if not block:
        raise ValueError(f"{function} is not in template.yaml")
    own = re.search(r"^      MemorySize: (\d+)", block.group(1), re.MULTILINE)
    return int(own.group(1)) if own else default


@dataclass
class Consumer:
    """One write-queue message's work: compaction of ``folded`` updates, metadata, prd.updated."""

    folded: int
    tally: Tally
    ms: float


def measure_consumer(stack: Any, updates: int, runs: int = CONSUMER_RUNS) -> Consumer:
    """``writer.save`` on a PRD (the sample PRD's text) holding ``updates`` new keystroke updates."""
    from pycrdt import Text

    from prdtool.collab import store, writer

    api = Api(stack.base_url)
    tallies: list[Tally] = []
    durations: list[float] = []
    folded = 0
    for run in range(runs):
        prd_id, _tokens = api.shared_prd(f"Consumer {run}", SAMPLE_MARKDOWN.read_text())
        with bind_to(stack, "DocWriterFunction"):
            doc = store.read(prd_id).doc
            text = doc.get("content", type=Text)
            for i in range(updates):
                before = doc.get_state()
                with doc.transaction():
                    text.insert(len(text), "abcdefghij"[i % 10])
                store.append_update(prd_id, doc.get_update(before), origin="alice")
            with ApiCounter() as counter:
                started = time.perf_counter()
                result = writer.save(prd_id)
                durations.append((time.perf_counter() - started) * 1000)
                tallies.append(counter.take())
            folded = int(result["folded"])
    return Consumer(folded, tallies[-1], statistics.median(durations))


@dataclass
class Estimate:
    peers: int
    default_ms: float
    lines: dict[str, float]  # component -> $ per 1M edits

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def bucket_edits(peers: int) -> int:
    """Edits one compaction folds: N people typing for one bucket."""
    return EDITS_PER_SECOND_PER_EDITOR * BUCKET_SECONDS * peers


def consumer_wru(consumer: Consumer) -> float:
    """Write units of one compaction; the counter prices every delete at 1 WRU, but deleting the old
    snapshot costs its size, about that of the new one."""
    snapshot = consumer.tally.wru_by_op.get("PutItem Docs", 1.0)
    return consumer.tally.wru + snapshot - 1


def estimate(result: PeerResult, consumer: Consumer, ws_mb: int, writer_mb: int) -> Estimate:
    n = result.peers
    edits = result.edits
    t = result.edit
    default_ms = statistics.median(result.edit_ms)
    buckets = MILLION / bucket_edits(n)
    c = consumer.tally
    lines = {
        "Lambda $default requests": MILLION * LAMBDA_PER_REQUEST,
        "Lambda $default duration": MILLION * (math.ceil(default_ms) / 1000) * (ws_mb / 1024) * LAMBDA_PER_GB_SECOND,
        "API Gateway messages (1 in + posts)": MILLION * (1 + t.gw_message_units / edits) * APIGW_PER_MESSAGE,
        "API Gateway connection-minutes": MILLION * (1 / (EDITS_PER_SECOND_PER_EDITOR * 60))
        * APIGW_PER_CONNECTION_MINUTE,
        "DynamoDB on the edit path": MILLION * (t.wru / edits * DDB_PER_WRU + t.rru / edits * DDB_PER_RRU),
        "SQS FIFO (N sends + receive + delete per bucket)": buckets * (n + 2) * SQS_FIFO_PER_REQUEST,
        "Lambda consumer (requests + duration)": buckets * (
            LAMBDA_PER_REQUEST
            + (math.ceil(consumer.ms) / 1000) * (writer_mb / 1024) * LAMBDA_PER_GB_SECOND),
        "DynamoDB in the consumer": buckets * (consumer_wru(consumer) * DDB_PER_WRU + c.rru * DDB_PER_RRU),
        "EventBridge prd.updated": buckets * c.count("events", "PutEvents") * EVENTBRIDGE_PER_EVENT,
    }
    return Estimate(n, default_ms, lines)


def run(stack: Any | None = None, calls: list[PeerResult] | None = None) -> tuple[list[Estimate], list[Consumer]]:
    from scripts.bench import collab_calls

    if stack is None:
        with bench_stack() as own:
            return run(own, calls)
    calls = calls or collab_calls.run(stack)
    consumers = [measure_consumer(stack, bucket_edits(r.peers)) for r in calls]
    ws_mb, writer_mb = memory_mb("WebSocketFunction"), memory_mb("DocWriterFunction")
    return [estimate(r, c, ws_mb, writer_mb) for r, c in zip(calls, consumers, strict=True)], consumers


def report(estimates: list[Estimate], consumers: list[Consumer]) -> str:
    ws_mb, writer_mb = memory_mb("WebSocketFunction"), memory_mb("DocWriterFunction")
    lines = [
        f"Prices: {PRICES_AS_OF}: Lambda $0.20 per 1M requests + $0.0000166667 per GB-s (x86_64); API Gateway "
        "WebSocket $1.00 per 1M messages (32 KB increments, first billion) + $0.25 per 1M connection-minutes; "
        "DynamoDB on-demand $0.625 per 1M WRU, $0.125 per 1M RRU; SQS FIFO $0.50 per 1M requests; EventBridge "
        "$1.00 per 1M custom events. S3 is not on these paths (only snapshots or updates over 350 KB go there).\n",
        f"Assumptions: every connected person types {EDITS_PER_SECOND_PER_EDITOR} edits/s; one compaction per PRD "
        f"per {BUCKET_SECONDS} s folds {EDITS_PER_SECOND_PER_EDITOR * BUCKET_SECONDS}·N edits; WebSocketFunction "
        f"{ws_mb} MB, DocWriterFunction {writer_mb} MB (template.yaml); `$default` duration = the in-process handler "
        "p50 measured by collab-calls against moto and the local gateway, billed per started ms; no ack requested.\n",
        "| $ per 1M edits | " + " | ".join(f"N = {e.peers}" for e in estimates) + " |",
        "|---|" + "---:|" * len(estimates),
    ]
    for component in estimates[0].lines:
        lines.append(f"| {component} | " + " | ".join(f"{e.lines[component]:.3f}" for e in estimates) + " |")
    lines.append("| **total** | " + " | ".join(f"**{e.total:.2f}**" for e in estimates) + " |")
    lines.append("| `$default` duration used (ms) | " + " | ".join(f"{e.default_ms:.0f}" for e in estimates) + " |")
    lines += [
        "",
        f"The consumer (`writer.save`, in-process against moto, median of {CONSUMER_RUNS} runs) on the sample PRD "
        "plus one bucket of keystroke updates: "
        + "; ".join(f"N={e.peers}: {c.folded} updates folded in {c.ms:.0f} ms, {consumer_wru(c):g} WRU "
                    f"({', '.join(f'{k} {v:g}' for k, v in sorted(c.tally.wru_by_op.items()))}; the old snapshot's "
                    f"delete priced as the new one), {c.tally.rru:g} RRU, calls: {c.tally.detail()}"
                    for e, c in zip(estimates, consumers, strict=True)) + ".",
        "",
        "Not included: CloudWatch Logs ingestion (Lambda's START/END/REPORT lines, ~$0.50/GB), X-Ray traces "
        "(the template sets `Tracing: Active`; $5.00 per 1M traces recorded, with the default sampling of 1/s plus "
        "5% of the rest per function), CloudWatch metrics, data transfer out, and the Lambda poller's empty SQS "
        "receives (a fixed few $ cents a month per queue, not per edit).",
    ]
    return "\n".join(lines)


def main(stack: Any | None = None, calls: list[PeerResult] | None = None) -> str:
    return report(*run(stack, calls))


if __name__ == "__main__":
    print(main())
