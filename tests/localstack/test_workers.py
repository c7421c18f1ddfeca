"""The Lambda emulation: warm processes, concurrency, timeouts, errors, environment, context."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.localstack import workers
from scripts.localstack.manifest import FunctionSpec
from scripts.localstack.workers import InvocationResult, WorkerPool
from tests.localstack.fixtures.manifests import FIXTURES, function_spec

pytestmark = pytest.mark.timeout(30)


def basic(handler: str, **options: Any) -> FunctionSpec:
    return function_spec(handler, "basic", f"app.{handler}", layers=("layer",), **options)


def with_pool[T](specs: list[FunctionSpec], body: Callable[[WorkerPool], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        pool = WorkerPool({spec["logical_id"]: spec for spec in specs}, **options)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def invoke_in_order(spec: FunctionSpec, *events: Any, **options: Any) -> list[InvocationResult]:
    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return [await pool.invoke(spec["logical_id"], event) for event in events]

    return with_pool([spec], body, **options)


def test_a_warm_process_keeps_module_state_between_invocations() -> None:
    first, second = invoke_in_order(basic("count"), {}, {})

    assert first.ok and second.ok
    assert first.payload["pid"] == second.payload["pid"]
    assert (first.payload["invocations"], second.payload["invocations"]) == (1, 2)
    assert first.cold_start and not second.cold_start


def test_concurrent_invocations_run_in_separate_processes() -> None:
    spec = basic("sleep")

    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return await asyncio.gather(*(pool.invoke("sleep", {"seconds": 0.5}) for _ in range(2)))

    started = time.monotonic()
    results = with_pool([spec], body)

    assert all(result.ok for result in results)
    assert results[0].payload["pid"] != results[1].payload["pid"]
    assert time.monotonic() - started < 2 * 0.5 + 1.0  # they overlapped


def test_the_number_of_processes_per_function_is_capped() -> None:
    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return await asyncio.gather(*(pool.invoke("sleep", {"seconds": 0.3}) for _ in range(3)))

    results = with_pool([basic("sleep")], body, max_concurrency=1)

    assert all(result.ok for result in results)
    assert len({result.payload["pid"] for result in results}) == 1
    assert [result.cold_start for result in results].count(True) == 1


def test_a_timeout_kills_the_process_and_the_next_invocation_gets_a_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    timed_out, after = invoke_in_order(basic("sleep", timeout=1), {"seconds": 30}, {"seconds": 0})

    assert timed_out.outcome == "timeout"
    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.error["errorMessage"]
    assert 900 < timed_out.duration_ms < 3000
    assert after.ok and after.cold_start
    (killed_pid,) = {
        int(m.group(1)) for r in caplog.records if (m := re.search(r"\[sleep\] sleeping in (\d+)", r.getMessage()))
    } - {after.payload["pid"]}
    with pytest.raises(ProcessLookupError):
        os.kill(killed_pid, 0)


def test_an_unhandled_exception_is_an_error_result_and_the_process_stays_warm() -> None:
    failed, after = invoke_in_order(basic("maybe_fail"), {"fail": True, "value": 7}, {"fail": False})

    assert failed.outcome == "error"
    assert failed.error is not None
    assert failed.error["errorType"] == "ValueError"
    assert failed.error["errorMessage"] == "bad input: 7"
    assert any("basic/app.py" in frame and "in maybe_fail" in frame for frame in failed.error["stackTrace"])
    assert not any("worker_main.py" in frame for frame in failed.error["stackTrace"])
    assert after.ok and not after.cold_start


def test_the_environment_is_exactly_the_functions_plus_overrides_and_lambdas_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEAK_FROM_THE_SHELL", "must not reach the function")
    spec = basic("environment", environment={"QUEUE": "q1", "TABLE": "t1", "AWS_REGION": "template-region"})
    overrides = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_REGION": "us-east-1", "TABLE": "local-t1"}

    (result,) = invoke_in_order(spec, {}, env_overrides=overrides)

    environ = result.payload["environ"]
    expected = {
        "QUEUE": "q1",  # the template's variables
        "TABLE": "local-t1",  # overrides beat the template
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "test-environment",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test-environment",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "LAMBDA_TASK_ROOT": str(FIXTURES / "basic"),
        "_HANDLER": "app.environment",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
    }
    assert {key: environ.get(key) for key in expected} == expected
    # Besides those, only PATH, the per-process log stream, and the interpreter's own locale
    # coercion (PEP 538 sets LC_CTYPE when LANG names a locale the machine lacks).
    assert set(environ) - set(expected) <= {"PATH", "AWS_LAMBDA_LOG_STREAM_NAME", "LC_CTYPE"}
    assert environ["AWS_LAMBDA_LOG_STREAM_NAME"].startswith(time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()))
    assert result.payload["sys_path"][:2] == [str(FIXTURES / "basic"), str(FIXTURES / "layer")]
    assert result.payload["cwd"] == str(FIXTURES / "basic")
    assert result.payload["layer"] == "hello from the layer"


def test_the_context_object_is_lambdas() -> None:
    spec = basic("describe_context", timeout=7)

    (result,) = invoke_in_order(spec, {})

    context = result.payload
    assert context["function_name"] == "test-describe_context"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == spec["arn"]
    assert context["memory_limit_in_mb"] == "256"  # a string, as in the real runtime
    assert context["aws_request_id"] == result.request_id
    assert context["log_group_name"] == "/aws/lambda/test-describe_context"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", context["log_stream_name"])
    assert 6000 < context["remaining_ms"] <= 7000


def test_a_missing_module_is_an_init_error() -> None:
    (result,) = invoke_in_order(function_spec("missing", "basic", "nowhere.handler"), {})

    assert result.outcome == "error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'nowhere'" in result.error["errorMessage"]


def test_a_process_that_dies_is_an_exit_error_and_is_replaced() -> None:
    spec = basic("crash")

    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return [await pool.invoke("crash", {}), await pool.invoke("crash", {})]

    first, second = with_pool([spec], body)

    assert first.error is not None and first.error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in first.error["errorMessage"]
    assert second.cold_start  # a fresh process took its place


def test_a_result_that_is_not_json_is_a_marshal_error() -> None:
    (result,) = invoke_in_order(basic("unserialisable"), {})

    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MarshalError"


def test_output_goes_to_the_log_prefixed_by_the_function_and_one_report_line_per_invocation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    (result,) = invoke_in_order(basic("chatty"), {})

    assert result.payload == "fine"  # printing did not disturb the result
    output = [record.getMessage() for record in caplog.records if record.name == "localstack.fn"]
    assert "[chatty] to stdout" in output
    assert "[chatty] to stderr" in output
    reports = [record.getMessage() for record in caplog.records if record.name == "localstack.lambda"]
    assert len(reports) == 1
    assert re.fullmatch(rf"chatty {result.request_id} [\d.]+ ms ok cold start, init \d+ ms", reports[0])


def test_an_asynchronous_invocation_is_retried_twice_then_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def body(pool: WorkerPool) -> InvocationResult:
        return await pool.invoke_async("maybe_fail", {"fail": True, "value": 1}, source="test")

    result = with_pool([basic("maybe_fail")], body, async_retry_delays=(0.05, 0.05))

    assert result.outcome == "error"
    reports = [r for r in caplog.records if r.name == "localstack.lambda" and r.getMessage().startswith("maybe_fail ")]
    assert len(reports) == 3
    assert any("dropped after 3 attempts" in record.getMessage() for record in caplog.records)


def test_a_background_functions_processes_run_at_a_lower_cpu_priority() -> None:
    background, waited_for = basic("count"), function_spec("waited", "basic", "app.count", layers=("layer",))

    async def body(pool: WorkerPool) -> list[tuple[int, int | None, set[int]]]:
        results = [await pool.invoke("count", {}), await pool.invoke("waited", {})]
        assert all(result.ok for result in results)
        return [(os.getpriority(os.PRIO_PROCESS, result.payload["pid"]), _autogroup_nice(result.payload["pid"]),
                 _policies(result.payload["pid"])) for result in results]

    (low, low_group, low_policies), (normal, normal_group, normal_policies) = with_pool(
        [background, waited_for], body, background={"count"})
    assert (low, normal) == (os.getpriority(os.PRIO_PROCESS, 0) + 10, os.getpriority(os.PRIO_PROCESS, 0))
    # every thread of the background worker (its lifeline watcher too) gives way to any waking process
    assert low_policies == {os.SCHED_IDLE}
    assert normal_policies == {os.sched_getscheduler(0)}
    if low_group is not None:  # sessions are scheduling groups of their own: the group's niceness ranks them
        assert normal_group is not None
        assert low_group == min(19, normal_group + 10)


def _policies(pid: int) -> set[int]:
    """The scheduling policies of a process's threads."""
    return {os.sched_getscheduler(int(thread)) for thread in os.listdir(f"/proc/{pid}/task")}


