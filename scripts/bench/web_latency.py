"""The web client in real browsers: keystroke → peer-browser latency and time to an interactive editor.

Two Chromium contexts (Debian's ``/usr/bin/chromium`` via playwright-core, ``web/e2e/bench.mjs``) open one
PRD on a fresh local stack: alice types (real key events, every ``INTERVAL_MS``), bob's page records when
each character appears in his CodeMirror DOM; both read the same wall clock. Time to interactive: from the
click on the PRD in the list to an editable editor showing the server's content with the state ``saved``.

    python -m scripts.bench.web_latency                 # needs `make web browser` first
    python -m scripts.bench.web_latency --keystrokes 500 --interval-ms 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def web_bundle_sizes() -> dict[str, int]:
    """Gzip sizes (bytes) of what /login loads (entry JS + CSS) and of the lazily loaded editor chunk."""
    result = subprocess.run(["node", "scripts/size.mjs", "--json"], cwd=WEB, capture_output=True, text=True,
                            check=True, timeout=60)
    sizes: dict[str, int] = json.loads(result.stdout)
    return sizes


def run(stack: Any | None = None, *, keystrokes: int = 300, interval_ms: int = 40, opens: int = 5) -> dict[str, Any]:
    subprocess.run(["make", "--no-print-directory", "web", "browser"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    if stack is None:
        from .collab_calls import bench_stack

        with bench_stack() as fresh:
            return run(fresh, keystrokes=keystrokes, interval_ms=interval_ms, opens=opens)
    env = {**os.environ, "BASE_URL": stack.base_url, "KEYSTROKES": str(keystrokes),
           "INTERVAL_MS": str(interval_ms), "OPENS": str(opens)}
    out = subprocess.run(["node", "e2e/bench.mjs"], cwd=WEB, env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"web bench failed:\n{out.stdout}\n{out.stderr}")
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    data["bundle"] = web_bundle_sizes()
    return data


def report(data: dict[str, Any]) -> str:
    lat, echo, tti, size = data["latency_ms"], data["local_echo_ms"], data["tti_ms"], data["bundle"]
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| keystroke → peer browser, p50 | {lat['p50']:.1f} ms |",
        f"| keystroke → peer browser, p90 | {lat['p90']:.1f} ms |",
        f"| keystroke → peer browser, p99 | {lat['p99']:.1f} ms |",
        f"| keystroke → own editor (key event cost), p50 / p99 | {echo['p50']:.1f} / {echo['p99']:.1f} ms |",
        f"| keystrokes never seen by the peer | {data['missing']} of {data['keystrokes']} "
        f"({'texts converged' if data['converged'] else 'TEXTS DIFFER'}) |",
        f"| error frames from the server (e.g. rate_limited) | "
        f"{', '.join(f'{k}: {v}' for k, v in data['error_frames'].items()) or 'none'} |",
        f"| time to interactive editor, median (max) of {len(tti['runs'])} | {tti['median']} ms ({tti['max']} ms) |",
        f"| … the first open on a fresh stack (functions' cold starts): editable / synced "
        f"| {tti['cold_first_open']['editable']} ms / {tti['cold_first_open']['synced']} ms |",
        f"| first screen (/login) JS + CSS, gzip | {size['first_screen_js_gz'] / 1024:.1f} KiB JS "
        f"+ {size['first_screen_css_gz'] / 1024:.1f} KiB CSS (budget {size['budget_js_gz'] / 1024:.0f} KiB JS) |",
        f"| editor chunk (loaded on /prds/<id> only), gzip | {size['editor_js_gz'] / 1024:.1f} KiB |",
        "| feature chunks (loaded when used), JS + CSS gzip | "
        + (", ".join(f"{name} {n / 1024:.1f} KiB" for name, n in sorted(size.get("features_gz", {}).items()))
           or "none") + " |",
    ]
    return "\n".join(rows) + (
        f"\n\nTwo Chromium contexts on one machine, one keystroke every {data['interval_ms']} ms "
        f"({data['keystrokes']} keystrokes, after a warm-up), real key events through CDP; the latency runs from "
        "sending the key event to the character appearing in the peer's editor DOM, so it includes the key "
        "event's own cost (fourth row).")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.web_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=300)
    parser.add_argument("--interval-ms", type=int, default=40)
    parser.add_argument("--opens", type=int, default=5)
    args = parser.parse_args(argv)
    return report(run(keystrokes=args.keystrokes, interval_ms=args.interval_ms, opens=args.opens))


if __name__ == "__main__":
    print(main())
