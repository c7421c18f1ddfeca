"""The local stack's event loops: uvloop's where it is installed (requirements-dev.txt), asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest

from scripts.localstack.aioserver import new_event_loop
from scripts.localstack.stack import LoopThread


def test_the_stacks_loops_are_uvloops_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    monkeypatch.delenv("LOCAL_UVLOOP", raising=False)
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("LOCAL_UVLOOP", "0")
    loop = new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_the_runtime_loop_thread_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    monkeypatch.delenv("LOCAL_UVLOOP", raising=False)
    thread = LoopThread("test-loop")
    try:
        async def running_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        assert isinstance(thread.run(running_loop(), timeout=10), uvloop.Loop)
    finally:
        thread.close()
