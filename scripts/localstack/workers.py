"""Lambda emulation: warm execution environments as OS processes, a pool per function.

Each function gets its own pool of child processes (``worker_main.py``).  A pool grows on demand
up to a cap (``max_concurrency``, or the function's reserved concurrency if lower), and reuses an
idle process when there is one, so module state stays warm between invocations and concurrent
invocations really run in separate processes, as two Lambda containers would.  Races between
concurrent invocations therefore show up locally instead of being serialised away.

A child gets exactly the function's environment from the manifest, the local overrides the
orchestrator passes (endpoint, dummy credentials, ...), and the variables Lambda itself defines;
nothing leaks in from the developer's shell.  The timeout is enforced from outside: the process
is killed and replaced, and the invocation fails with Lambda's timeout error.

With :class:`WorkerDoors` the children send their DynamoDB/SQS/EventBridge calls and their
``@connections`` calls over unix sockets rather than loopback HTTP (``door.py``, ``worker_main``).

Children die with this process, however it ends: each inherits the read end of a pipe that only
this process can write to (:func:`lifeline_fd`), and exits when it reads end-of-file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from scripts.localstack.door import MOTO_SERVICES
from scripts.localstack.manifest import FunctionSpec
from scripts.localstack.worker_main import FRAME_HEADER, encode_frame

log = logging.getLogger("localstack.lambda")
function_output = logging.getLogger("localstack.fn")

WORKER_MAIN = Path(__file__).with_name("worker_main.py")
# Environments per function, started on demand as Lambda does (AWS's account default is 1,000).
# 4 queued a workshop's edits: at 50 editors x 2 edits/s, bursts keep 4 busy while half the CPU
# is idle, and the queue then grows (docs/benchmarks.md, edit latency); 8 keeps up.
DEFAULT_MAX_CONCURRENCY = 8
# Environments of one function initialising at once.  In AWS each has CPU of its own; here a burst
# (50 people opening a PRD) started 8 authorizers and 8 WebSocket workers together on two cores,
# each init then took ~4 s and authorizers timed out on their first call (a 500 on the upgrade).
# A request waiting for a new environment takes whichever is free first: that one, or a warm one
# that finished its invocation meanwhile (FunctionPool).
CONCURRENT_INITS_PER_FUNCTION = 2
BACKGROUND_NICE = 10  # added to a background function's processes' niceness (WorkerPool)
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit on the init phase of an on-demand environment
# A background worker's init runs at a lower priority (lower_priority): on a busy machine it gets a
# small share of the cores, which in AWS it would have to itself, so its init is given this many times
# Lambda's limit (at 10 s, the version, git-push and audit functions' cold starts timed out during
# the browser tests).
BACKGROUND_INIT_ALLOWANCE = 6
SHUTDOWN_GRACE_SECONDS = 2.0
# Lambda retries a failed asynchronous invocation twice, about 1 and 2 minutes apart.  Locally the
# waits are seconds so that a failure and its retries show up in the dev log while one watches.
ASYNC_RETRY_DELAYS_SECONDS: tuple[float, ...] = (1.0, 2.0)
_LOG_LINE_LIMIT = 64 * 1024

Outcome = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class InvocationResult:
    """The outcome of one invocation, as the caller of ``Invoke`` would see it."""

    function: str
    request_id: str
    outcome: Outcome
    payload: Any = None  # the handler's return value (outcome "ok")
    error: dict[str, Any] | None = None  # Lambda's error object: errorType, errorMessage, stackTrace
    duration_ms: float = 0.0
    init_duration_ms: float | None = None  # set when the invocation started a new process

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def cold_start(self) -> bool:
        return self.init_duration_ms is not None


@dataclass(frozen=True)
class WorkerDoors:
    """The doors the workers use (``door.py``): unix socket paths, and what moto's door serves."""

    moto: str | None = None
    gateway: str | None = None
    services: frozenset[str] = MOTO_SERVICES
    # moto's door for background functions' workers, served after the interactive ones' (moto_main.Turns)
    moto_background: str | None = None

    def arguments(self, *, background: bool = False) -> list[str]:
        """``worker_main``'s command-line options for these doors (a background function's: ``background``)."""
        args: list[str] = []
        moto = (self.moto_background or self.moto) if background else self.moto
        if moto:
            args += ["--moto-door", moto, "--door-services", ",".join(sorted(self.services))]
        if self.gateway:
            args += ["--gateway-door", self.gateway]
        return args


