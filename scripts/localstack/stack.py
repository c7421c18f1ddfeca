"""The local stack's orchestrator: moto, provisioning, the runtime, state and demo data.

``LocalStack`` is what ``make dev`` runs (through ``__main__``) and what integration tests start:
it binds the gateway's port first (so a taken port is a clear one-line error before anything
starts), runs the moto server as a subprocess, provisions ``template.yaml`` into it, restores the
saved tables and buckets, starts the runtime (Lambda workers, gateway, SQS pollers, timers) on an
asyncio loop in a background thread, and seeds the demo users and PRD.  ``stop()`` undoes it all
in the order that loses nothing: inputs first (gateway, pollers, timers), then the workers, then
a final save of the state, then moto.

``Runtime`` is the part that executes a manifest; tests drive it with hand-built manifests and no
moto at all, through ``LoopThread``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from scripts.localstack.gateway import WS_IDLE_SECONDS, WS_MAX_SECONDS, Gateway, listen_socket
from scripts.localstack.manifest import Manifest
from scripts.localstack.pollers import SqsPollers
from scripts.localstack.seed import seed
from scripts.localstack.timers import Timers
from scripts.localstack.workers import DEFAULT_MAX_CONCURRENCY, WorkerPool

log = logging.getLogger("localstack.stack")

HOST = "127.0.0.1"
AUTOSAVE_SECONDS = 30.0
MOTO_START_SECONDS = 30.0


class StackError(RuntimeError):
    """The local stack cannot start; the message is one line meant for the person running it."""


class PortInUseError(StackError):
    pass


@dataclass(frozen=True)
class RuntimeSettings:
    """The runtime's knobs, read once from the environment by :meth:`from_env`."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY  # LOCAL_MAX_CONCURRENCY: processes per function
    schedule_scale: float = 1.0  # LOCAL_SCHEDULE_SCALE: multiplies schedule periods
    ws_idle_seconds: float = WS_IDLE_SECONDS  # LOCAL_WS_IDLE_SECONDS
    ws_max_seconds: float = WS_MAX_SECONDS  # LOCAL_WS_MAX_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        return cls(
            max_concurrency=_positive(environ, "LOCAL_MAX_CONCURRENCY", int, DEFAULT_MAX_CONCURRENCY),
            schedule_scale=_positive(environ, "LOCAL_SCHEDULE_SCALE", float, 1.0),
            ws_idle_seconds=_positive(environ, "LOCAL_WS_IDLE_SECONDS", float, WS_IDLE_SECONDS),
            ws_max_seconds=_positive(environ, "LOCAL_WS_MAX_SECONDS", float, WS_MAX_SECONDS),
        )


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
    ) -> None:
        self.pool = WorkerPool(
            manifest["functions"], env_overrides=env_overrides, max_concurrency=settings.max_concurrency
        )
        self.timers = Timers(manifest, self.pool, scale=settings.schedule_scale)
        self.pollers = SqsPollers(manifest, self.pool)
        self.gateway = Gateway(
            manifest,
            self.pool,
            static_dir=static_dir,
            schedule_runner=self.timers.run_now,
            ws_idle_seconds=settings.ws_idle_seconds,
            ws_max_seconds=settings.ws_max_seconds,
        )

    async def start(self, sock: socket.socket) -> None:
        await self.gateway.start(sock)
        await self.pollers.start()
        await self.timers.start()

    async def stop(self) -> None:
        """Inputs first, so nothing new arrives while the workers are stopped."""
        await self.timers.stop()
        await self.pollers.stop()
        await self.gateway.stop()  # closes WebSockets: their $disconnect still runs on live workers
        await self.pool.close()


