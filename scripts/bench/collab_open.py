"""Document open cost against history length, before and after compaction (issue #3).

For each history length H, one pycrdt ``Doc`` types H keystrokes (one transaction each, mostly at
the end of the text, a newline now and then); each transaction's update is stored as its own
``upd#<hash>`` item (``store.update_key``) in the stack's DocsTable with pynamodb batch writes
through prdtool's ``DocItem`` model, on top of a head and a snapshot made by ``store.create``.
Then ``store.read()`` (what sync step 1 does to open a document) is timed and its DynamoDB calls
counted, ``store.compact()`` folds the history into a snapshot, and ``store.read()`` is measured
again.  Everything runs against moto, which is far slower per item than DynamoDB: the times are
for comparing lengths with each other, not a prediction of AWS latency.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from scripts.bench.collab_calls import ApiCounter, Tally, bench_stack, bind_to

# Long histories are slow here for two reasons: moto answers a Query in ~1.2 ms per item returned
# (it scans and serialises the whole table for every page), and pycrdt applies updates that arrive
# out of causal order (the store returns them in content-hash order) in quadratic time (15.8 s for
# 30,000, against 0.1 s in typing order).  30,000 takes ~2 min; 100,000 did not finish within
# 25 minutes on 2 cores.  `make bench` stops at 10,000; `--history 30000` (or more) runs the rest.
HISTORY_LENGTHS = (100, 1_000, 10_000)
READS = 3  # timed reads per state (median reported); histories of 10,000 and more are read once
WRITERS = 4  # concurrent batch writers while loading the history into moto
# prdtool's DocItem gives each DynamoDB call a 5 s read timeout; one 1 MB Query page from moto
# (~8,000 updates) takes ~10 s, so the benchmark lifts it (DynamoDB itself answers in milliseconds).
MOTO_READ_TIMEOUT_SECONDS = 900


@dataclass
class OpenResult:
    history: int
    update_bytes: float  # mean size of one stored update
    load_s: float  # writing the history into moto (setup, not part of the measurement)
    read_ms: float
    read: Tally
    reads: int
    compact_ms: float
    compact: Tally
    folded: int
    snapshot_bytes: int
    after_ms: float
    after: Tally
    after_reads: int
    typed_chars: int
    read_chars: int  # characters of the text store.read() returned before compaction (typing only inserts)
    after_chars: int  # ... and after
    read_exact: bool  # that text is exactly the typed one
    after_exact: bool


def typed_updates(count: int, seed: int = 7) -> tuple[list[bytes], str]:
    """``count`` keystroke updates from one Doc typing, and the text they make."""
    from pycrdt import Doc, Text

    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for length in range(count):
        # Mostly at the end; now and then the cursor moves back (5%).
        position = rng.randrange(length) if length and rng.random() < 0.05 else length
        char = "\n" if length % 60 == 59 else rng.choice("abcdefghijklmnopqrstuvwxyz  ")
        with doc.transaction():
            text.insert(position, char)
    return updates, str(text)


def store_history(prd_id: str, updates: list[bytes]) -> None:
    """Write ``updates`` as DocItems (keys as ``store.update_key``) with batch writes, a few writers at once."""
    from prdtool.collab.store import DocItem, update_key

    def write(chunk: list[bytes]) -> None:
        with DocItem.batch_write() as batch:
            for update in chunk:
                batch.save(DocItem(prd_id=prd_id, sk=update_key(update), data=update, origin="bench"))

    size = max(25, len(updates) // (WRITERS * 8))
    chunks = [updates[i:i + size] for i in range(0, len(updates), size)]
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(write, chunks))


def _timed_reads(prd_id: str, times: int) -> tuple[float, Tally, str]:
    from prdtool.collab import document, store

    durations = []
    text = ""
    with ApiCounter() as counter:
        for _ in range(times):
            started = time.perf_counter()
            stored = store.read(prd_id)
            durations.append((time.perf_counter() - started) * 1000)
            text = document.markdown_of(stored.doc)
        tally = counter.take()
    return statistics.median(durations), tally, text


@contextlib.contextmanager
def _patient(model: Any) -> Iterator[None]:
    saved = model.Meta.read_timeout_seconds
    model.Meta.read_timeout_seconds = MOTO_READ_TIMEOUT_SECONDS
    model._connection = None
    try:
        yield
    finally:
        model.Meta.read_timeout_seconds = saved
        model._connection = None


def measure(stack: Any, history: int) -> OpenResult:
    from prdtool.collab import document, store
    from prdtool.collab.store import DocItem
    from prdtool.ids import ulid

    updates, expected = typed_updates(history)
    with bind_to(stack, "DocWriterFunction"), _patient(DocItem):
        prd_id = f"bench{ulid()}"
        store.create(prd_id, document.new_document("", {"title": f"{history} updates"}), origin="bench")
        started = time.perf_counter()
        store_history(prd_id, updates)
        load_s = time.perf_counter() - started
        reads = READS if history < 10_000 else 1
        read_ms, read, before = _timed_reads(prd_id, reads)
        with ApiCounter() as counter:
            started = time.perf_counter()
            compaction = store.compact(prd_id)
            compact_ms = (time.perf_counter() - started) * 1000
            compact = counter.take()
        after_ms, after, text = _timed_reads(prd_id, READS)
    return OpenResult(history, statistics.mean(len(u) for u in updates), load_s, read_ms, read, reads, compact_ms,
                      compact, compaction.folded, compaction.snapshot_bytes, after_ms, after, READS, len(expected),
                      len(before), len(text), before == expected, text == expected)


def run(stack: Any | None = None, lengths: tuple[int, ...] = HISTORY_LENGTHS) -> list[OpenResult]:
    if stack is None:
        with bench_stack(seed=False) as own:
            return run(own, lengths)
    return [measure(stack, n) for n in lengths]


def _calls(tally: Tally, per: int) -> str:
    return ", ".join(f"{op} x{n / per:g}" for (_s, op, _r), n in sorted(tally.calls.items())) or "none"


def report(results: list[OpenResult]) -> str:
    lines = [
        "| stored updates | `store.read()` ms | its DynamoDB calls | RRU | `store.compact()` ms | compact calls "
        "| snapshot bytes | read after compaction ms | its calls | RRU after |",
        "|---:|---:|---|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.history:,} | {r.read_ms:,.0f} | {_calls(r.read, r.reads)} | {r.read.rru / r.reads:,.0f} | "
            f"{r.compact_ms:,.0f} | {_calls(r.compact, 1)} | {r.snapshot_bytes:,} | {r.after_ms:,.1f} | "
            f"{_calls(r.after, r.after_reads)} | {r.after.rru / r.after_reads:g} |")
    notes = [f"{r.history:,}: mean update {r.update_bytes:.0f} B, loaded into moto in {r.load_s:.0f} s "
             f"({1000 * r.load_s / r.history:.2f} ms/item), folded {r.folded:,}" for r in results]
    lines += ["", "Setup: " + "; ".join(notes) + ".", "",
              "Content check (characters typed → characters in the text `store.read()` returned before → after "
              "compaction; the typing only inserts, so fewer is lost content): "
              + "; ".join(f"{r.history:,}: {r.typed_chars:,} → {r.read_chars:,}{'' if r.read_exact else ' ✗'} → "
                          f"{r.after_chars:,}{'' if r.after_exact else ' ✗'}" for r in results) + "."]
    return "\n".join(lines)


def main() -> str:
    return report(run())


if __name__ == "__main__":
    print(main())