# An unprivileged process may change an autogroup's niceness once per 100 ms, machine-wide (the
# kernel answers EAGAIN otherwise): workers started together take turns.
AUTOGROUP_RETRY_SECONDS = 0.11
AUTOGROUP_ATTEMPTS = 30


async def lower_priority(pid: int, nice: int) -> None:
    """Add ``nice`` to a worker's niceness, and to its autogroup's where the kernel groups sessions.

    Each worker runs in a session of its own (``start_new_session``).  With autogrouping
    (``/proc/sys/kernel/sched_autogroup_enabled``, on in most distributions' kernels, and here) a
    session is a scheduling group of its own, and CFS first shares the CPU *between groups*, equally:
    a process's own niceness then only ranks it within its session, which holds nothing else.  A
    niced background worker would still take as much CPU as an interactive one — the doc writer's
    cold start stalled every edit for half a second.  The group's niceness
    (``/proc/<pid>/autogroup``) is what ranks it against the others; raising it needs no privilege,
    but without ``CAP_SYS_ADMIN`` only one change per 100 ms is taken (``EAGAIN``): then it waits
    and tries again.
    """
    with contextlib.suppress(OSError):  # gone already: its init reports why
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + nice)
    group = Path(f"/proc/{pid}/autogroup")
    for _ in range(AUTOGROUP_ATTEMPTS):
        try:
            current = int(group.read_text().split("nice")[1])
            group.write_text(str(min(19, current + nice)))
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return  # no autogrouping (niceness is then enough), or the process is gone
        except (IndexError, ValueError):
            return  # not the format this knows
        await asyncio.sleep(AUTOGROUP_RETRY_SECONDS)
    log.warning("worker %d runs at its session's normal CPU priority: the kernel kept refusing to lower it", pid)


_SHUTTING_DOWN = {"errorType": "ServiceException", "errorMessage": "The local Lambda service is shutting down.",
                  "stackTrace": []}


