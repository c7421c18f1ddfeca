"""Hostile updates: what refusing each costs the WebSocket handler in time and memory.

Every case runs in a fresh interpreter (as a cold Lambda container would) that imports the
handler's check, then passes the update through exactly what ``$default`` does before storing
anything (``collab.socket._validate_update``: the bounds walk, then pycrdt on an empty document).
The peak resident memory of that process, above what the imports alone take, is the cost of the
update; a case that would crash the process shows as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name -> Python expression building the update (tests/unit/yjs_bytes.py helpers are in scope)
CASES: dict[str, str] = {
    "a keystroke (accepted, for reference)": "keystroke()",
    "a 1 MB paste (accepted)": "paste(1_000_000)",
    "a paste over the 1 MiB limit": "paste(1_100_000)",
    "Any nested 100,000 deep (200 KB)": "any_content_update(deep_any(100_000))",
    "objects nested 100,000 deep (400 KB)": "any_content_update(deep_any_object(100_000))",
    "JSON embed nested 100,000 deep": "embed_update('[' * 100_000 + ']' * 100_000)",
    "claims 2**50 clients": "var_uint(2**50) + b'\\x00'",
    "claims a 2**40-byte string": ("var_uint(1) + var_uint(1) + var_uint(5) + var_uint(0) + b'\\x04\\x01' + var_uint(7)"
                                   " + b'content' + var_uint(2**40) + b'ab'"),
    "200,001 GC ranges (400 KB)": "gc_ranges(200_001)",
}

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path[:0] = [{shared!r}, {root!r}]
    from pycrdt import Doc, Text
    from prdtool.collab.socket import FrameRejected, _validate_update
    from tests.unit.yjs_bytes import any_content_update, deep_any, deep_any_object, embed_update, var_uint

    def keystroke():
        doc = Doc(); text = doc.get("content", type=Text); text.insert(0, "hello")
        before = doc.get_state(); text.insert(5, "!")
        return doc.get_update(before)

    def paste(n):
        doc = Doc(); doc.get("content", type=Text).insert(0, "x" * n)
        return doc.get_update()

    def gc_ranges(n):
        # n GC structs of one client (2 bytes each), then an empty delete set
        return var_uint(1) + var_uint(n) + var_uint(5) + var_uint(0) + b"\\x00\\x01" * n + var_uint(0)

    def check(update):
        if {before}:  # what the handler did before the bounds walk: pycrdt alone
            try:
                Doc().apply_update(update)
                return "accepted"
            except ValueError:
                return "bad_update"
        try:
            _validate_update(update)
            return "accepted"
        except FrameRejected as exc:
            return exc.code

    update = {expression}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    outcome = check(update)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"bytes": len(update), "outcome": outcome, "ms": elapsed * 1000,
                      "extra_mb": max(0, peak - base) / 1024, "base_mb": base / 1024}}))
""")


def _one(expression: str, *, before: bool) -> dict[str, object]:
    code = _CHILD.format(shared=str(ROOT / "shared"), root=str(ROOT), expression=expression, before=before)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        return {"outcome": f"process killed (signal {-result.returncode})" if result.returncode < 0
                else f"process failed ({result.returncode})", "bytes": 0, "ms": 0.0, "extra_mb": 0.0}
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, expression in CASES.items():
        now, before = _one(expression, before=False), _one(expression, before=True)
        rows.append({"case": name, **now, "before": before["outcome"]})
    return rows


def report(rows: list[dict[str, object]]) -> str:
    lines = ["| update | bytes | outcome | check ms | peak memory above the imports (MB) | pycrdt alone (before) |",
             "|---|---:|---|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['case']} | {int(str(row['bytes'])):,} | {row['outcome']} | {float(str(row['ms'])):.1f} "
                     f"| {float(str(row['extra_mb'])):.1f} | {row['before']} |")
    lines.append("")
    lines.append("Each case in a fresh interpreter, through `collab.socket._validate_update` (the bounds walk, "
                 "then pycrdt applying the update to an empty document); refused updates are never stored. The "
                 "last column is what the handler did before the bounds walk existed (pycrdt alone).")
    return "\n".join(lines)


def main() -> str:
    return report(run())
