"""The scaffolding the local fake services share: an aiohttp app on its own event loop in a daemon thread.

:class:`LoopServer` runs the ``web.Application`` a subclass builds (:meth:`LoopServer.build_app`) on
127.0.0.1 and a free port by default, driven from synchronous code: :meth:`~LoopServer.start` returns
the base URL (also :attr:`~LoopServer.url`), :meth:`~LoopServer.stop` ends it, and it is a context
manager.  :func:`run_standalone` is a fake's ``main()`` once its arguments are parsed: serve until
SIGINT or SIGTERM.

Used by ``bedrock.py``, ``openai_server.py`` and ``confluence.py``; it imports none of the stack
(``stack.py`` has its own loop thread and imports the Confluence fake lazily).  Every loop of the
local stack comes from :func:`new_event_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Self

from aiohttp import web

STEP_TIMEOUT = 10.0  # seconds start/stop wait for the loop (set-up, clean-up, thread exit)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for one of the local stack's threads: uvloop's where it is installed
    (requirements-dev.txt), asyncio's own otherwise, or with ``LOCAL_UVLOOP=0``.

    Why: the gateway's loop carries every edit's fan-out — one WebSocket frame written per peer,
    ~5,000 a second at 50 editors — and uvloop's transports and scheduling (libuv, in C) cost the
    orchestrator ~7 % less CPU per edit than asyncio's selector loop (docs/benchmarks.md).  It is
    asyncio's API: nothing else in the stack knows which loop it runs on.
    """
    if os.environ.get("LOCAL_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopServer:
    """An aiohttp server on its own event loop in a daemon thread.

    Subclasses set :attr:`thread_name` and implement :meth:`build_app` (called on the loop);
    :meth:`shutdown` may be extended to end work in progress before the runner's clean-up.
    """

    thread_name = "fake-server"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""  # http://host:port, once started

    def build_app(self) -> web.Application:
        """The application to serve (called on the server's loop, by :meth:`start`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> str:
        """Serve on a new loop thread; the base URL (also :attr:`url`)."""
        loop = new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=STEP_TIMEOUT)
        except BaseException:
            self.stop()  # e.g. the port is taken: no loop thread left behind
            raise
        return self.url

    def stop(self) -> None:
        """Stop serving (answers in progress get :meth:`shutdown`'s treatment) and end the loop thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.shutdown(runner), loop).result(timeout=STEP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=STEP_TIMEOUT)
        loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ on the loop
    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def shutdown(self, runner: web.AppRunner) -> None:
        """Close the listening sockets and connections (on the loop, from :meth:`stop`)."""
        await runner.cleanup()


def run_standalone[S: LoopServer](server: S, announce: Callable[[S], Iterable[str]]) -> int:
    """Serve ``server`` until SIGINT or SIGTERM, printing the lines ``announce`` gives once it is up.

    A fake's ``main()`` after parsing its arguments; logs at INFO to stderr.  Returns the exit status (0).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        for line in announce(server):
            print(line, flush=True)
        while not stop.wait(0.5):
            pass
    return 0
