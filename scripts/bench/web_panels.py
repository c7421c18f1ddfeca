"""The editor's panels in a real browser (issue #17): AI first chunk → painted, and the version history
of a 1,000-version PRD → its first page on screen.

On a fresh local stack (its AI is the offline drafter, which streams a chunk every 20 ms; the model's
own speed is not what is measured) ``web/e2e/bench-panels.mjs`` drives Debian's Chromium:

* **AI chunk → painted**: alice asks the AI panel for a draft; in the page, the time from the first
  ``ai`` chunk frame arriving on the WebSocket (a listener installed before the app's) to the second
  animation frame after the output text entered the DOM (painted).  Also **ask → painted**: from the
  keypress that sends the request (the API call, the queue, the worker's start, the model's first
  chunk, the relay).  One fresh PRD per job; the first job (cold functions) is not counted.
* **History first page**: a PRD with ``VERSIONS`` versions (cut in-process through the product's own
  ``versions.service.cut``, as ``python -m scripts.bench versions`` does); the time from the history
  panel's mount to its first page of 50 versions in the DOM (API call included), and the time to
  build those rows; the first open is not counted.

    python -m scripts.bench web-panels        # needs `make web browser` (run by it)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
from typing import Any

from scripts.bench.collab_calls import Api, bench_stack, bind_to
from scripts.bench.versions import _cut, _edit, _settle, new_prd_with_v1
from scripts.bench.web_latency import ROOT, WEB

VERSIONS = 1000


def _history_prd(stack: Any, api: Api, token: str) -> str:
    prd_id = new_prd_with_v1(api, token, "History bench")
    with bind_to(stack, "VersionFunction"), contextlib.redirect_stdout(io.StringIO()):  # EMF lines
        for n in range(1, VERSIONS):
            _edit(prd_id, n)
            _cut(prd_id)
        _settle(prd_id)
    return prd_id


def run() -> dict[str, Any]:
    subprocess.run(["make", "--no-print-directory", "web", "browser"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with bench_stack() as stack:
        api = Api(stack.base_url)
        started = time.monotonic()
        prd_id = _history_prd(stack, api, api.login("alice"))
        made = time.monotonic() - started
        env = {**os.environ, "BASE_URL": stack.base_url, "HISTORY_PRD": prd_id}
        out = subprocess.run(["node", "e2e/bench-panels.mjs"], cwd=WEB, env=env, capture_output=True, text=True,
                             timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"panels bench failed:\n{out.stdout}\n{out.stderr}")
        data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        data["made_seconds"] = made
        return data


def report(data: dict[str, Any]) -> str:
    ai, history = data["ai"], data["history"]

    def row(name: str, s: dict[str, Any]) -> str:
        return f"| {name} | {s['n']} | {s['p50']:.1f} ms | {s['p90']:.1f} ms | {s['max']:.1f} ms |"

    return "\n".join([
        "| measure | samples | p50 | p90 | max |",
        "|---|---:|---:|---:|---:|",
        row("AI: first chunk frame received → painted", ai["chunkToPaint"]),
        row("AI: request sent (keypress) → first chunk painted", ai["askToPaint"]),
        row(f"history of {VERSIONS:,} versions: panel mounted → first page in the DOM (API call included)",
            history["firstPage"]),
        row("history: building the first page's rows", history["build"]),
        "",
        f"({history.get('rows', 0)} rows on the first page; the {VERSIONS:,} versions were cut in "
        f"{data['made_seconds']:.0f} s before measuring.)",
    ])


def main() -> str:
    return report(run())


if __name__ == "__main__":
    print(main())
