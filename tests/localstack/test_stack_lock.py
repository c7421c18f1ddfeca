"""One local stack per state folder, and a start clears away what a killed one left (stack.StackLock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.localstack.stack import StackError, StackLock

pytestmark = pytest.mark.timeout(60)


def test_a_second_stack_on_one_state_folder_is_a_one_line_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running = StackLock(state, "first")
    running.acquire()
    running.record(port=3456)
    try:
        with pytest.raises(StackError) as refused:
            StackLock(state, "second").acquire()
    finally:
        running.release()

    message = str(refused.value)
    assert message.startswith(f"another local stack (pid {os.getpid()} at http://localhost:3456) is using {state}")
    assert "\n" not in message
    after = StackLock(state, "third")
    after.acquire()  # a clean stop frees the folder
    after.release()
    assert (tmp_path / "state.lock").read_text() == ""  # and leaves nothing to reclaim


def _sleeper(*marker: str) -> subprocess.Popen[bytes]:
    """A process that outlived its stack: no lifeline, and it ignores SIGTERM."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    return subprocess.Popen([sys.executable, "-c", code, *marker])


def test_a_start_stops_what_a_killed_stack_left_running_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.parent.mkdir(parents=True, exist_ok=True)
    leftover = _sleeper("--stack-id", "0123456789abcdef")
    bystander = _sleeper("--stack-id", "fedcba9876543210")  # another stack's, still running
    try:
        # What a stack killed with SIGKILL leaves: its record in the lock file, the lock itself gone.
        (tmp_path / "state.lock").write_text(json.dumps({"pid": leftover.pid + 100_000, "token": "0123456789abcdef"}))
        time.sleep(0.3)  # the sleepers' command lines are in place

        lock = StackLock(state, "new")
        lock.acquire()
        lock.release()

        assert leftover.wait(timeout=15) == -9
        assert bystander.poll() is None
        assert "was killed and left 1 process behind: stopped it" in caplog.text
    finally:
        for process in (leftover, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()
