"""A real Yjs client in Python (pycrdt) speaking our WebSocket protocol — a first-class editor.

It does what a browser provider does: sync step 1 on connect, answer the server's step 1, apply
incoming updates, send every local transaction as an update, split and join chunked frames,
and publish awareness.  Tests use several of these (and Node clients) to co-edit one PRD.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map, Text, TransactionEvent
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from prdtool.collab.protocol import (
    Awareness,
    AwarenessEntry,
    ChunkAssembler,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_awareness,
    encode_frames,
    encode_message,
    parse_frame,
)


class YClient:
    def __init__(self, ws_url: str, prd_id: str, token: str, *, name: str = "client") -> None:
        self.url = f"{ws_url}?prd={prd_id}&token={token}"
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("content", type=Text)
        self.meta = self.doc.get("meta", type=Map)
        self.lock = threading.RLock()
        self.errors: list[dict[str, Any]] = []
        self.acks: list[Any] = []
        self.notices: list[dict[str, Any]] = []
        self.ai: list[dict[str, Any]] = []  # "ai" frames (chunks, done, error) in arrival order, with "_received_at"
        self.awareness: dict[int, Any] = {}
        self.synced = threading.Event()
        self.step2_received = 0
        self.frames_received = 0
        self.received: list[str] = []
        self._remote = False
        self._ws: ClientConnection | None = None
        self._reader: threading.Thread | None = None
        self._assembler = ChunkAssembler()
        self._awareness_clock = 0
        self._unacked: dict[str, bytes] = {}  # id -> message, until the server acknowledges it
        self._next_id = 0
        self._subscription = self.doc.observe(self._on_local_change)
        self._presence: dict[str, Any] | None = None
        self._renewer: threading.Thread | None = None

    # ------------------------------------------------------------------ connection
    def connect(self, *, timeout: float = 20) -> YClient:
        self.synced.clear()
        self._ws = connect(self.url, open_timeout=timeout, max_size=2**20)
        self._reader = threading.Thread(target=self._read, name=f"yclient-{self.name}", daemon=True)
        self._reader.start()
        with self.lock:
            state = self.doc.get_state()
        self._send(encode_message(SyncStep1(state)))
        if not self.synced.wait(timeout):
            raise TimeoutError(f"{self.name}: no sync step 2 within {timeout}s")
        return self

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> YClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ editing
    def insert(self, index: int, text: str) -> None:
        with self.lock, self.doc.transaction():
            self.text.insert(index, text)

    def append(self, text: str) -> None:
        with self.lock, self.doc.transaction():
            self.text.insert(len(self.text), text)

    def delete(self, index: int, length: int) -> None:
        with self.lock, self.doc.transaction():
            del self.text[index : index + length]

    def content(self) -> str:
        with self.lock:
            return str(self.text)

    def set_presence(self, state: dict[str, Any]) -> None:
        """Announce ``state`` and keep renewing it every 15 s, as y-protocols does (peers drop a
        state that stays silent for 30 s)."""
        self._awareness_clock += 1
        self._presence = state
        entry = AwarenessEntry(self.doc.client_id, self._awareness_clock, state)
        self._send(encode_message(encode_awareness([entry])))
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_presence, name=f"presence-{self.name}", daemon=True)
            self._renewer.start()

    def _renew_presence(self) -> None:
        while self._ws is not None:
            time.sleep(15)
            if self._presence is not None and self._ws is not None:
                self.set_presence(self._presence)

    def send_raw(self, frame: str) -> None:
        assert self._ws is not None
        self._ws.send(frame)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: {what} not reached within {timeout}s")

    # ------------------------------------------------------------------ internals
    def _on_local_change(self, event: TransactionEvent) -> None:
        if self._remote or self._ws is None:
            return
        update = event.update
        if update and update != b"\x00\x00":
            self._send_tracked(encode_message(SyncUpdate(update)))

    def _send_tracked(self, message: bytes) -> None:
        """Send an update with an ack id; it stays in ``_unacked`` until the server stores it."""
        with self.lock:
            self._next_id += 1
            ack_id = f"{self.name}-{self._next_id}"
            self._unacked[ack_id] = message
        self._send(message, ack_id=ack_id)

    def flush(self, timeout: float = 30, resend_after: float = 3) -> None:
        """Wait until every update is acknowledged, resending any that is not (as a provider does:
        an invocation that fails or times out in the server is not retried by API Gateway)."""
        deadline = time.monotonic() + timeout
        last_send = time.monotonic()
        while self._unacked:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {len(self._unacked)} updates never acknowledged")
            if time.monotonic() - last_send > resend_after:
                for ack_id, message in list(self._unacked.items()):
                    self._send(message, ack_id=ack_id)
                last_send = time.monotonic()
            time.sleep(0.05)

    def resync(self, timeout: float = 20) -> None:
        """Sync step 1 again and wait for the server's step 2: what a provider's gap repair does
        (docs/protocol.md §4.5).  Relays may arrive out of order, and pycrdt 0.14 can leave an
        update that arrived before its predecessor unintegrated; the step 2 fills the gap."""
        before = self.step2_received
        with self.lock:
            state = self.doc.get_state()
        self._send(encode_message(SyncStep1(state)))
        self.wait_until(lambda: self.step2_received > before, timeout=timeout, what="the resync's step 2")

    def _send(self, message: bytes, *, ack_id: str | None = None) -> None:
        if self._ws is None:
            return  # offline: the next connect's sync exchange uploads what was missed
        try:
            for frame in encode_frames(message):
                if ack_id is not None:
                    frame = json.dumps({**json.loads(frame), "id": ack_id})
                self._ws.send(frame)
        except ConnectionClosed:
            self._ws = None

    def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            for text in ws:
                self.frames_received += 1
                self.received.append(text if isinstance(text, str) else text.decode())
                self._handle(text if isinstance(text, str) else text.decode())
        except ConnectionClosed:
            pass

    def _handle(self, text: str) -> None:
        frame = parse_frame(text)
        if frame.action == "error":
            self.errors.append(dict(frame.fields))
            return
        if frame.action == "ack":
            self.acks.append(frame.fields.get("id"))
            with self.lock:
                self._unacked.pop(str(frame.fields.get("id")), None)
            return
        if frame.action == "notice":
            self.notices.append(dict(frame.fields))
            return
        if frame.action == "ai":
            self.ai.append({**frame.fields, "_received_at": time.time()})
            return
        if frame.action != "y":
            return
        data = self._assembler.add(frame) if frame.chunk else frame.message
        if data is None:
            return
        message = decode_message(data)
        if isinstance(message, SyncStep1):
            with self.lock:
                reply = self.doc.get_update(message.state_vector)
            self._send(encode_message(SyncStep2(reply)))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            with self.lock:
                self._remote = True
                try:
                    self.doc.apply_update(message.update)
                finally:
                    self._remote = False
            if isinstance(message, SyncStep2):
                self.step2_received += 1
                self.synced.set()
        elif isinstance(message, Awareness):
            for entry in message.entries():
                if entry.state is None:
                    self.awareness.pop(entry.client_id, None)
                else:
                    self.awareness[entry.client_id] = entry.state


def frame(action: str, **fields: Any) -> str:
    return json.dumps({"action": action, **fields})