class LoopThread:
    """An asyncio loop in a daemon thread, driven from synchronous code (``make dev``, tests)."""

    def __init__(self, name: str = "localstack-runtime") -> None:
        self._loop = asyncio.new_event_loop()
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
    """

    def __init__(self, port: int = 0) -> None:
        port = port or _reserve_free_port()
        self.url = f"http://{HOST}:{port}"
        self._process = subprocess.Popen(
            # moto.server, with S3 conditional puts made atomic as in AWS (see moto_main.py).
            [sys.executable, str(Path(__file__).with_name("moto_main.py")), "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches only the orchestrator, which saves state through
            # moto before stopping it.
            start_new_session=True,
        )
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

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class LocalStack:
    """The whole product on one machine: ``start()``/``stop()``, or use it as a context manager."""

    def __init__(
        self,
        repo_root: Path,
        port: int = 3000,
        moto_port: int | None = None,
        state_dir: Path | None = None,
        seed: bool = True,
        settings: RuntimeSettings | None = None,
        function_env: Mapping[str, str] | None = None,
    ) -> None:
        self.repo_root = repo_root.resolve()
        # Extra environment for every function, on top of the template's (tests: other limits).
        self.function_env = dict(function_env or {})
        self.port = port
        self.moto_port = moto_port
        self.state_dir = state_dir
        self._seed = seed
        self.settings = settings or RuntimeSettings.from_env()
        self.base_url = ""
        self.ws_url = ""
        self.moto_url = ""
        self.manifest: Manifest | None = None
        self._moto: MotoServer | None = None
        self._loop: LoopThread | None = None
        self._runtime: Runtime | None = None
        self._autosave: concurrent.futures.Future[Any] | None = None
        self._save_lock = threading.Lock()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything; raises :class:`StackError` (one line) if it cannot."""
        try:
            sock = listen_socket(HOST, self.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_error(self.port, "PORT") from None
            raise
        try:
            self._start(sock)
        except BaseException:
            sock.close()
            self.stop()
            raise

    def _start(self, sock: socket.socket) -> None:
        port = sock.getsockname()[1]
        self.base_url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}/ws"
        moto_port = self.moto_port if self.moto_port is not None else (port + 1 if self.port else 0)
        if moto_port and not _check_port_free(moto_port):
            raise _port_error(moto_port, "MOTO_PORT", " (moto)")
        self._moto = MotoServer(moto_port)
        self.moto_url = self._moto.url
        self._moto.wait_until_ready()
        log.info("AWS services emulated by moto at %s: DynamoDB, S3, SQS, EventBridge, Cognito", self.moto_url)
        log.info("Bedrock, OpenSearch: not used yet (no embedded provider needed)")

        # Imported here, not at the top: provisioning pulls in samtranslator (about 0.8 s), which
        # users of the runtime alone (tests with hand-built manifests) do not need.
        from scripts.localstack.intrinsics import TemplateError
        from scripts.localstack.provision import ProvisionError, provision, restore_state

        try:
            manifest = provision(self.repo_root / "template.yaml", self.moto_url, repo_root=self.repo_root)
        except (TemplateError, ProvisionError) as exc:
            raise StackError(f"template.yaml cannot run locally: {exc}") from exc
        self.manifest = manifest
        if self.state_dir is not None:
            restore_state(manifest, self.state_dir)

        overrides = self.local_overrides(manifest, port)
        static_dir = self.repo_root / "web" / "dist"
        self._loop = LoopThread()
        self._runtime = self._loop.run(self._start_runtime(manifest, overrides, static_dir, sock))
        if self.state_dir is not None:
            self._autosave = self._loop.spawn(self._autosave_forever())
        if self._seed:
            seed(self)

    async def _start_runtime(
        self, manifest: Manifest, overrides: Mapping[str, str], static_dir: Path, sock: socket.socket
    ) -> Runtime:
        try:
            runtime = Runtime(manifest, env_overrides=overrides, settings=self.settings, static_dir=static_dir)
        except ValueError as exc:  # a manifest feature the runtime does not emulate
            raise StackError(f"template.yaml cannot run locally: {exc}") from exc
        await runtime.start(sock)
        return runtime

    def local_overrides(self, manifest: Manifest, port: int) -> dict[str, str]:
        """What every function's environment gets on top of the template's, to run here."""
        overrides = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": manifest["region"],
            "AWS_DEFAULT_REGION": manifest["region"],
            "WEBSOCKET_CALLBACK_URL": f"http://{HOST}:{port}",  # the gateway serves @connections
            "PUBLIC_API_URL": f"http://localhost:{port}",
            "PUBLIC_WS_URL": f"ws://localhost:{port}/ws",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "LOCAL_STACK": "1",
        }
        pool_id = next(iter(manifest["user_pools"].values()), None)
        if pool_id is not None:
            overrides["AUTH_JWKS_URL"] = f"{self.moto_url}/{pool_id}/.well-known/jwks.json"
        overrides.update(self.function_env)
        return overrides

    async def _autosave_forever(self) -> None:
        """Save every 30 s, so a crash (not a clean stop, which saves anyway) loses little."""
        while True:
            await asyncio.sleep(AUTOSAVE_SECONDS)
            try:
                await asyncio.to_thread(self.save_state)
            except Exception as exc:  # a failed save must not stop the stack; the next one retries
                log.warning("saving the local state failed: %s", exc)

    def save_state(self) -> None:
        """Save tables and buckets to ``state_dir`` (no-op without one)."""
        if self.state_dir is None or self.manifest is None:
            return
        from scripts.localstack.provision import save_state

        with self._save_lock:
            save_state(self.manifest, self.state_dir)

    def stop(self) -> None:
        """Stop everything that started, saving the state first; safe to call more than once."""
        if self._autosave is not None:
            self._autosave.cancel()
            self._autosave = None
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
            except Exception as exc:
                log.error("saving the local state failed: %s", exc)
            self._moto.stop()
            self._moto = None