class _WorkerGone(Exception):
    """The child process died or failed to initialise; carries the Lambda error to report."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


_lifeline: tuple[int, int] | None = None
_lifeline_lock = threading.Lock()


def lifeline_fd() -> int:
    """The read end of this process's lifeline: hand it to a child (``pass_fds``) that must die with us.

    One pipe per process, created on first use; its write end is never written to nor closed, so
    the children's reads block until this process ends and the kernel closes it (see
    ``worker_main.exit_with_parent``).  Both ends are non-inheritable: only ``pass_fds`` passes the
    read end on, and no child ever holds the write end (which would keep the others alive).
    """
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()
        return _lifeline[0]


def lambda_runtime_environment(spec: FunctionSpec) -> dict[str, str]:
    """The variables the Lambda service defines for a Python 3.12 function (reserved names).

    ``AWS_LAMBDA_LOG_STREAM_NAME`` is added per process, as each environment has its own stream.
    """
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec["name"],
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec['name']}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "LAMBDA_TASK_ROOT": spec["code_dir"],
        "_HANDLER": spec["handler"],
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        # Lambda's PATH holds the runtime's own interpreter first; ours is the venv's.
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
    }


def _new_log_stream_name() -> str:
    return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"


class _Worker:
    """One child process: a warm execution environment of one function."""

    def __init__(
        self,
        function: str,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.function = function
        self._process = process
        self._reader = reader
        self._writer = writer
        assert process.stdout is not None and process.stderr is not None
        self._output_tasks = [
            asyncio.create_task(_forward_output(function, process.stdout)),
            asyncio.create_task(_forward_output(function, process.stderr)),
        ]

    @classmethod
    async def start(
        cls,
        function: str,
        spec: FunctionSpec,
        env: Mapping[str, str],
        stack_id: str | None = None,
        doors: WorkerDoors | None = None,
        nice: int = 0,
    ) -> _Worker:
        """Start a process and run Lambda's init phase (importing the handler); raises _WorkerGone.

        ``nice``: added to the process's niceness before its init (a background function's)."""
        lifeline = lifeline_fd()
        layer_args = [arg for layer in spec["layer_dirs"] for arg in ("--layer", layer)]
        parent_end, child_end = socket.socketpair()
        marker = ["--stack-id", stack_id] if stack_id else []
        door_args = doors.arguments(background=nice > 0) if doors is not None else []
        idle = ["--idle"] if nice > 0 else []  # worker_main.run_when_idle
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                str(WORKER_MAIN),
                "--ipc-fd",
                str(child_end.fileno()),
                "--handler",
                spec["handler"],
                "--task-root",
                spec["code_dir"],
                *layer_args,
                "--lifeline-fd",
                str(lifeline),
                *marker,
                *door_args,
                *idle,
                env={**env, "AWS_LAMBDA_LOG_STREAM_NAME": _new_log_stream_name()},
                cwd=spec["code_dir"],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(child_end.fileno(), lifeline),
                # Its own session: Ctrl-C in the terminal reaches the orchestrator, which stops
                # the workers itself, instead of interrupting handlers mid-invocation.  It still
                # dies with the orchestrator (the lifeline), which no signal to a session does.
                start_new_session=True,
            )
        except OSError as exc:  # e.g. the code folder does not exist
            parent_end.close()
            raise _WorkerGone(
                {"errorType": "Runtime.InitError", "errorMessage": f"cannot start the runtime: {exc}", "stackTrace": []}
            ) from None
        except BaseException:  # cancelled while starting it
            parent_end.close()
            raise
        finally:
            child_end.close()
        init_timeout = INIT_TIMEOUT_SECONDS * (BACKGROUND_INIT_ALLOWANCE if nice else 1)
        try:
            if nice:
                await lower_priority(process.pid, nice)
            reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        except BaseException:  # cancelled (the pool is closing): the process must not outlive it
            parent_end.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        worker = cls(function, process, reader, writer)
        try:
            message = await asyncio.wait_for(worker._receive(), init_timeout)
        except asyncio.CancelledError:
            await asyncio.shield(worker.kill())
            raise
        except TimeoutError:
            await worker.kill()
            raise _WorkerGone(
                {
                    "errorType": "Runtime.InitError",
                    "errorMessage": f"Init phase did not finish within {init_timeout:.0f} seconds",
                    "stackTrace": [],
                }
            ) from None
        except _WorkerGone:
            await worker.kill()
            raise
        if message["type"] != "ready":
            await worker.kill()
            raise _WorkerGone(message["error"])
        return worker

    async def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one invocation and wait for its result message; raises TimeoutError or _WorkerGone."""
        async with asyncio.timeout(timeout):
            try:
                self._writer.write(encode_frame(request))
                await self._writer.drain()
            except ConnectionError:
                raise await self._exit_error() from None
            return await self._receive()

    async def _receive(self) -> dict[str, Any]:
        try:
            header = await self._reader.readexactly(FRAME_HEADER.size)
            (length,) = FRAME_HEADER.unpack(header)
            message: dict[str, Any] = json.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await self._exit_error() from None
        return message

    async def _exit_error(self) -> _WorkerGone:
        returncode = await self._process.wait()
        return _WorkerGone(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"Runtime exited with error: exit status {returncode}",
                "stackTrace": [],
            }
        )

    async def close(self) -> None:
        """Let the process exit on its own (EOF on its socket); kill it if it does not."""
        self._writer.close()
        try:
            await asyncio.wait_for(self._process.wait(), SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            await self.kill()
        await self._drain_output()

    async def kill(self) -> None:
        self._writer.close()
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        await self._process.wait()
        await self._drain_output()

    async def _drain_output(self) -> None:
        # The pipes reach EOF once the process is gone; wait so its last lines are not lost.
        await asyncio.gather(*self._output_tasks, return_exceptions=True)


async def _forward_output(function: str, stream: asyncio.StreamReader) -> None:
    """Copy a child's stdout or stderr to the dev log, one record per line."""
    pending = b""
    while chunk := await stream.read(_LOG_LINE_LIMIT):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) >= _LOG_LINE_LIMIT:  # a very long line without a newline: emit it anyway
            lines.append(pending)
            pending = b""
        for line in lines:
            function_output.info("[%s] %s", function, line.decode(errors="replace").rstrip("\r"))
    if pending:
        function_output.info("[%s] %s", function, pending.decode(errors="replace"))


