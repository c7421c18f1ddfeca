"""Imports and exports (issue #16): time and peak memory for 10-, 50- and 200-page documents.

The documents are generated PRDs (not timed): a title, an intro, then the standard sections
(Overview, Problem, Target users, Goals, Non-goals, User stories, Requirements, Success metrics,
Risks and mitigations, Timeline, Open questions), each with ``###`` subsections of paragraphs (some
bold and inline code), bullet and numbered lists, a table now and then and the odd code block —
``WORDS_PER_PAGE`` words of text per page, a fixed random seed, so every run sees the same bytes.
One structure is written out four ways:

* **Markdown**: as written;
* **HTML**: the product's HTML exporter (``prdtool.exports.render.render(…, "html")``);
* **PDF**: the product's PDF exporter (Typst); its real page count (pypdf) is in the table;
* **Word**: python-docx from its default template, as a person's Word file would be (``Title``,
  ``Heading 1``/``Heading 2``, ``List Bullet``/``List Number``, ``Table Grid``, code in Courier New
  runs) — not the product's own Word exporter.

**Import** is the import worker's pipeline without its AWS calls (``prdtool.imports.worker.convert``:
the upload-size check (``IMPORT_UPLOAD_MAX_BYTES``), ``sniff.detect``, ``extract.extract`` and
``mapping.map_sections(…).to_report_json()``).  A refusal by a cap is
reported as such, with the time it took to refuse.  **Export** is
``prdtool.exports.render.render(markdown, fmt, meta=…)`` of the same PRD's Markdown, as the export
worker calls it.

Each (operation, format, size) runs in a **fresh interpreter** (this module run as a subprocess),
one after the other.  There, the operation first runs once on a one-page document of the same
format (every lazy import and cache is warm), then:

1. **peak RSS growth**: the kernel's high-water mark of the process's resident memory (``VmHWM``,
   which ``ru_maxrss`` reports), reset just before the call (``/proc/self/clear_refs``; without it,
   ``ru_maxrss`` after - ``ru_maxrss`` before) minus ``VmRSS`` before the call: all memory, Python
   objects and native code (lxml, nh3, zlib, Typst's compiler …) alike.  Memory the warm-up
   freed and the call reuses does not show here;
2. **time**: the first call on the real document is the warm-up; then the median of ``RUNS`` runs
   (``time.perf_counter``), or one run when the warm-up took over ``SLOW`` seconds;
3. **Python peak**: ``tracemalloc``'s peak during one more run (Python allocations only: what native
   code allocates on its own is not seen; tracemalloc slows that run, which is not timed).

Last, on a fresh local stack, the ``STACK_PAGES``-page ``STACK_FORMAT`` document is imported through
the API as a person's browser would (``POST /api/imports``, multipart) ``1 + STACK_IMPORTS`` times;
the time runs from sending the POST to the importer's ``import.done`` notice arriving on its
WebSocket (a YClient connected to another PRD), the first import (cold starts) shown apart.  Next to
the pipeline's time it shows what the queue, the worker and the PRD's creation add.
"""

from __future__ import annotations

import gc
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "shared") not in sys.path:
    sys.path.insert(0, str(ROOT / "shared"))

SIZES = (10, 50, 200)  # pages
WORDS_PER_PAGE = 500
IMPORT_FORMATS = ("docx", "pdf", "markdown", "html")
EXPORT_FORMATS = ("markdown", "html", "docx", "pdf")
RUNS = 3
SLOW = 1.5  # seconds: an operation slower than this is timed by one run after the warm-up
SEED = 16
STACK_PAGES, STACK_FORMAT, STACK_IMPORTS = 50, "docx", 5  # the import through the local stack
EXTENSIONS = {"docx": "docx", "pdf": "pdf", "markdown": "md", "html": "html"}

SECTIONS = ("Overview", "Problem", "Target users", "Goals", "Non-goals", "User stories", "Requirements",
            "Success metrics", "Risks and mitigations", "Timeline", "Open questions")
