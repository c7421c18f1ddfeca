"""Whose turn it is at moto's door (moto_main.Turns): one at a time, interactive requests first, and a
background request never starved; and the background door serves as the other does."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.httpsession import URLLib3Session

from scripts.localstack.door import BotocoreDoorTransport, DoorClient, DoorRoutes
from scripts.localstack.moto_main import Turns
from scripts.localstack.stack import MotoServer

pytestmark = pytest.mark.timeout(60)


def _queue_up(turns: Turns, order: list[str], name: str, *, background: bool, hold: float = 0.0) -> threading.Thread:
    def take() -> None:
        with turns.turn(background=background):
            order.append(name)
            time.sleep(hold)

    thread = threading.Thread(target=take, name=name)
    thread.start()
    return thread


def test_a_waiting_interactive_request_goes_before_a_background_one_that_asked_first() -> None:
    turns = Turns()
    order: list[str] = []
    # the holder lets go well within the background request's patience
    holder = _queue_up(turns, order, "holder", background=False, hold=Turns.BACKGROUND_PATIENCE_SECONDS / 2)
    time.sleep(0.02)
    background = _queue_up(turns, order, "background", background=True)
    time.sleep(0.02)
    interactive = _queue_up(turns, order, "interactive", background=False)
    for thread in (holder, background, interactive):
        thread.join(5)
    assert order == ["holder", "interactive", "background"]


def test_one_request_at_a_time() -> None:
    turns = Turns()
    inside = 0
    most = 0
    lock = threading.Lock()

    def take(background: bool) -> None:
        nonlocal inside, most
        for _ in range(20):
            with turns.turn(background=background):
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=take, args=(i % 3 == 0,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert most == 1


def test_a_stream_of_interactive_requests_cannot_starve_a_background_one() -> None:
    turns = Turns()
    stop = threading.Event()

    def keep_typing() -> None:  # two interactive "workers": one always waits while the other is served
        while not stop.is_set():
            with turns.turn(background=False):
                time.sleep(0.002)

    typists = [threading.Thread(target=keep_typing) for _ in range(2)]
    for thread in typists:
        thread.start()
    try:
        time.sleep(0.05)
        asked = time.monotonic()
        with turns.turn(background=True):
            waited = time.monotonic() - asked
    finally:
        stop.set()
        for thread in typists:
            thread.join(5)
    assert Turns.BACKGROUND_PATIENCE_SECONDS * 0.8 <= waited < Turns.BACKGROUND_PATIENCE_SECONDS + 1.0


def test_a_queue_of_background_requests_cannot_starve_an_interactive_one() -> None:
    """Background requests served back to back, each longer than a fifth of the patience: one may go
    before a waiting interactive request once per patience period, not one after another."""
    turns = Turns()
    stop = threading.Event()
    hold = Turns.BACKGROUND_PATIENCE_SECONDS / 4

    def keep_compacting() -> None:
        while not stop.is_set():
            with turns.turn(background=True):
                time.sleep(hold)

    compactors = [threading.Thread(target=keep_compacting) for _ in range(3)]
    for thread in compactors:
        thread.start()
    try:
        time.sleep(Turns.BACKGROUND_PATIENCE_SECONDS * 2)  # every background request is overdue by now
        waits = []
        for _ in range(3):
            asked = time.monotonic()
            with turns.turn(background=False):
                waits.append(time.monotonic() - asked)
    finally:
        stop.set()
        for thread in compactors:
            thread.join(5)
    # at most the request being served and one forced background turn ahead of each keystroke
    assert max(waits) < 2 * hold + 0.5 * hold, waits


def test_the_background_door_serves_the_same_calls() -> None:
    directory = Path(tempfile.mkdtemp(prefix="moto-door-test-"))
    path, background = str(directory / "moto.sock"), str(directory / "moto-background.sock")
    server = MotoServer(0, door_path=path, background_door_path=background)
    client = DoorClient(background)
    try:
        server.wait_until_ready()
        ddb = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        ddb.create_table(TableName="bg", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        transport = BotocoreDoorTransport(DoorRoutes(endpoint_url=server.url, moto=client))
        transport.install(URLLib3Session)
        try:
            ddb.put_item(TableName="bg", Item={"pk": {"S": "through the background door"}})
        finally:
            BotocoreDoorTransport.uninstall(URLLib3Session)
        assert ddb.get_item(TableName="bg", Key={"pk": {"S": "through the background door"}})["Item"]
        assert Path(background).is_socket()
    finally:
        client.close()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
