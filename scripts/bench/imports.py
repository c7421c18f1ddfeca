"""Cold-start import cost of each handler module (`python -X importtime`), median of N runs.

Each run is a fresh interpreter with the function's code folder and the shared layer on sys.path,
as Lambda's init phase would see them, and the environment the template gives (tracing on, as in
AWS, so the X-Ray SDK cost shows where it is paid).

Bytecode is present, as in Lambda (``make build`` ships it), and the same for every run and every
checkout: the runs read it from a private cache (``PYTHONPYCACHEPREFIX``) that one unmeasured
import per function fills first.  Without that, the result depended on whether something (a test
run) had left ``__pycache__`` folders in the working tree: a module compiled from source on each
run costs several times its import.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(\s*)(\S+)")


def import_ms(function_dir: Path, *, tracing: bool, pycache: Path | None = None,
              write_bytecode: bool = False) -> tuple[float, dict[str, float]]:
    """Total import time of ``app`` in ms, and the self time (ms) spent in each top-level package.

    ``pycache`` is where bytecode is read (and, with ``write_bytecode``, written); None: next to
    the sources, as Python does by default.
    """
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    code = f"import sys; sys.path[:0] = [{str(function_dir)!r}, {str(ROOT / 'shared')!r}]; import app"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    total = 0.0
    by_package: dict[str, float] = {}
    for line in out.stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        self_us, cumulative_us, indent, name = (int(match.group(1)), int(match.group(2)), match.group(3),
                                                match.group(4))
        if name == "app" and indent == "":
            total = cumulative_us / 1000
        top = name.split(".")[0]
        by_package[top] = by_package.get(top, 0.0) + self_us / 1000
    return total, by_package


def main(runs: int = 5) -> str:
    rows = [f"| function | import (ms, median of {runs}) | with X-Ray tracer | where the time goes (self ms) |",
            "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as tmp:
        pycache = Path(tmp)
        for function_dir in sorted((ROOT / "functions").iterdir()):
            if not (function_dir / "app.py").exists():
                continue
            for tracing in (False, True):  # unmeasured: compiles what this function imports into the cache
                import_ms(function_dir, tracing=tracing, pycache=pycache, write_bytecode=True)
            plain = sorted((import_ms(function_dir, tracing=False, pycache=pycache) for _ in range(runs)),
                           key=lambda run: run[0])
            traced = [import_ms(function_dir, tracing=True, pycache=pycache)[0] for _ in range(runs)]
            heaviest = sorted(plain[len(plain) // 2][1].items(), key=lambda kv: -kv[1])[:5]  # the median run
            detail = ", ".join(f"{name} {ms:.0f}" for name, ms in heaviest)
            rows.append(f"| {function_dir.name} | {statistics.median(t for t, _ in plain):.0f} | "
                        f"{statistics.median(traced):.0f} | {detail} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(main())
