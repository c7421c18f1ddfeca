"""Shared test set-up: unit tests never touch the network; settings are reset between tests."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# Defaults for every test process: no real AWS account can ever be reached by accident.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PrdToolTest")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse any outbound connection (unit tests that must stay offline use this)."""

    def guard(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests may not use the network")

    monkeypatch.setattr(socket.socket, "connect", guard)
    yield

@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Like ``no_network``, but connections to 127.0.0.1 (a server the test itself runs) are allowed;
    proxies from the environment are ignored."""
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"unit tests may not use the network ({host})")
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mangum_loop() -> Iterator[None]:
    """Mangum asks asyncio for the thread's loop, as in Lambda; earlier tests may have unset it."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()

# Fixtures shared by the integration and end-to-end suites (the local stack, logged-in users).
pytest_plugins = ["tests.integration.fixtures"]


# The local stack's own log (function output, gateway, pollers) from the last 400 records, attached
# to the report of a failing test: the stack runs for the whole session, so pytest's per-test log
# capture misses most of it, and a flaky end-to-end failure is otherwise a timeout with no story.
_STACK_LOG_LINES = 400


class _RecentRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=_STACK_LOG_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log handler must never raise into the stack
            self.lines.append(self.format(record)[:2000])


_recent = _RecentRecords()
_stack_log = logging.getLogger("localstack")
_stack_log.addHandler(_recent)
if _stack_log.level == logging.NOTSET or _stack_log.level > logging.INFO:
    _stack_log.setLevel(logging.INFO)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "stack" in getattr(item, "fixturenames", ()) and _recent.lines:
        report.sections.append(("local stack log (last records)", "\n".join(_recent.lines)))