class FunctionPool:
    """The execution environments of one function, growing on demand up to ``capacity``."""

    def __init__(
        self,
        function: str,
        spec: FunctionSpec,
        env: Mapping[str, str],
        capacity: int,
        stack_id: str | None = None,
        doors: WorkerDoors | None = None,
        nice: int = 0,
    ) -> None:
        self.function = function
        self.spec = spec
        self.capacity = capacity
        self.nice = nice
        self._env = dict(env)
        self._stack_id = stack_id
        self._doors = doors
        self._slots = asyncio.Semaphore(capacity)
        self._idle: list[_Worker] = []  # most recently used last: reused first, as Lambda does
        self._busy: set[_Worker] = set()
        # Invocations waiting for an environment, first come first served: a started or a freed one.
        self._waiters: collections.deque[asyncio.Future[tuple[_Worker, float | None]]] = collections.deque()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def invoke(self, event: Any) -> InvocationResult:
        request_id = str(uuid.uuid4())
        if self.capacity == 0:  # reserved concurrency 0: Lambda throttles every invocation
            return self._report(
                InvocationResult(
                    self.function,
                    request_id,
                    "error",
                    error={
                        "errorType": "TooManyRequestsException",
                        "errorMessage": "Rate Exceeded.",
                        "stackTrace": [],
                    },
                )
            )
        async with self._slots:
            if self._closed:
                raise RuntimeError(f"the worker pool of {self.function} is shut down")
            return self._report(await self._invoke_in_worker(request_id, event))

    async def _invoke_in_worker(self, request_id: str, event: Any) -> InvocationResult:
        asked = time.monotonic()
        try:
            worker, init_ms = await self._take_worker()
        except _WorkerGone as gone:
            return self._failure(request_id, asked, gone.error, (time.monotonic() - asked) * 1000)
        if self._closed:  # closed between the hand-over and now: the environment goes with the pool
            await asyncio.shield(worker.kill())
            return self._failure(request_id, asked, _SHUTTING_DOWN, init_ms)
        self._busy.add(worker)
        request = {
            "request_id": request_id,
            "event": event,
            "invoked_function_arn": self.spec["arn"],
            "deadline_ms": int(time.time() * 1000) + self.spec["timeout"] * 1000,
        }
        invoke_started = time.monotonic()
        keep_warm = False
        try:
            message = await worker.invoke(request, self.spec["timeout"])
            keep_warm = True
        except TimeoutError:
            return InvocationResult(
                self.function,
                request_id,
                "timeout",
                error={
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                    f"{self.spec['timeout']:.2f} seconds",
                    "stackTrace": [],
                },
                duration_ms=(time.monotonic() - invoke_started) * 1000,
                init_duration_ms=init_ms,
            )
        except _WorkerGone as gone:
            return self._failure(request_id, invoke_started, gone.error, init_ms)
        finally:
            self._busy.discard(worker)
            if keep_warm and not self._closed:
                self._hand_over(worker, None)
            else:
                # Timed out, crashed, cancelled or shutting down: its state is unknown, replace it.
                self._start_for_waiters()
                await asyncio.shield(worker.kill())
        duration_ms = (time.monotonic() - invoke_started) * 1000
        if message["type"] == "result":
            return InvocationResult(
                self.function,
                request_id,
                "ok",
                payload=message["payload"],
                duration_ms=duration_ms,
                init_duration_ms=init_ms,
            )
        return InvocationResult(
            self.function,
            request_id,
            "error",
            error=message["error"],
            duration_ms=duration_ms,
            init_duration_ms=init_ms,
        )

    async def _take_worker(self) -> tuple[_Worker, float | None]:
        """An environment for one invocation, and its init time if it was started for it (a cold
        start); raises ``_WorkerGone`` if the environment started for it failed its init.

        A warm idle one if there is one; else the invocation waits for the first environment that is
        free — one started now on its behalf (at most ``CONCURRENT_INITS_PER_FUNCTION`` at once), or
        a warm one whose invocation ended meanwhile, whichever comes first.  An environment started
        for an invocation that was served by another stays warm for the next.
        """
        if self._idle:
            return self._idle.pop(), None
        waiter: asyncio.Future[tuple[_Worker, float | None]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._start_for_waiters()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                worker = waiter.result()[0]  # handed over just as the invocation was cancelled
                if self._closed:
                    await asyncio.shield(worker.kill())
                else:
                    self._hand_over(worker, None)
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    def _start_for_waiters(self) -> None:
        """Start environments for the waiting invocations that no start in progress will serve,
        within the init limit and the function's capacity (environments idle, busy or starting)."""
        while (
            not self._closed
            and len(self._waiters) > len(self._starting)
            and len(self._starting) < CONCURRENT_INITS_PER_FUNCTION
            and len(self._idle) + len(self._busy) + len(self._starting) < self.capacity
        ):
            task = asyncio.create_task(self._start_one())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        task = asyncio.current_task()
        started = time.monotonic()
        try:
            worker = await _Worker.start(self.function, self.spec, self._env, self._stack_id, self._doors, self.nice)
        except Exception as exc:  # an init error, or e.g. no file descriptors left: someone reports it
            gone = exc if isinstance(exc, _WorkerGone) else _WorkerGone({
                "errorType": "Runtime.InitError", "errorMessage": f"cannot start the runtime: {exc}", "stackTrace": []})
            self._starting.discard(task)  # type: ignore[arg-type]
            # The first waiting invocation reports the failed init, as the one that caused it would.
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_exception(gone)
            else:
                log.warning("%s: an environment failed its init: %s", self.function, gone.error.get("errorMessage"))
            self._start_for_waiters()
            return
        self._starting.discard(task)  # type: ignore[arg-type]
        if self._closed:
            await worker.kill()
            return
        self._hand_over(worker, (time.monotonic() - started) * 1000)
        self._start_for_waiters()

    def _hand_over(self, worker: _Worker, init_ms: float | None) -> None:
        """A free environment to the first waiting invocation, else to the idle ones."""
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result((worker, init_ms))
        else:
            self._idle.append(worker)

    def _next_waiter(self) -> asyncio.Future[tuple[_Worker, float | None]] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _failure(self, request_id: str, since: float, error: dict[str, Any], init_ms: float | None) -> InvocationResult:
        return InvocationResult(
            self.function,
            request_id,
            "error",
            error=error,
            duration_ms=(time.monotonic() - since) * 1000,
            init_duration_ms=init_ms,
        )

    @staticmethod
    def _report(result: InvocationResult) -> InvocationResult:
        """The one log line per invocation, after Lambda's REPORT line."""
        outcome = result.outcome if result.error is None else f"{result.outcome} ({result.error['errorType']})"
        cold = "" if result.init_duration_ms is None else f" cold start, init {result.init_duration_ms:.0f} ms"
        log.info("%s %s %.1f ms %s%s", result.function, result.request_id, result.duration_ms, outcome, cold)
        return result

    async def close(self) -> None:
        """Stop every process: idle ones exit on EOF, busy ones are killed."""
        self._closed = True
        starting = list(self._starting)
        for task in starting:
            task.cancel()  # _Worker.start kills a process it began
        await asyncio.gather(*starting, return_exceptions=True)
        while (waiter := self._next_waiter()) is not None:
            waiter.set_exception(_WorkerGone(_SHUTTING_DOWN))
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.close() for worker in idle), *(worker.kill() for worker in list(self._busy)))


