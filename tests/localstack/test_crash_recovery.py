"""A crash of ``make dev`` loses nothing and leaves nothing behind.

These tests run ``python -m scripts.localstack`` as ``make dev`` does, in a subprocess on free ports
with a temporary state folder, and kill it with SIGKILL (a crash, ``kill -9``, a closed terminal):
its children (moto, the Lambda workers) must die with it, the next start on the same ports and
folder must succeed, and whatever the API acknowledged before the kill must be there after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 240.0  # a cold start provisions, restores and seeds (cold functions) on a loaded 2-core box
GONE_SECONDS = 20.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds child processes through /proc"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command may contain spaces and parentheses


def _alive(pid: int) -> bool:
    """Running (a zombie holds no ports and runs no code: it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _parent_of(int(entry.name)) in frontier
        }
        frontier = {child for child in children if child not in found and _alive(child)}
        found |= frontier
    return found


class DevStack:
    """``python -m scripts.localstack`` as ``make dev`` runs it, with its output in a file."""

    def __init__(self, state_dir: Path, port: int, moto_port: int, log: IO[bytes]) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self._log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.localstack", "--state-dir", str(state_dir)],
            cwd=ROOT,
            env={**os.environ, "PORT": str(port), "MOTO_PORT": str(moto_port), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the stack exited with {self.process.returncode}:\n{self.output()[-4000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base_url}/api/health", timeout=10).status_code == 200:
                    return
            time.sleep(0.5)
        pytest.fail(f"/api/health did not answer within {START_SECONDS:.0f} s:\n{self.output()[-4000:]}")

    def crash(self) -> dict[int, str]:
        """SIGKILL the orchestrator alone (its children get no signal); the children it had, with their commands."""
        children = {pid: _command(pid) for pid in descendants(self.process.pid)}
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        return children

    def stop(self) -> int:
        """Stop it as Ctrl-C or SIGTERM does; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def dev_stacks(tmp_path: Path) -> Iterator[Any]:
    """Start ``make dev`` stacks on one pair of ports and one state folder; kill every leftover at the end."""
    port, moto_port = _free_port(), _free_port()
    started: list[DevStack] = []
    seen: set[int] = set()

    def start() -> DevStack:
        log = (tmp_path / f"stack-{len(started)}.log").open("wb")
        stack = DevStack(tmp_path / "state", port, moto_port, log)
        started.append(stack)
        return stack

    def remember(children: dict[int, str]) -> dict[int, str]:
        seen.update(children)
        return children

    start.remember = remember  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for stack in started:
            seen.update(descendants(stack.process.pid))
            if stack.process.poll() is None:
                stack.process.kill()
                stack.process.wait()
        for pid in seen:  # whatever a failed test left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_until_gone(pids: set[int]) -> set[int]:
    """The processes still running after a generous deadline (empty when all died)."""
    deadline = time.monotonic() + GONE_SECONDS
    while time.monotonic() < deadline:
        survivors = {pid for pid in pids if _alive(pid)}
        if not survivors:
            return set()
        time.sleep(0.1)
    return {pid for pid in pids if _alive(pid)}


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return "?"


def login(base_url: str, username: str = "alice") -> str:
    response = requests.post(
        f"{base_url}/api/auth/login", json={"username": username, "password": "demo-password"}, timeout=60
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_a_killed_stack_takes_its_children_along_and_the_next_start_succeeds(dev_stacks: Any) -> None:
    first = dev_stacks()
    first.wait_until_healthy()
    children = dev_stacks.remember(first.crash())
    assert any("moto_main" in command for command in children.values()), children
    assert any("worker_main" in command for command in children.values()), children  # /api/health ran one

    survivors = wait_until_gone(set(children))

    assert not survivors, [children[pid] for pid in survivors]
    second = dev_stacks()
    second.wait_until_healthy()  # same ports, same state folder
    assert second.stop() == 0, second.output()[-4000:]


def test_what_the_api_acknowledged_before_a_crash_is_there_after_it(dev_stacks: Any) -> None:
    from tests.e2e.yclient import YClient

    first = dev_stacks()
    first.wait_until_healthy()
    token = login(first.base_url)
    headers = {"authorization": f"Bearer {token}"}
    created = requests.post(
        f"{first.base_url}/api/prds",
        json={"title": "Written just before a crash", "markdown": "# Before the crash\n\nFirst words."},
        headers=headers,
        timeout=60,
    )
    assert created.status_code == 201, created.text
    prd_id = created.json()["id"]
    with YClient(first.ws_url, prd_id, token, name="crash") as editor:
        editor.wait_until(lambda: "First words." in editor.content(), what="the created document")
        editor.append(" Typed a moment before the crash.")
        editor.flush()  # every update acknowledged ({"action": "ack"}): stored, as far as the client knows
        acknowledged = editor.content()
        dev_stacks.remember(first.crash())

    second = dev_stacks()
    second.wait_until_healthy()
    read = requests.get(
        f"{second.base_url}/api/prds/{prd_id}",
        headers={"authorization": f"Bearer {login(second.base_url)}"},
        timeout=60,
    )

    assert read.status_code == 200, read.text
    assert read.json()["title"] == "Written just before a crash"
    assert read.json()["markdown"] == acknowledged
    assert acknowledged.endswith("First words. Typed a moment before the crash.")
    assert second.stop() == 0, second.output()[-4000:]
