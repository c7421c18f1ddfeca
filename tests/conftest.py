"""Shared test set-up: unit tests never touch the network; settings are reset between tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

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