_VOCABULARY = (
    "the checkout flow customer cart payment order account team release latency error rate session mobile web "
    "user feature flag rollout metric conversion dashboard admin report export import search filter page "
    "request response service queue retry timeout budget owner review approval policy audit data privacy "
    "consent region store inventory shipping address invoice refund discount coupon loyalty tier support "
    "ticket agent chat email notification reminder onboarding trial plan upgrade billing partner integration "
    "api webhook event schema version migration backfill index cache storage cost quarter milestone launch "
    "experiment cohort baseline target increase reduce improve measure track ensure allow prevent support "
    "must should could will when if because so that with without for every each new existing current "
    "weekly daily first second third most many few some all any fast slow simple clear reliable secure"
)
_WORDS = tuple(_VOCABULARY.split())
_CODE = ('{\n  "event": "checkout.completed",\n  "orderId": "ord_123",\n  "amount": 4999,\n'
         '  "currency": "EUR",\n  "experiment": "one-page-checkout"\n}')


# ----------------------------------------------------------------------------- the documents
@dataclass(frozen=True)
class Block:
    kind: str  # "h" (level in ``level``), "p", "ul", "ol", "table", "code"
    text: str = ""
    level: int = 0
    items: tuple[tuple[str, ...], ...] = ()  # list items (1-tuples) or table rows


def _sentence(rng: random.Random, low: int = 8, high: int = 22) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + "."


def blocks(pages: int) -> list[Block]:
    """The PRD as blocks: about ``pages`` x ``WORDS_PER_PAGE`` words of text."""
    rng = random.Random(SEED + pages)
    out = [Block("h", "Checkout redesign", 1), Block("p", " ".join(_sentence(rng) for _ in range(4)))]
    per_section = pages * WORDS_PER_PAGE // len(SECTIONS)
    for section in SECTIONS:
        out.append(Block("h", section, 2))
        words = 0
        sub = 0
        while words < per_section:
            if words >= sub * 400:
                sub += 1
                out.append(Block("h", f"{section} {sub}: " + " ".join(rng.choice(_WORDS) for _ in range(3)), 3))
            roll = rng.random()
            if roll < 0.55:
                text = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
                block = Block("p", text)
                words += len(text.split())
            elif roll < 0.8:
                items = tuple((_sentence(rng, 5, 14),) for _ in range(rng.randint(3, 6)))
                block = Block("ul" if roll < 0.7 else "ol", items=items)
                words += sum(len(i[0].split()) for i in items)
            elif roll < 0.95:
                rows = (("Item", "Owner", "Target", "Notes"), *(
                    (f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}", rng.choice(("alice", "bob", "carol")),
                     f"{rng.randint(1, 99)}%", _sentence(rng, 4, 9)) for _ in range(rng.randint(3, 6))))
                block = Block("table", items=rows)
                words += sum(len(" ".join(row).split()) for row in rows)
            else:
                block = Block("code", _CODE)
                words += len(_CODE.split())
            out.append(block)
    return out


def _inline_md(text: str, index: int) -> str:
    """A little inline formatting, as PRDs have: a bold phrase, an inline code span."""
    words = text.split(" ")
    if index % 3 == 0 and len(words) > 6:
        words[2] = f"**{words[2]} {words[3]}**"
        del words[3]
    if index % 5 == 0 and len(words) > 8:
        words[6] = f"`{words[6]}`"
    return " ".join(words)