def _autogroup_nice(pid: int) -> int | None:
    """``/proc/<pid>/autogroup``'s niceness ("/autogroup-42 nice 10"), None without autogrouping."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def test_an_autogroup_busy_right_now_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CAP_SYS_ADMIN the kernel takes one autogroup niceness change per 100 ms (EAGAIN): the
    worker's group is lowered on a later try, not left at normal priority."""
    import errno
    import subprocess

    from scripts.localstack import workers

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        before = _autogroup_nice(child.pid)
        if before is None:
            pytest.skip("no autogrouping on this kernel")
        refusals = 2
        real_write = Path.write_text

        def busy_then_real(self: Path, data: str, *args: object, **kwargs: object) -> int:
            nonlocal refusals
            if self.name == "autogroup" and refusals:
                refusals -= 1
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            return real_write(self, data, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "write_text", busy_then_real)
        monkeypatch.setattr(workers, "AUTOGROUP_RETRY_SECONDS", 0.01)
        asyncio.run(workers.lower_priority(child.pid, 5))
        assert refusals == 0
        assert _autogroup_nice(child.pid) == min(19, before + 5)
    finally:
        child.kill()
        child.wait()


def slow_init(records: Path, init_seconds: float) -> FunctionSpec:
    return function_spec("slow", "basic", "slow_init.handler",
                         environment={"RECORD_FILE": str(records), "INIT_SECONDS": str(init_seconds)})


