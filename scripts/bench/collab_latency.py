"""Edit -> peer latency: our local stack against the reference Yjs servers, in one invocation (issue #3).

Editors (stock Yjs 13.6.33 + y-protocols 1.0.7 in one Node process, ``node/editors.mjs``) type one
character at a time into one document for ~20 s (after a 3 s warm-up whose edits are not
measured) — 10 x 5 edits/s, 25 x 5/s, 50 x 2/s and 10 x 1/s (``LOADS``) — through:

- our local stack (``make dev``'s gateway + Lambda worker processes + moto), JSON base64 frames
  (DESIGN 3.2), authenticated as the demo editors;
- ``@y/websocket-server`` 0.1.1's own server (``src/server.js``), unmodified, in memory;
- ``@hocuspocus/server`` 4.7.0, unmodified, no extensions, with ``@hocuspocus/provider`` 4.7.0 as
  the editors' provider.

Latency is DESIGN 4's: from the sender's local edit to the moment a peer's ``Y.Doc`` state vector
reaches that edit's clock, per peer (9 samples per edit).  The servers run on loopback on the same
2 cores as the editors; the local stack also runs moto and one OS process per Lambda environment
(``LOCAL_MAX_CONCURRENCY`` per function), so its numbers are an upper bound on what the code
costs, not a prediction of AWS latency.  Before each load our stack is left to finish its background
work (``collab_calls.settle``), as after its start: a load's last saves, versions and search indexing
(a PRD being typed in is indexed at most every 20 s, embedding its text) belong to that load.
Where the stack's time goes comes from its own log line per invocation
(``localstack.lambda: WebSocketFunction <id> <ms> ms ok``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.collab_calls import ROOT, Api, bench_stack, settle
from scripts.bench.machine import probe_ms

NODE_DIR = ROOT / "scripts" / "bench" / "node"
EDITORS = 10
RATE = 5.0  # edits per second per editor
SECONDS = 20.0
WARMUP = 3.0
DRAIN = {"yws": 15.0, "hocuspocus": 15.0, "ours": 90.0}  # how long to wait for late deliveries
# (editors, edits/s each): issue #13's loads — a workshop of 10 typing fast, 25 typing fast, 50 typing
# steadily — and a quiet one.
LOADS: tuple[tuple[int, float], ...] = ((EDITORS, RATE), (25, RATE), (50, 2.0), (EDITORS, 1.0))
SERVER_START_SECONDS = 20.0
LABELS = {"ours": "ours (local stack)", "yws": "@y/websocket-server 0.1.1", "hocuspocus": "@hocuspocus/server 4.7.0"}


@dataclass
class LatencyResult:
    kind: str
    samples: list[float]
    edits: int
    expected: int
    missing: int
    converged: bool
    error_frames: int
    connect_ms: float
    server_cpu_s: float | None = None  # CPU time of the server process during the run (reference servers)
    invocations: list[tuple[float, float, bool]] = field(default_factory=list)  # (at, ms, cold) WebSocketFunction
    window: tuple[float, float] = (0.0, 0.0)  # wall-clock measurement window (time.time())
    concurrency: int = 0  # LOCAL_MAX_CONCURRENCY (ours)
    editors: int = EDITORS
    rate: float = RATE
    seconds: float = SECONDS
    warmup: float = WARMUP
    drain_ms: float = 0.0  # after the last edit, until every peer had every edit (or the drain timeout)
    probe_ms: tuple[float, float] | None = None  # machine.probe_ms before and after the load
    stack_cpu_s: dict[str, float] = field(default_factory=dict)  # ours: CPU seconds by part while measuring

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ensure_node_modules() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("Node.js and npm are needed for the latency benchmark")
    if not (NODE_DIR / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"], check=True,
                       capture_output=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields after the command name (state, ppid, ...), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_seconds(pid: int, fields: list[str] | None = None) -> float | None:
    fields = fields if fields is not None else _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_cpu_seconds(root: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by the local stack's processes, by part: ``orchestrator`` (``root``,
    this process: the gateway, the Lambda service, the pollers — and the bench's own threads),
    ``moto``, and each function's workers by their code directory (``websocket``, ``doc_writer``, ...).
    Processes that are not Python (the Node editors) are left out."""
    root = os.getpid() if root is None else root
    stats = {int(entry): fields for entry in os.listdir("/proc")
             if entry.isdigit() and (fields := _stat(int(entry))) is not None}
    parents = {pid: int(fields[1]) for pid, fields in stats.items()}
    parts: dict[str, float] = {}
    for pid, fields in stats.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != root:
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        except OSError:
            continue
        if pid == root:
            part = "orchestrator"
        elif "scripts.localstack.moto_main" in command:
            part = "moto"
        elif "--task-root" in command:
            part = Path(command[command.index("--task-root") + 1]).name
        else:
            continue
        cpu = _cpu_seconds(pid, fields)
        if cpu is not None:
            parts[part] = parts.get(part, 0.0) + cpu
    return parts


