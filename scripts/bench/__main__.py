"""`make bench`: run the benchmarks and print Markdown to paste into docs/benchmarks.md.

    python -m scripts.bench                    # everything (about 14 minutes on 2 cores)
    python -m scripts.bench imports            # cold start: handler import time
    python -m scripts.bench collab-calls       # AWS calls per relayed edit and per document open
    python -m scripts.bench collab-open        # document open cost against history length
    python -m scripts.bench collab-open --history 30000   # a long history (~2 min; 100000: > 25 min)
    python -m scripts.bench collab-latency     # edit -> peer latency, ours against the reference servers
    python -m scripts.bench cost               # $ per 1M edits (measures collab-calls first)
    python -m scripts.bench security           # authorizer per token, rate-limit calls, audit overhead
    python -m scripts.bench hostile            # time and memory to refuse hostile Yjs updates
    python -m scripts.bench audit              # audit record() per request and writer throughput (local stack)
    python -m scripts.bench web-latency        # keystroke -> peer browser latency, time to interactive editor
    python -m scripts.bench versions           # version cut time at 10/100/1000 versions, git clone, list, diff
    python -m scripts.bench ai                 # AI drafting: overhead per chunk, time to first chunk, posts
    python -m scripts.bench web-panels         # AI first chunk -> painted, history of 1,000 versions (browser)
    python -m scripts.bench transfers          # import and export of 10/50/200-page documents: time, memory
    python -m scripts.bench search             # search engine: query latency at 1k/10k PRDs, index build, size
    python -m scripts.bench search-index       # search: change -> searchable through the local stack

Several names may be given at once; the co-editing benchmarks then share one local stack.
"""

from __future__ import annotations

import argparse
import platform
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

NAMES = ("imports", "hostile", "security", "versions", "ai", "transfers", "search", "search-index", "web-panels",
         "audit", "web-latency", "collab-latency", "collab-calls", "cost", "collab-open")


def _standalone(module: str, *args: Any) -> Callable[[], str]:
    """A benchmark that starts what it needs itself: ``scripts.bench.<module>.main(*args)``."""

    def run() -> str:
        import importlib

        return str(importlib.import_module(f"scripts.bench.{module}").main(*args))

    return run


#: Benchmarks that need no shared local stack, in the order they run: name -> (title, run).
STANDALONE: dict[str, tuple[str, Callable[[], str]]] = {
    "imports": ("Cold start: handler import time", _standalone("imports")),
    "hostile": ("Hostile updates: what refusing each costs", _standalone("hostile")),
    "security": ("Security: authorizer, rate limiting, audit", _standalone("security")),
    "versions": ("Versions: cutting one against history length, git clone, list and diff", _standalone("versions")),
    "ai": ("AI drafting: model → requester's screen, per chunk", _standalone("ai")),
    "transfers": ("Imports and exports: time and peak memory for 10-, 50- and 200-page documents",
                  _standalone("transfers")),
    "search": ("Search: query latency at 1k and 10k PRDs, index size", _standalone("search")),
    "search-index": ("Search: change → searchable through the local stack", _standalone("search_index", [])),
    "web-panels": ("Web client panels: AI first chunk → painted, history of 1,000 versions",
                   _standalone("web_panels")),
}


def _section(title: str, body: str, started: float, command: str) -> None:
    print(f"## {title}\n")
    print(f"`{command}` ({time.monotonic() - started:.0f} s)\n")
    print(body)
    print(flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run, of {', '.join(NAMES)} (default: all)")
    parser.add_argument("--history", default="",
                        help="collab-open: comma-separated history lengths (default 100,1000,10000)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(NAMES)})")
    chosen = [n for n in NAMES if n in (args.names or NAMES)]
    # A SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the local stack stops its moto and workers.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))

    began = time.monotonic()
    print(f"<!-- python {platform.python_version()} on {platform.machine()}, {sys.platform} -->\n")
    for name in chosen:
        if name in STANDALONE:
            title, run = STANDALONE[name]
            started = time.monotonic()
            _section(title, run(), started, f"python -m scripts.bench {name}")
    collab = [n for n in chosen if n not in STANDALONE]
    if collab:
        _run_collab(collab, args.history)
    print(f"<!-- total {time.monotonic() - began:.0f} s -->")


def _run_collab(chosen: list[str], history: str) -> None:
    from . import audit, collab_calls, collab_latency, collab_open, cost, web_latency

    calls: list[collab_calls.PeerResult] | None = None
    lengths = tuple(int(x) for x in history.split(",") if x.strip()) or collab_open.HISTORY_LENGTHS
    with collab_calls.bench_stack() as stack:
        steps: dict[str, tuple[str, Callable[[], str]]] = {
            "audit": ("Audit trail: overhead per request and writer throughput",
                      lambda: audit.report(audit.run(stack))),
            "web-latency": ("Web client: keystroke → peer browser latency and time to interactive",
                            lambda: web_latency.report(web_latency.run(stack))),
            "collab-latency": ("Co-editing: edit → peer latency, ours against the reference Yjs servers",
                               lambda: collab_latency.report(collab_latency.run(stack))),
            "collab-calls": ("Co-editing: AWS calls per relayed edit and per document open", lambda: _calls()),
            "cost": ("Co-editing: estimated AWS cost per 1,000,000 edits",
                     lambda: cost.report(*cost.run(stack, calls))),
            "collab-open": ("Co-editing: document open cost against history length",
                            lambda: collab_open.report(collab_open.run(stack, lengths))),
        }

        def _calls() -> str:
            nonlocal calls
            calls = collab_calls.run(stack)
            return collab_calls.report(calls)

        for name in chosen:
            title, step = steps[name]
            started = time.monotonic()
            command = f"python -m scripts.bench {name}"
            if name == "collab-open" and history:
                command += f" --history {history}"
            body: Any = step()
            _section(title, body, started, command)


if __name__ == "__main__":
    main()
