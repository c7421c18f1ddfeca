"""How fast this machine runs Python right now: a fixed single-threaded workload, timed.

The bench runs on a shared 2-core VM whose speed drifts between spells: the same workload, on an
idle machine with no steal time, took 640 ms in one minute and 1,150 ms in another (2026-12-07).
Latency under load follows that drift — at 50 editors x 2/s the local stack needs about two thirds
of both cores at the machine's usual speed and all of them in a slow spell — so a latency figure
means little without the speed it was measured at.  Each load of the latency bench reads the probe
before and after it (``collab_latency``); the figures go with the result.

The workload is the kind of work the stack does (interpreted loops, small dicts, JSON), about
200 ms at the usual speed here; the median of three runs is reported, in milliseconds (lower is
faster).
"""

from __future__ import annotations

import json
import statistics
import time

_DOCUMENT = {"action": "y", "data": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", "peers": [1, 2, 3]}


def _work() -> int:
    total = 0
    for i in range(500_000):
        total += i * i % 7
    for _ in range(25_000):
        total += len(json.loads(json.dumps(_DOCUMENT)))
    return total


def probe_ms(repeats: int = 3) -> float:
    """The median time of the fixed workload over ``repeats`` runs, in milliseconds."""
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        _work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    print(f"{probe_ms():.0f} ms")