@contextlib.contextmanager
def reference_server(kind: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start a reference server on a free loopback port; yields its ws URL and process."""
    port = _free_port()
    if kind == "yws":
        command = ["node", "node_modules/@y/websocket-server/src/server.js"]
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
        env.pop("YPERSISTENCE", None)
        env.pop("CALLBACK_URL", None)
        ready = "running at"
    else:
        command = ["node", "hocuspocus-server.mjs", str(port)]
        env = dict(os.environ)
        ready = "listening"
    process = subprocess.Popen(command, cwd=NODE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        started = threading.Event()

        def watch() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                if ready in line:
                    started.set()

        threading.Thread(target=watch, daemon=True).start()
        if not started.wait(SERVER_START_SECONDS):
            raise RuntimeError(f"{kind} server did not start within {SERVER_START_SECONDS:.0f} s")
        yield f"ws://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_editors(kind: str, url: str, extra: list[str], *, editors: int = EDITORS, rate: float = RATE,
                seconds: float = SECONDS, warmup: float = WARMUP,
                on_mark: Callable[[str], None] | None = None) -> tuple[dict[str, Any], tuple[float, float]]:
    """Run ``editors.mjs``; its JSON result and the wall-clock window of the measured edits.

    ``on_mark("start")`` and ``on_mark("end")`` are called as the measured edits begin and end."""
    drain = DRAIN[kind]
    command = ["node", "editors.mjs", "--kind", kind, "--url", url, "--editors", str(editors), "--rate", str(rate),
               "--seconds", str(seconds), "--warmup", str(warmup), "--drain", str(drain), *extra]
    process = subprocess.Popen(command, cwd=NODE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    tail: list[str] = []

    def watch() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            tail.append(line.rstrip())
            del tail[:-20]
            if line.startswith("measuring"):
                marks["start"] = time.time()
                if on_mark is not None:
                    on_mark("start")
            elif line.startswith("typing done"):
                marks["end"] = time.time()
                if on_mark is not None:
                    on_mark("end")

    output: list[str] = []

    def collect() -> None:
        assert process.stdout is not None
        output.append(process.stdout.read())

    threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=collect, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout=90 + warmup + seconds + drain)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"{kind}: the editors did not finish in time: " + " | ".join(tail)) from None
    for thread in threads:
        thread.join(5)
    out = "".join(output)
    if process.returncode != 0:
        raise RuntimeError(f"{kind}: editors.mjs failed ({process.returncode}): " + " | ".join(tail))
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result, (marks.get("start", 0.0), marks.get("end", 0.0))


def _result(kind: str, data: dict[str, Any], window: tuple[float, float], **extra: Any) -> LatencyResult:
    return LatencyResult(kind, data["samples"], data["edits"], data["expected"], data["missing"], data["converged"],
                         data["error_frames"], data["connect_ms"], window=window, editors=data["editors"],
                         rate=data["rate"], seconds=data["seconds"], warmup=data["warmup"],
                         drain_ms=data["drain_ms"], **extra)


def measure_reference(kind: str, **load: Any) -> LatencyResult:
    with reference_server(kind) as (url, process):
        before = probe_ms()
        cpu_before = _cpu_seconds(process.pid)
        data, window = run_editors(kind, url, [], **load)
        cpu_after = _cpu_seconds(process.pid)
        after = probe_ms()
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return _result(kind, data, window, server_cpu_s=cpu, probe_ms=(before, after))


class _InvocationLog(logging.Handler):
    """Collects the stack's one line per Lambda invocation for one function."""

    def __init__(self, function: str) -> None:
        super().__init__(logging.INFO)
        self.function = function
        self.records: list[tuple[float, float, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and args[0] == self.function and args[3] == "ok":
            self.records.append((record.created, float(args[2]), bool(args[4])))


def measure_ours(stack: Any | None = None, **load: Any) -> LatencyResult:
    if stack is None:
        with bench_stack() as own:
            return measure_ours(own, **load)
    # The previous load's background work (its last save, version and search indexing — the index of a
    # PRD being typed in waits up to 20 s for its slot, then embeds its text) belongs to that load:
    # measured with this one, it made the order of the loads part of the result.
    settle(stack)
    api = Api(stack.base_url)
    prd_id, tokens = api.shared_prd("Latency", "# Latency\n\n")
    lambda_log = logging.getLogger("localstack.lambda")
    handler = _InvocationLog("WebSocketFunction")
    saved_level = lambda_log.level
    lambda_log.addHandler(handler)
    lambda_log.setLevel(logging.INFO)
    before = probe_ms()
    cpu: dict[str, dict[str, float]] = {}  # the stack's CPU as the measured edits begin and end
    try:
        data, window = run_editors("ours", stack.ws_url,
                                   ["--prd", prd_id, "--tokens", f"{tokens['alice']},{tokens['bob']}"],
                                   on_mark=lambda mark: cpu.__setitem__(mark, stack_cpu_seconds()), **load)
    finally:
        lambda_log.removeHandler(handler)
        lambda_log.setLevel(saved_level)
    used = {part: seconds - cpu.get("start", {}).get(part, 0.0) for part, seconds in cpu.get("end", {}).items()}
    return _result("ours", data, window, invocations=handler.records, concurrency=stack.settings.max_concurrency,
                   probe_ms=(before, probe_ms()), stack_cpu_s={part: s for part, s in used.items() if s > 0})


def run(stack: Any | None = None, loads: tuple[tuple[int, float], ...] = LOADS) -> list[LatencyResult]:
    """Each load (editors, edits/s per editor) against the two reference servers, then our stack."""
    ensure_node_modules()
    if stack is None:
        with bench_stack() as own:
            return run(own, loads)
    results: list[LatencyResult] = []
    for editors, rate in loads:
        load = {"editors": editors, "rate": rate}
        results += [measure_reference("yws", **load), measure_reference("hocuspocus", **load),
                    measure_ours(stack, **load)]
    return results


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def report(results: list[LatencyResult]) -> str:
    first = results[0]
    lines = [
        f"One character per edit, {first.seconds:g} s measured after a {first.warmup:g} s warm-up; a sample per "
        "(edit, peer): from the sender's edit until the peer's Y.Doc state vector reaches the edit's clock. "
        "All on loopback on 2 cores; the editors share one Node 20 process. The machine probe "
        "(`scripts/bench/machine.py`) times a fixed Python workload before and after each load: the machine's speed "
        "drifts between spells, and latency under load with it (lower is faster).\n",
        "| load | server | p50 ms | p99 ms | max ms | samples | missing | converged | ours / this (p50, p99) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    notes: list[str] = []
    groups: dict[tuple[int, float], list[LatencyResult]] = {}
    for r in results:
        groups.setdefault((r.editors, r.rate), []).append(r)
    for (editors, rate), group in groups.items():
        ours = next((r for r in group if r.kind == "ours"), None)
        for r in group:
            ratio = ""
            if ours is not None and r is not ours and r.samples and ours.samples:
                ratio = f"{_ratio(ours.pct(0.5), r.pct(0.5))}, {_ratio(ours.pct(0.99), r.pct(0.99))}"
            lines.append(
                f"| {editors} editors x {rate:g}/s | {LABELS[r.kind]} | {_ms(r.pct(0.5))} | {_ms(r.pct(0.99))} | "
                f"{_ms(max(r.samples or [0]))} | {len(r.samples):,} | {r.missing:,} | "
                f"{'yes' if r.converged else 'NO'} | {ratio} |")
        notes += [_notes(r) for r in group]
    lines += ["", *(f"- {n}" for n in notes if n)]
    return "\n".join(lines)


def _notes(r: LatencyResult) -> str:
    head = f"{r.editors} x {r.rate:g}/s, {LABELS[r.kind]}: {r.edits:,} measured edits"
    if r.probe_ms is not None:
        head += f" (machine probe {r.probe_ms[0]:,.0f} ms before, {r.probe_ms[1]:,.0f} ms after)"
    if r.server_cpu_s is not None:
        return (f"{head}; the server process used {r.server_cpu_s:.1f} s CPU over the run "
                f"({1000 * r.server_cpu_s / max(1, r.edits):.2f} ms per measured edit, warm-up included); "
                f"connected and synced in {r.connect_ms:,.0f} ms.")
    start, end = r.window
    offered = r.editors * r.rate
    text = (f"{head}; LOCAL_MAX_CONCURRENCY={r.concurrency} (Lambda worker processes per function); connected "
            f"and synced in {r.connect_ms:,.0f} ms; {r.error_frames} error frames; the last peer had the last edit "
            f"{max(0.0, r.drain_ms) / 1000:,.1f} s after it was typed")
    if r.stack_cpu_s:
        per_edit = lambda seconds: 1000 * seconds / max(1, r.edits)  # noqa: E731
        top = sorted(r.stack_cpu_s.items(), key=lambda item: -item[1])
        text += (f"; while the measured edits were typed the stack's processes used "
                 f"{sum(r.stack_cpu_s.values()):.1f} s CPU ({per_edit(sum(r.stack_cpu_s.values())):.2f} ms per edit: "
                 + ", ".join(f"{part} {per_edit(seconds):.2f}" for part, seconds in top if per_edit(seconds) >= 0.05)
                 + ")")
    during = sorted(ms for at, ms, _cold in r.invocations if start <= at <= end + r.drain_ms / 1000 + 1)
    cold = sum(1 for at, _ms, c in r.invocations if c and start <= at <= end)
    if during and end > start:
        span = (end - start) + max(0.0, r.drain_ms) / 1000
        pick = lambda q: during[min(len(during) - 1, max(0, round(q * len(during)) - 1))]  # noqa: E731
        text += (f". WebSocketFunction (the $default route): {len(during):,} invocations from the first measured "
                 f"edit until the last was delivered ({cold} cold), {pick(0.5):.0f} ms p50 / {pick(0.99):.0f} ms p99 "
                 f"/ {during[-1]:.0f} ms max each by the stack's log; {sum(during) / 1000 / span:.1f} of "
                 f"{r.concurrency} workers busy on average; offered {offered:g} edits/s, served "
                 f"{len(during) / span:.1f} invocations/s")
    return text + "."


def main() -> str:
    return report(run())


if __name__ == "__main__":
    print(main())