def init_spans(records: Path) -> dict[int, list[float]]:
    spans: dict[int, list[float]] = {}
    for line in records.read_text().splitlines():
        entry = json.loads(line)
        spans.setdefault(entry["pid"], []).append(entry.get("init_start", entry.get("init_end")))
    return spans


def test_a_burst_initialises_at_most_two_environments_at_once_and_serves_everyone(tmp_path: Path) -> None:
    records = tmp_path / "inits.jsonl"

    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return await asyncio.gather(*(pool.invoke("slow", {"seconds": 0.05}) for _ in range(8)))

    results = with_pool([slow_init(records, 0.6)], body)

    assert all(result.ok for result in results)
    spans = init_spans(records)  # (inits still running when the pool closed were ended: no end)
    moments = sorted([(span[0], 1) for span in spans.values()] + [(span[1], -1) for span in spans.values()
                                                                   if len(span) == 2])
    at_once = max(sum(step for _, step in moments[: index + 1]) for index in range(len(moments)))
    assert at_once == workers.CONCURRENT_INITS_PER_FUNCTION
    assert len(spans) < len(results)  # warm environments that came free served some of the burst
    served_cold = [result.payload["pid"] for result in results if result.cold_start]
    assert len(served_cold) == len(set(served_cold)) <= len(spans)


def test_an_invocation_takes_a_warm_environment_freed_before_its_own_init_ends(tmp_path: Path) -> None:
    records = tmp_path / "inits.jsonl"

    async def body(pool: WorkerPool) -> tuple[InvocationResult, InvocationResult, InvocationResult, float]:
        first = await pool.invoke("slow", {})
        busy = asyncio.create_task(pool.invoke("slow", {"seconds": 0.3}))
        await asyncio.sleep(0.05)
        asked = time.monotonic()
        waiting = await pool.invoke("slow", {})  # no idle environment: one starts (2 s), the busy one frees first
        waited = time.monotonic() - asked
        return first, await busy, waiting, waited

    first, busy, waiting, waited = with_pool([slow_init(records, 2.0)], body)

    assert first.cold_start and not busy.cold_start and not waiting.cold_start
    assert waiting.payload["pid"] == first.payload["pid"]
    assert waited < 1.5  # it did not wait for the new environment's 2 s init


def test_closing_the_pool_ends_an_init_in_progress_and_fails_its_invocation(tmp_path: Path) -> None:
    records = tmp_path / "inits.jsonl"

    async def main() -> InvocationResult:
        pool = WorkerPool({"slow": slow_init(records, 30.0)})
        invocation = asyncio.create_task(pool.invoke("slow", {}))
        deadline = time.monotonic() + 10
        while not records.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await pool.close()
        return await invocation

    result = asyncio.run(main())

    assert result.error is not None and result.error["errorType"] == "ServiceException"
    (pid,) = init_spans(records)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_an_environment_that_cannot_even_start_fails_its_invocation_and_the_next_is_served(
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = workers._Worker.start
    failures = [OSError(24, "Too many open files")]

    async def start(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await original(*args, **kwargs)

    monkeypatch.setattr(workers._Worker, "start", start)

    async def body(pool: WorkerPool) -> list[InvocationResult]:
        return [await asyncio.wait_for(pool.invoke("count", {}), 20) for _ in range(2)]

    failed, served = with_pool([basic("count")], body, max_concurrency=1)

    assert failed.error is not None and failed.error["errorType"] == "Runtime.InitError"
    assert "Too many open files" in failed.error["errorMessage"]
    assert served.ok and served.cold_start