class WorkerPool:
    """Every function of the manifest, invocable by logical id: the local Lambda service."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        *,
        env_overrides: Mapping[str, str] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        async_retry_delays: Sequence[float] = ASYNC_RETRY_DELAYS_SECONDS,
        stack_id: str | None = None,
        doors: WorkerDoors | None = None,
        background: Collection[str] = (),
    ) -> None:
        """``stack_id`` marks every process (``--stack-id``) so a later start can find leftovers;
        ``doors``: the unix sockets the workers reach moto and ``@connections`` through (None: HTTP).

        ``background``: functions nobody waits for (queue, rule and schedule targets); their processes
        run at a lower CPU priority (``BACKGROUND_NICE``).  In AWS every execution environment has
        CPU of its own; here all share a few cores, and a background burst — the search indexer
        embedding a PRD with the local model takes seconds of CPU — would otherwise delay the
        requests people wait for (it doubled the edit relay's latency while it ran)."""
        overrides = dict(env_overrides or {})
        self._async_retry_delays = tuple(async_retry_delays)
        self._pools: dict[str, FunctionPool] = {}
        for logical_id, spec in functions.items():
            # Precedence: the template's variables, then the local overrides, then the names
            # Lambda reserves for itself (a template cannot set those in AWS either).
            env = {**spec["environment"], **overrides, **lambda_runtime_environment(spec)}
            reserved = spec.get("reserved_concurrency")
            capacity = max_concurrency if reserved is None else min(max_concurrency, reserved)
            nice = BACKGROUND_NICE if logical_id in background else 0
            self._pools[logical_id] = FunctionPool(logical_id, spec, env, capacity, stack_id, doors, nice)

    async def invoke(self, function: str, event: Any) -> InvocationResult:
        """Synchronous invocation (``RequestResponse``): what API Gateway and SQS pollers do."""
        try:
            pool = self._pools[function]
        except KeyError:
            raise KeyError(f"no function {function!r} in the manifest") from None
        return await pool.invoke(event)

    async def invoke_async(self, function: str, event: Any, *, source: str) -> InvocationResult:
        """Asynchronous invocation (``Event``), with Lambda's two retries of a failed event.

        What EventBridge rules and schedules do.  ``source`` names the trigger in the log; an
        event that fails every attempt is logged as dropped (there is no on-failure destination).
        """
        attempts = len(self._async_retry_delays) + 1
        for attempt, delay in enumerate((*self._async_retry_delays, None), start=1):
            result = await self.invoke(function, event)
            if result.ok or delay is None:
                break
            log.warning(
                "%s: event from %s failed (attempt %d of %d); retrying in %.0f s",
                function,
                source,
                attempt,
                attempts,
                delay,
            )
            await asyncio.sleep(delay)
        if not result.ok:
            log.error(
                "%s: event from %s dropped after %d attempts: %s",
                function,
                source,
                attempts,
                (result.error or {}).get("errorMessage"),
            )
        return result

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))