def to_markdown(doc: list[Block]) -> str:
    parts: list[str] = []
    for index, block in enumerate(doc):
        if block.kind == "h":
            parts.append("#" * block.level + " " + block.text)
        elif block.kind == "p":
            parts.append(_inline_md(block.text, index))
        elif block.kind in ("ul", "ol"):
            parts.append("\n".join(("- " if block.kind == "ul" else f"{n}. ") + item[0]
                                   for n, item in enumerate(block.items, 1)))
        elif block.kind == "table":
            head, *rows = block.items
            parts.append("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                   + ["| " + " | ".join(row) + " |" for row in rows]))
        else:
            parts.append(f"```json\n{block.text}\n```")
    return "\n\n".join(parts) + "\n"


def to_docx(doc: list[Block]) -> bytes:
    import docx
    from docx.shared import Pt

    word = docx.Document()
    for index, block in enumerate(doc):
        if block.kind == "h":
            if block.level == 1:
                word.add_paragraph(block.text, style="Title")
            else:
                word.add_heading(block.text, level=block.level - 1)
        elif block.kind == "p":
            paragraph = word.add_paragraph()
            words = block.text.split(" ")
            if index % 3 == 0 and len(words) > 6:
                paragraph.add_run(" ".join(words[:2]) + " ")
                paragraph.add_run(" ".join(words[2:4]) + " ").bold = True
                paragraph.add_run(" ".join(words[4:]))
            else:
                paragraph.add_run(block.text)
        elif block.kind in ("ul", "ol"):
            for item in block.items:
                word.add_paragraph(item[0], style="List Bullet" if block.kind == "ul" else "List Number")
        elif block.kind == "table":
            table = word.add_table(rows=len(block.items), cols=len(block.items[0]))
            table.style = "Table Grid"
            for row, values in zip(table.rows, block.items, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
        else:
            paragraph = word.add_paragraph()
            for n, line in enumerate(block.text.split("\n")):
                run = paragraph.add_run(line)
                run.font.name = "Courier New"
                run.font.size = Pt(9)
                if n < block.text.count("\n"):
                    run.add_break()
    word.core_properties.title = "Checkout redesign"
    out = io.BytesIO()
    word.save(out)
    return out.getvalue()


def _meta() -> Any:
    from prdtool.exports.model import ExportMeta

    return ExportMeta(title="Checkout redesign", version="1.4.0", date="2024-05-01", authors=["alice", "bob"],
                      prd_id="01HZBENCHTRANSFERS0000000000")


def documents(pages: int) -> tuple[str, dict[str, bytes]]:
    """The PRD's Markdown and its file in each import format."""
    from prdtool.exports.render import render

    doc = blocks(pages)
    markdown = to_markdown(doc)
    return markdown, {
        "docx": to_docx(doc),
        "pdf": render(markdown, "pdf", meta=_meta()).data,
        "markdown": markdown.encode("utf-8"),
        "html": render(markdown, "html", meta=_meta()).data,
    }


def pdf_pages(data: bytes) -> int:
    import pypdf

    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


# ----------------------------------------------------------------------------- the operations
def import_pipeline(data: bytes, filename: str) -> dict[str, Any]:
    """What the import worker does with an upload, minus S3, DynamoDB and the PRD's creation
    (``prdtool.imports.worker.convert``, the worker's own code)."""
    from prdtool.imports.worker import convert
    from prdtool.settings import get_settings

    return convert(data, filename, limit=get_settings().import_upload_max_bytes)[2]


def export(markdown: str, fmt: str) -> bytes:
    from prdtool.exports.render import render

    return render(markdown, fmt, meta=_meta()).data


def _operation(op: str, fmt: str, path: Path) -> Any:
    data = path.read_bytes()
    if op == "import":
        filename = f"prd.{EXTENSIONS[fmt]}"
        return lambda: import_pipeline(data, filename)
    markdown = data.decode("utf-8")
    return lambda: export(markdown, fmt)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux: ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _child(op: str, fmt: str, path: Path, warm: Path) -> dict[str, Any]:
    """In a fresh interpreter: warm up on ``warm``, then measure ``path`` (see the module docstring)."""
    import resource
    import tracemalloc

    from prdtool.errors import DomainError

    result: dict[str, Any] = {}
    try:
        _operation(op, fmt, warm)()
    except DomainError as err:
        result["warm_error"] = f"{err.code}: {err.message}"
    call = _operation(op, fmt, path)
    gc.collect()
    reset = _reset_peak()
    before = _status_kb("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        out = call()
    except DomainError as err:
        out = None
        result["error"] = f"{err.code}: {err.message}"
    first = time.perf_counter() - started
    result["rss_kb"] = (_status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) - before
    result["hwm_reset"] = reset
    result["first"] = first
    if out is None:
        result["seconds"], result["runs"] = first, 1
        return result
    if op == "import":
        result["sections"] = len(out.get("sections", []))
        result["missing"] = len(out.get("missing", []))
    else:
        result["bytes"] = len(out)
    del out
    times = []
    for _ in range(RUNS if first < SLOW else 1):
        gc.collect()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    result["seconds"], result["runs"] = statistics.median(times), len(times)
    gc.collect()
    tracemalloc.start()
    call()
    result["traced_kb"] = tracemalloc.get_traced_memory()[1] // 1024
    tracemalloc.stop()
    return result


def _measure(op: str, fmt: str, path: Path, warm: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "scripts.bench.transfers", "--child", op, fmt, str(path), str(warm)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "bench"})
    if done.returncode != 0:
        raise RuntimeError(f"{op} {fmt} {path.name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- through the local stack
def _multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = f"bench-{os.urandom(8).hex()}"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _stack_once(base_url: str, token: str, client: Any, filename: str, data: bytes) -> tuple[float, float]:
    """One import through the API: (seconds until the POST's 202, seconds until the importer's
    ``import.done`` notice)."""
    import urllib.request

    body, content_type = _multipart(filename, data)
    request = urllib.request.Request(f"{base_url}/api/imports", data=body, method="POST",
                                     headers={"content-type": content_type, "authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        import_id = json.loads(response.read())["importId"]
    posted = time.perf_counter() - started
    deadline = started + 120
    while True:
        notice = next((n for n in list(client.notices) if n.get("importId") == import_id), None)
        if notice is not None:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"import {import_id} never finished")
        time.sleep(0.005)
    done = time.perf_counter() - started
    if notice.get("type") != "import.done":
        raise RuntimeError(f"import {import_id}: {notice}")
    return posted, done


def stack_import(path: Path) -> dict[str, Any]:
    """``STACK_IMPORTS`` imports of ``path`` through a fresh local stack, after one (cold) warm-up."""
    from scripts.bench.collab_calls import Api, bench_stack
    from tests.e2e.yclient import YClient

    data = path.read_bytes()
    with bench_stack() as stack:
        api = Api(stack.base_url)
        token = api.login("alice")
        prd_id = str(api.call("POST", "/api/prds", {"title": "Transfers bench", "markdown": "# Transfers bench\n"},
                              token)["id"])
        client = YClient(stack.ws_url, prd_id, token, name="alice").connect(timeout=30)
        try:
            cold = _stack_once(stack.base_url, token, client, path.name, data)
            warm = [_stack_once(stack.base_url, token, client, path.name, data) for _ in range(STACK_IMPORTS)]
        finally:
            client.close()
    done = [d for _, d in warm]
    return {"cold": cold, "post": statistics.median(p for p, _ in warm), "done": statistics.median(done),
            "range": (min(done), max(done))}


# ----------------------------------------------------------------------------- the report
def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.2f} MB" if n >= 1 << 20 else f"{n / 1024:.0f} KB"


def _time(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def run() -> dict[str, Any]:
    from prdtool.settings import get_settings

    results: dict[str, Any] = {"import": {}, "export": {}, "files": {}, "pages": {}, "words": {},
                               "import_max_bytes": get_settings().import_max_bytes,
                               "upload_max_bytes": get_settings().import_upload_max_bytes}
    with tempfile.TemporaryDirectory(prefix="bench-transfers-") as folder:
        base = Path(folder)
        for pages in (1, *SIZES):
            markdown, files = documents(pages)
            (base / f"{pages}.md").write_text(markdown, encoding="utf-8")
            for fmt, data in files.items():
                (base / f"{pages}.{EXTENSIONS[fmt]}").write_bytes(data)
            results["files"][pages] = {fmt: len(data) for fmt, data in files.items()}
            results["pages"][pages] = pdf_pages(files["pdf"])
            results["words"][pages] = len(markdown.split())
        for pages in SIZES:
            for fmt in IMPORT_FORMATS:
                ext = EXTENSIONS[fmt]
                results["import"][(fmt, pages)] = _measure("import", fmt, base / f"{pages}.{ext}",
                                                           base / f"1.{ext}")
            for fmt in EXPORT_FORMATS:
                results["export"][(fmt, pages)] = _measure("export", fmt, base / f"{pages}.md", base / "1.md")
        results["stack"] = stack_import(base / f"{STACK_PAGES}.{EXTENSIONS[STACK_FORMAT]}")
    return results


def _timed(r: dict[str, Any]) -> str:
    return _time(r["seconds"]) + (" †" if r["runs"] == 1 else "")


def report(results: dict[str, Any]) -> str:
    pages = results["pages"]
    lines = [
        f"Generated PRDs of ~{WORDS_PER_PAGE} words of text per page: " + "; ".join(
            f"{n} pages: {results['words'][n]:,} words, {_size(results['files'][n]['markdown'])} of Markdown, "
            f"{pages[n]} pages as PDF" for n in SIZES) + ". Word files made with python-docx, PDF and HTML "
        "with the product's own exporters. Each row runs in a fresh interpreter after a warm-up on a one-page "
        f"document; **time** is the median of {RUNS} runs after one warm-up run († one run: the warm-up took "
        f"over {SLOW:g} s); **peak RSS growth** is how far the process's resident memory rose above where it "
        "was before the call (all memory, native parsers and Typst included); **Python peak** is tracemalloc's "
        "peak of Python allocations in a separate run.\n",
        "### Import: upload → mapped Markdown (the worker's pipeline, without its AWS calls)\n",
        "| format | pages | file | time | peak RSS growth | Python peak | sections mapped / missing |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for fmt in IMPORT_FORMATS:
        for n in SIZES:
            r = results["import"][(fmt, n)]
            size = results["files"][n][fmt]
            shown = f"{pages[n]} ({n})" if fmt == "pdf" else str(n)
            if "error" in r:
                lines.append(f"| {fmt} | {shown} | {_size(size)} | refused after {_time(r['seconds'])} "
                             f"| {_mb(r['rss_kb'])} | | **{r['error']}** |")
            else:
                lines.append(f"| {fmt} | {shown} | {_size(size)} | {_timed(r)} | {_mb(r['rss_kb'])} "
                             f"| {_mb(r['traced_kb'])} | {r['sections']} / {r['missing']} |")
    lines += ["", "### Export: PRD Markdown → file (`prdtool.exports.render.render`)\n",
              "| format | pages | output | time | peak RSS growth | Python peak |", "|---|---:|---:|---:|---:|---:|"]
    for fmt in EXPORT_FORMATS:
        for n in SIZES:
            r = results["export"][(fmt, n)]
            if "error" in r:
                lines.append(f"| {fmt} | {n} | | refused after {_time(r['seconds'])} | {_mb(r['rss_kb'])} "
                             f"| **{r['error']}** |")
            else:
                lines.append(f"| {fmt} | {n} | {_size(r['bytes'])} | {_timed(r)} | {_mb(r['rss_kb'])} "
                             f"| {_mb(r['traced_kb'])} |")
    stack = results["stack"]
    pipeline = results["import"][(STACK_FORMAT, STACK_PAGES)]["seconds"]
    lines += ["", f"**Through the local stack** (`POST /api/imports`, multipart → the importer's `import.done` notice "
              f"on its WebSocket), the {STACK_PAGES}-page {STACK_FORMAT}: **{_time(stack['done'])}** median of "
              f"{STACK_IMPORTS} ({_time(stack['range'][0])} to {_time(stack['range'][1])}), after a first, cold one "
              f"({_time(stack['cold'][1])}: both functions' cold starts); the POST's 202 took {_time(stack['post'])} "
              f"of it. The pipeline alone (above): {_time(pipeline)}; the rest, {_time(stack['done'] - pipeline)}, "
              "is the API, S3, the queue and its poller, the transfer records, the PRD's creation (DynamoDB, S3, "
              "v1.0.0) and the notice."]
    lines += ["", f"Caps in play: a direct upload over `IMPORT_MAX_BYTES` ({results['import_max_bytes']:,} bytes) "
              f"is refused (413) by the API (larger ones go by a presigned upload of at most "
              f"`IMPORT_UPLOAD_MAX_BYTES`, {results['upload_max_bytes']:,} bytes, checked again by the worker); "
              "then `prdtool.imports.extract.Limits`: at most "
              "2,000,000 characters of Markdown (for a PDF, also the characters its pages show, counted "
              "before pdfplumber runs), 500 PDF pages, 16 MB of Word XML, 6,000,000 characters of sanitised "
              "HTML; an export takes at most 2 MiB of Markdown."]
    return "\n".join(lines)


def main() -> str:
    return report(run())


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))))
    else:
        print(main())
