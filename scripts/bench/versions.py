"""Versions (issue #14): cutting a version against history length, git clone, list and diff latency.

On a fresh local stack (moto over HTTP, the product's own code): one PRD gets a small edit and a
version cut (``prdtool.versions.service.cut``, in this process with VersionFunction's environment,
as the function runs it) 1,000 times.  At 10, 100 and 1,000 prior versions, five cuts are timed
and their AWS calls counted.  Then stock ``git clone`` of the 1,000-version repository through the
gateway's ``/git`` route, and the versions list and a diff through the HTTP API.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

from scripts.bench.collab_calls import Api, ApiCounter, bench_stack, bind_to

AT = (10, 100, 1000)
SAMPLES = 5


def _edit(prd_id: str, n: int) -> None:
    from prdtool.collab import document, store

    stored = store.read(prd_id)
    # The same line rewritten each time: the document keeps its size, so what grows is the history.
    lines = document.markdown_of(stored.doc).rstrip("\n").split("\n")
    if lines[-1].startswith("Decision "):
        lines.pop()
    update = document.content_update(stored.doc, "\n".join([*lines, f"Decision {n}: ship it."]) + "\n")
    assert update is not None
    store.append_update(prd_id, update, origin="alice")
    if n % 25 == 0:
        store.compact(prd_id)  # what the write queue does every 5 s


def _settle(prd_id: str, timeout: float = 300) -> float:
    """Wait until the stack has caught up with the maintenance the cuts triggered (repack, archival:
    VersionFunction on prd.version.created); returns the seconds waited.  Cutting a thousand versions
    back to back queues a thousand of those; timing cuts while they run would measure moto's locks
    shared with them, which in AWS are separate services."""
    from prdtool.settings import get_settings
    from prdtool.versions import records

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        head = records.head(prd_id)
        if head.archived_count >= head.counter - get_settings().version_hot_count - 1:
            break
        time.sleep(1)
    time.sleep(3)  # the last repack, if any
    return time.monotonic() - started


def new_prd_with_v1(api: Api, token: str, title: str) -> str:
    """A new PRD of the caller's, once its v1.0.0 exists (cut right after creation)."""
    prd_id = str(api.call("POST", "/api/prds", {"title": title, "markdown": f"# {title}\n"}, token)["id"])
    deadline = time.monotonic() + 60
    while not api.call("GET", f"/api/prds/{prd_id}/versions", token=token)["items"]:
        if time.monotonic() > deadline:
            raise RuntimeError("no v1.0.0 within 60 s")
        time.sleep(0.2)
    return prd_id


def _cut(prd_id: str) -> Any:
    from prdtool.versions import service

    return service.cut(prd_id, actor="alice")


def run() -> str:
    with bench_stack() as stack:
        api = Api(stack.base_url)
        token = api.login("alice")
        prd_id = new_prd_with_v1(api, token, "Versions bench")
        rows: list[str] = []
        clones: dict[int, tuple[float, int, str]] = {}
        with bind_to(stack, "VersionFunction"), contextlib.redirect_stdout(io.StringIO()):  # EMF lines
            made = 1
            for target in AT:
                while made < target:
                    _edit(prd_id, made)
                    _cut(prd_id)
                    made += 1
                settled = _settle(prd_id)
                times: list[float] = []
                calls: list[Any] = []
                for _ in range(SAMPLES):
                    _edit(prd_id, made)
                    with ApiCounter() as counter:
                        started = time.perf_counter()
                        version = _cut(prd_id)
                        times.append((time.perf_counter() - started) * 1000)
                        calls.append(counter.take())
                    assert version is not None
                    made += 1
                clones[target] = _clone(stack.base_url, prd_id, token)
                last = calls[-1]
                detail = ", ".join(f"{op} {res} x{n}".replace("  ", " ")
                                   for (_svc, op, res), n in sorted(last.calls.items()))
                rows.append(f"| {target:,} | {statistics.median(times):.0f} | {max(times):.0f} | "
                            f"{last.count('s3')} | {last.ddb_reads()} / {last.ddb_writes()} | {settled:.0f} s | "
                            f"{detail} |")
        latest = api.call("GET", f"/api/prds/{prd_id}/versions?limit=1", token=token)["items"][0]["version"]

        def timed(path: str, repeat: int = 10) -> float:
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                api.call("GET", path, token=token)
                samples.append((time.perf_counter() - started) * 1000)
            return statistics.median(samples)

        list_ms = timed(f"/api/prds/{prd_id}/versions?limit=50")
        diff_ms = timed(f"/api/prds/{prd_id}/diff?from=1.0.0&to={latest}")
    head = ("| prior versions | cut ms (median) | max | S3 calls | DynamoDB reads / writes | maintenance backlog "
            "waited | calls of the last cut |\n|---:|---:|---:|---:|---:|---:|---|")
    return "\n".join([
        f"{SAMPLES} cuts timed at each history length (each after rewriting the same line, so the document keeps its "
        "size; a patch version), in this "
        "process against the local stack's moto over HTTP (no doors here), VersionFunction's environment.\n",
        head, *rows, "",
        *(f"- `git clone` (stock git {_git_version()}) after {target:,} versions, through the gateway's `/git` "
          f"route: " + (f"{seconds:.2f} s, {tags:,} tags" if not error else f"failed after {seconds:.1f} s: {error}")
          + "." for target, (seconds, tags, error) in clones.items()),
        f"- `GET /api/prds/{{id}}/versions?limit=50`: {list_ms:.0f} ms median; "
        f"`GET /api/prds/{{id}}/diff?from=1.0.0&to={latest}`: {diff_ms:.0f} ms median (10 calls each).",
    ])


def _git_version() -> str:
    return subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.split()[-1]


def _clone(base_url: str, prd_id: str, token: str) -> tuple[float, int, str]:
    """(seconds, tags cloned, the error if git failed)."""
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("the versions benchmark needs the git command")
    host = base_url.split("://", 1)[1]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": folder}
        started = time.perf_counter()
        done = subprocess.run([git, "clone", "--quiet", f"http://alice:{token}@{host}/git/{prd_id}.git",
                               f"{folder}/r"], env=env, capture_output=True, text=True, timeout=300)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            return elapsed, 0, (done.stderr.strip().splitlines() or ["?"])[-1][:200]
        tags = len(subprocess.run([git, "-C", f"{folder}/r", "tag"], env=env, capture_output=True, text=True,
                                  check=True).stdout.split())
    return elapsed, tags, ""


def main() -> str:
    return run()


if __name__ == "__main__":
    print(main())
