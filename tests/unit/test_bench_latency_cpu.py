"""The latency bench's CPU accounting: which processes count as the local stack, and as which part."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from scripts.bench import machine
from scripts.bench.collab_latency import stack_cpu_seconds

_BURN = ("import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
         "print('done', flush=True)\n")


def _burner(*argv: str) -> subprocess.Popen[str]:
    # argv after -c lands in the process's command line, as a worker's --task-root does
    return subprocess.Popen([sys.executable, "-c", _BURN + "input()", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_children_count_by_part() -> None:
    worker = _burner("--task-root", "/somewhere/functions/websocket")
    moto = _burner("-m", "scripts.localstack.moto_main")
    try:
        for child in (worker, moto):
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "done"  # its 0.3 s of CPU are spent
        parts = stack_cpu_seconds()
    finally:
        for child in (worker, moto):
            child.kill()
            child.wait()
    assert parts["websocket"] >= 0.25
    assert parts["moto"] >= 0.25
    assert "orchestrator" in parts  # this process
    # (a stack another test started in this process may add its own functions' parts)


def test_a_process_outside_the_tree_is_not_counted() -> None:
    outsider = _burner("--task-root", "/elsewhere/functions/stranger")
    try:
        assert outsider.stdout is not None
        outsider.stdout.readline()
        assert "stranger" not in stack_cpu_seconds(root=1 << 22)  # a root that is no ancestor of it
        assert "stranger" in stack_cpu_seconds()
    finally:
        outsider.kill()
        outsider.wait()


def test_the_probe_reads_the_median_of_its_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = iter([0.01, 0.09, 0.04])  # seconds each run of the work takes: the median is 40 ms
    monkeypatch.setattr(machine, "_work", lambda: time.sleep(next(durations)))
    assert 35 <= machine.probe_ms(repeats=3) < 80


def test_the_probe_times_the_real_work() -> None:
    started = time.perf_counter()
    reading = machine.probe_ms(repeats=1)
    assert 0 < reading <= (time.perf_counter() - started) * 1000
