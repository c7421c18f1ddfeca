"""Doors: the local stack's HTTP requests between its own processes, carried over unix sockets.

Why: on the co-editing path every edit costs a worker several AWS calls (DynamoDB, SQS) and one
``PostToConnection`` per peer.  Over loopback HTTP each of them pays urllib3 and ``http.client`` in
the worker, werkzeug's ``http.server`` in moto and aiohttp's HTTP machinery in the orchestrator —
about half of the stack's CPU per edit once moto's serializer is fast (``moto_fast.py``).  None of
that is the emulation: in AWS those bytes travel over TLS to the service, and no code of ours sees
them.  A door carries the *same* request (method, target, headers, body) and the *same* response
(status, headers, body) over a unix stream socket with a trivial framing, so everything above the
transport — botocore's validation, serialisation, endpoint rules, SigV4 signing, retries, response
parsing, and on the far side moto's dispatch or the gateway's SigV4 check — runs exactly as before.

The frame, both ways: ``>II`` (length of the head, length of the body), the head, then the body as
raw bytes.  A request's head is UTF-8 lines joined by ``\n``: the method, the target (the request
line's: raw path plus ``?query``), then one ``name: value`` line per header; a response's head is
the status, then the header lines.  Header pairs keep their order and repeats, as on the wire (no
line break can be in a header, nor in a target; encoding one is refused).  Not JSON: a fan-out
encodes and decodes ~100 heads per edit, and ``json`` took 4 to 5 times as long.
A request with method ``BATCH`` carries request frames as its body and is answered by a response
whose body is their response frames, in order: the fan-out's posts to N connections cross in one
exchange (``ConnectionsApi.post_each`` uses it through ``URLLib3Session.send_many``); each request
in it is served exactly as if it had come alone.  Requests that are the same but for their
target and one header's value (a fan-out: one body, one second, a signature per connection) go as
a ``SHARED`` batch instead, each sent once: the method, the varying header's name and place, the
headers they share, the body, and a (target, value) pair per request (:class:`SharedRequests`).
A server expands it into the same requests — or, where it is given a handler for the whole batch
(the gateway's ``@connections``), hands it over as it is, so that nothing is decoded per request
that is the same for all of them; the answer is a ``BATCH``'s.

Who uses what:

* :class:`DoorClient` — blocking, one persistent connection per thread per door (botocore sends
  from several threads: the relay's fan-out pool, s3transfer), reopened when the far side closed it.
* :class:`BlockingDoorServer` — a thread per connection (moto, whose request handling is blocking).
* :class:`AsyncDoorServer` — on an asyncio loop (the orchestrator's ``@connections``).
* :class:`BotocoreDoorTransport` — the worker side: a replacement for
  ``botocore.httpsession.URLLib3Session.send`` that sends what a door serves through it and
  everything else through the original ``send``; :func:`install_when_imported` puts it in place the
  moment ``botocore.httpsession`` is imported, so a worker that never uses botocore never loads it.

The sockets live in a private directory (mode 0700) the orchestrator creates and removes, so only
the user running the stack can connect: a door carries no authentication of its own beyond what the
request itself carries (``@connections`` still checks SigV4; moto checks nothing, as over HTTP).

Standard library only at import time: the Lambda workers load this file by path (``worker_main``)
without putting the repository on their ``sys.path``; botocore is imported only by the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("localstack.door")

# The services the moto door serves, by SigV4 signing name: the ones whose answers through the door
# were checked against the answers over HTTP (tests/localstack/test_doors.py).  S3 stays on HTTP
# (virtual-host and path addressing, streaming and aws-chunked bodies, 100-continue); Cognito's
# unsigned calls (InitiateAuth) could not be recognised from their signature anyway.
MOTO_SERVICES: frozenset[str] = frozenset({"dynamodb", "sqs", "events"})

FRAME = struct.Struct(">II")
MAX_META_BYTES = 1 << 20  # a frame's JSON header; requests carry a few hundred bytes
MAX_BODY_BYTES = 64 << 20  # far above any body the emulated services accept (DynamoDB 16 MB batches)
DEFAULT_TIMEOUT_SECONDS = 60.0  # botocore's default read timeout
SHUTDOWN_SECONDS = 5.0  # what the asyncio door gives a request being served when it closes

Headers = list[tuple[str, str]]


class DoorError(OSError):
    """A door failed as a transport: nothing (or nothing usable) came back."""


class DoorUnavailable(DoorError):
    """Could not connect: nothing was sent (the far side is not running, or not yet)."""


class DoorBroken(DoorError):
    """The connection broke after the request began to go out: it may or may not have been served."""


class DoorProtocolError(DoorError):
    """The far side sent something that is not a frame."""


@dataclass(frozen=True, slots=True)
class DoorRequest:
    method: str
    target: str  # raw path, plus "?" and the raw query string if there is one
    headers: Headers
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, by case-insensitive name."""
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), default)


@dataclass(frozen=True, slots=True)
class DoorResponse:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), default)


# ---------------------------------------------------------------- framing


def _frame(lines: list[str], body: bytes) -> bytes:
    text = "\n".join(lines)
    if text.count("\n") != len(lines) - 1:
        raise DoorProtocolError("a line break in a method, target or header cannot be framed")
    encoded = text.encode("utf-8", "surrogateescape")
    return b"".join((FRAME.pack(len(encoded), len(body)), encoded, body))


def encode_request(request: DoorRequest) -> bytes:
    return _frame([request.method, request.target, *[f"{name}: {value}" for name, value in request.headers]],
                  request.body)


def encode_response(response: DoorResponse) -> bytes:
    constant = _CONSTANT_FRAMES.get(id(response))
    if constant is not None and constant[0] is response:
        return constant[1]
    return _frame([str(response.status), *[f"{name}: {value}" for name, value in response.headers]], response.body)


# Responses a server answers again and again (the gateway's "posted"), each with its frame.
_CONSTANT_FRAMES: dict[int, tuple[DoorResponse, bytes]] = {}


def constant_response(response: DoorResponse) -> DoorResponse:
    """Mark ``response`` as answered many times, unchanged: it is encoded once (never change it)."""
    _CONSTANT_FRAMES[id(response)] = (response, encode_response(response))
    return response


BATCH = "BATCH"
_BATCH_BYTES = 4 << 20  # requests per batch frame: a fan-out of large frames goes in several


def _split_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (header, body) pairs of frames laid end to end (a batch's body)."""
    frames: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < FRAME.size:
            raise DoorProtocolError("a batch ends in the middle of a frame")
        meta_length, body_length = FRAME.unpack_from(data, offset)
        _check_lengths(meta_length, body_length)
        start = offset + FRAME.size
        offset = start + meta_length + body_length
        if offset > len(data):
            raise DoorProtocolError("a batch ends in the middle of a frame")
        frames.append((data[start : start + meta_length], data[start + meta_length : offset]))
    return frames


SHARED = "SHARED"
_VARIANTS = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SharedRequests:
    """Requests that differ only in their target and the value of one header (``SHARED``).

    Request *i* is ``method``, ``variants[i][0]``, ``headers`` with ``(name, variants[i][1])``
    inserted at ``index``, and ``body``.  ``name`` appears nowhere in ``headers``.
    """

    method: str
    index: int
    name: str
    headers: Headers
    variants: list[tuple[str, str]]
    body: bytes

    def requests(self) -> list[DoorRequest]:
        before, after = self.headers[: self.index], self.headers[self.index :]
        return [DoorRequest(self.method, target, [*before, (self.name, value), *after], self.body)
                for target, value in self.variants]


def shared(requests: Sequence[DoorRequest]) -> SharedRequests | None:
    """``requests`` as one :class:`SharedRequests`, or None if they differ in more than their target
    and one header's value (or are fewer than two)."""
    if len(requests) < 2:
        return None
    first, second = requests[0], requests[1]
    headers = first.headers
    varying = [i for i, (a, b) in enumerate(zip(headers, second.headers, strict=False)) if a != b]
    if len(varying) != 1 or len(second.headers) != len(headers):
        return None
    index = varying[0]
    name = headers[index][0]
    lower = name.lower()
    if second.headers[index][0] != name or sum(1 for key, _ in headers if key.lower() == lower) != 1:
        return None
    before, after = headers[:index], headers[index + 1 :]
    method, body = first.method, first.body
    for request in requests:
        other = request.headers
        if (request.method != method or (request.body is not body and request.body != body)
                or len(other) != len(headers) or other[index][0] != name
                or other[:index] != before or other[index + 1 :] != after):
            return None
    return SharedRequests(method, index, name, [*before, *after],
                          [(request.target, request.headers[index][1]) for request in requests], body)


def encode_shared(batch: SharedRequests) -> bytes:
    variants = "\n".join(f"{target}\n{value}" for target, value in batch.variants)
    if variants.count("\n") != 2 * len(batch.variants) - 1:
        raise DoorProtocolError("a line break in a target or header cannot be framed")
    encoded = variants.encode("utf-8", "surrogateescape")
    return encode_request(DoorRequest(SHARED, f"{batch.method} {batch.index} {batch.name}", batch.headers,
                                      b"".join((_VARIANTS.pack(len(encoded)), encoded, batch.body))))


def decode_shared(request: DoorRequest) -> SharedRequests:
    """The batch a ``SHARED`` request carries (:class:`DoorProtocolError` if it is malformed)."""
    method, _, rest = request.target.partition(" ")
    index_text, _, name = rest.partition(" ")
    body = request.body
    if not method or not index_text.isdigit() or not name or len(body) < _VARIANTS.size:
        raise DoorProtocolError("malformed SHARED batch: its head")
    index = int(index_text)
    (length,) = _VARIANTS.unpack_from(body)
    end = _VARIANTS.size + length
    lower = name.lower()
    if index > len(request.headers) or end > len(body) or any(key.lower() == lower for key, _ in request.headers):
        raise DoorProtocolError("malformed SHARED batch: its header or its length")
    lines = body[_VARIANTS.size : end].decode("utf-8", "surrogateescape").split("\n")
    if len(lines) % 2:
        raise DoorProtocolError("malformed SHARED batch: a target without its value")
    return SharedRequests(method, index, name, request.headers, list(zip(lines[::2], lines[1::2], strict=True)),
                          body[end:])


def _check_lengths(meta_length: int, body_length: int) -> None:
    if meta_length > MAX_META_BYTES or body_length > MAX_BODY_BYTES:
        raise DoorProtocolError(f"frame too large: header {meta_length} bytes, body {body_length} bytes")


def _head(meta: bytes, first: int) -> tuple[list[str], Headers]:
    """The first ``first`` lines of a head and its header pairs."""
    lines = meta.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) < first:
        raise DoorProtocolError("malformed head: too few lines")
    headers: Headers = []
    for line in lines[first:]:
        name, separator, value = line.partition(": ")
        if not separator:
            raise DoorProtocolError(f"malformed head: a header line without a value: {line[:64]!r}")
        headers.append((name, value))
    return lines[:first], headers


def decode_request(meta: bytes, body: bytes) -> DoorRequest:
    (method, target), headers = _head(meta, 2)
    if not method:
        raise DoorProtocolError("malformed head: no method")
    return DoorRequest(method, target, headers, body)


def decode_response(meta: bytes, body: bytes) -> DoorResponse:
    status, headers = _response_head(meta)
    return DoorResponse(status, list(headers), body)


@lru_cache(maxsize=256)
def _response_head(meta: bytes) -> tuple[int, tuple[tuple[str, str], ...]]:
    # A fan-out's ~50 answers per edit share one head ("200", two headers): parsed once.
    (status,), headers = _head(meta, 1)
    if not status.isdigit():
        raise DoorProtocolError(f"malformed head: status {status[:16]!r}")
    return int(status), tuple(headers)


def _read_frame(reader: Any) -> tuple[bytes, bytes] | None:
    """One frame from a blocking binary file; None at a clean end-of-file before it."""
    head = reader.read(FRAME.size)
    if not head:
        return None
    if len(head) < FRAME.size:
        raise DoorProtocolError("connection closed in the middle of a frame")
    meta_length, body_length = FRAME.unpack(head)
    _check_lengths(meta_length, body_length)
    meta = reader.read(meta_length)
    body = reader.read(body_length) if body_length else b""
    if len(meta) < meta_length or len(body) < body_length:
        raise DoorProtocolError("connection closed in the middle of a frame")
    return meta, body


# ---------------------------------------------------------------- client


class _Connection:
    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def looks_closed(self) -> bool:
        """Whether the far side has closed (or written out of turn) since the last answer.

        What urllib3 checks before reusing a pooled connection: a server that restarted, or closed an
        idle connection, must not cost the next request an error.  One non-blocking peek (with a
        timeout set, Python would first wait that long for something to read).
        """
        try:
            self.sock.setblocking(False)
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False  # nothing to read: alive and idle
        except OSError:
            return True
        return True  # b"" (closed) or unsolicited bytes: either way not usable


class DoorClient:
    """Requests through one door, from any thread: one persistent connection per thread."""

    def __init__(self, path: str, *, connect_timeout: float = 5.0) -> None:
        self.path = path
        self._connect_timeout = connect_timeout
        self._local = threading.local()

    def request(self, request: DoorRequest, timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> DoorResponse:
        """Send one request and wait for its response.

        Raises :class:`DoorUnavailable` if it cannot connect (nothing was sent), ``TimeoutError`` if
        no complete answer came within ``timeout`` seconds, :class:`DoorBroken` if the connection
        broke on the way.  After any failure the thread's connection is dropped, never reused.
        """
        return self._exchange(encode_request(request), timeout)

    def _exchange(self, frame: bytes, timeout: float | None) -> DoorResponse:
        connection = self._connection()
        try:
            connection.sock.settimeout(timeout)
            connection.sock.sendall(frame)
            answer = _read_frame(connection.reader)
            if answer is None:
                raise DoorBroken(f"{self.path}: connection closed before an answer")
            return decode_response(*answer)
        except TimeoutError:
            self._drop(connection)
            raise
        except DoorError:
            self._drop(connection)
            raise
        except OSError as exc:
            self._drop(connection)
            raise DoorBroken(f"{self.path}: {exc}") from exc

    def request_many(self, requests: Sequence[DoorRequest],
                     timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> list[DoorResponse]:
        """Send ``requests`` in one exchange (a ``SHARED`` batch if they allow it, else a ``BATCH``,
        or a few if they are large); their responses in order.  Failures are :meth:`request`'s, for
        all of them."""
        together = shared(requests)
        if together is not None:
            return self.request_shared(together, timeout)
        return self._batches(requests, timeout)

    def request_shared(self, batch: SharedRequests,
                       timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> list[DoorResponse]:
        """:meth:`request_many` of ``batch.requests()``, sent as the ``SHARED`` batch it is (as
        ``BATCH`` es if that frame would be too large)."""
        frame = encode_shared(batch)
        if len(frame) > _BATCH_BYTES:
            return self._batches(batch.requests(), timeout)
        return self._batch_answers(self._exchange(frame, timeout), len(batch.variants))

    def _batches(self, requests: Sequence[DoorRequest], timeout: float | None) -> list[DoorResponse]:
        responses: list[DoorResponse] = []
        group: list[bytes] = []
        size = 0
        for index, request in enumerate(requests):
            encoded = encode_request(request)
            group.append(encoded)
            size += len(encoded)
            if size >= _BATCH_BYTES or index == len(requests) - 1:
                answer = self.request(DoorRequest(BATCH, "*", [], b"".join(group)), timeout)
                responses += self._batch_answers(answer, len(group))
                group, size = [], 0
        return responses

    def _batch_answers(self, answer: DoorResponse, count: int) -> list[DoorResponse]:
        if answer.status != 200:
            raise DoorProtocolError(f"{self.path}: the batch was refused ({answer.status})")
        answers = [decode_response(*frame) for frame in _split_frames(answer.body)]
        if len(answers) != count:
            raise DoorProtocolError(f"{self.path}: {len(answers)} answers to {count} requests")
        return answers

    def close(self) -> None:
        """Close this thread's connection (other threads' close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._drop(connection)

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.looks_closed():
            self._drop(connection)
            connection = None
        if connection is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise DoorUnavailable(f"cannot connect to {self.path}: {exc}") from exc
            connection = self._local.connection = _Connection(sock)
        return connection

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None


# ---------------------------------------------------------------- servers


def _bind(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket file of a killed run: its directory is ours
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)  # the directory (0700) already keeps others out; this says so twice
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def failure_response(exc: BaseException) -> DoorResponse:
    """What a handler's unexpected exception becomes: a 500, as an HTTP server would answer."""
    body = json.dumps({"message": f"Internal server error: {type(exc).__name__}: {exc}"}).encode()
    return DoorResponse(500, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)


class BlockingDoorServer:
    """A door served by blocking ``handler`` calls, one thread per connection (moto's side).

    Connections are few and long-lived (one per worker thread that talks to the door), so a thread
    each costs little and lets a slow request (a long SQS poll) hold up no one else.
    """

    def __init__(self, path: str, handler: Callable[[DoorRequest], DoorResponse], *, name: str = "door") -> None:
        self.path = path
        self._handler = handler
        self._name = name
        self._sock = _bind(path)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), name=f"{self._name}-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                frame = _read_frame(reader)
                if frame is None:
                    return
                request = decode_request(*frame)
                if request.method == BATCH:
                    parts = [self._answer(decode_request(*part)) for part in _split_frames(request.body)]
                    response = DoorResponse(200, [], b"".join(encode_response(part) for part in parts))
                elif request.method == SHARED:
                    parts = [self._answer(part) for part in decode_shared(request).requests()]
                    response = DoorResponse(200, [], b"".join(encode_response(part) for part in parts))
                else:
                    response = self._answer(request)
                conn.sendall(encode_response(response))
        except DoorProtocolError as exc:
            log.warning("%s: dropping a connection: %s", self._name, exc)
        except OSError:
            pass  # the client went away
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, request: DoorRequest) -> DoorResponse:
        try:
            return self._handler(request)
        except Exception as exc:  # the handler's bug must not kill the connection silently
            log.exception("%s: %s %s failed", self._name, request.method, request.target)
            return failure_response(exc)

    def close(self) -> None:
        """Stop accepting and remove the socket file (connections end with their clients)."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class AsyncDoorServer:
    """A door served on an asyncio loop by an ``async`` handler (the orchestrator's side).

    Each connection's requests are served one after another (a client thread waits for each answer
    before sending the next); connections are served concurrently.
    """

    def __init__(self, path: str, handler: Callable[[DoorRequest], Awaitable[DoorResponse]], *, name: str = "door",
                 shared_handler: Callable[[SharedRequests], Awaitable[list[DoorResponse]]] | None = None):
        """``shared_handler``: serves a whole ``SHARED`` batch, an answer per request in order
        (each failure its own, as :func:`failure_response` makes it); without one, each of its
        requests goes to ``handler``."""
        self.path = path
        self._handler = handler
        self._shared_handler = shared_handler
        self._name = name
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, sock=_bind(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while True:
                try:
                    head = await reader.readexactly(FRAME.size)
                except asyncio.IncompleteReadError:
                    return  # closed between requests (or mid-header: nothing to answer either way)
                meta_length, body_length = FRAME.unpack(head)
                _check_lengths(meta_length, body_length)
                meta = await reader.readexactly(meta_length)
                body = await reader.readexactly(body_length) if body_length else b""
                request = decode_request(meta, body)
                if request.method == BATCH:
                    parts = [await self._answer(decode_request(*part)) for part in _split_frames(request.body)]
                    response = DoorResponse(200, [], b"".join(encode_response(part) for part in parts))
                elif request.method == SHARED:
                    response = DoorResponse(200, [], b"".join(
                        encode_response(part) for part in await self._answer_shared(decode_shared(request))))
                else:
                    response = await self._answer(request)
                writer.write(encode_response(response))
                await writer.drain()
        except (DoorProtocolError, asyncio.IncompleteReadError) as exc:
            log.warning("%s: dropping a connection: %s", self._name, exc)
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()

    async def _answer(self, request: DoorRequest) -> DoorResponse:
        try:
            return await self._handler(request)
        except Exception as exc:
            log.exception("%s: %s %s failed", self._name, request.method, request.target)
            return failure_response(exc)

    async def _answer_shared(self, batch: SharedRequests) -> list[DoorResponse]:
        if self._shared_handler is None:
            return [await self._answer(part) for part in batch.requests()]
        answers = await self._shared_handler(batch)
        if len(answers) != len(batch.variants):
            raise DoorProtocolError(f"{self._name}: {len(answers)} answers to {len(batch.variants)} requests")
        return answers

    def stop_accepting(self) -> None:
        """Stop taking new connections and remove the socket file; open ones go on being served."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def close(self) -> None:
        """Stop accepting, then close the open connections and wait for their tasks to end.

        Closed, not cancelled: asyncio's stream server logs a cancelled connection task as an error.
        A connection waiting for its next request ends at once; one whose request is being served
        finishes it (its answer goes nowhere), within ``SHUTDOWN_SECONDS``, else it is cancelled.
        """
        self.stop_accepting()
        connections = dict(self._connections)
        for writer in connections.values():
            writer.close()
        if connections:
            _, pending = await asyncio.wait(connections, timeout=SHUTDOWN_SECONDS)
            for task in pending:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


# ---------------------------------------------------------------- the worker side: botocore's transport

_SIGV4_SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_CONNECTIONS_PATH = re.compile(r"(?:/[^/]+)?/@connections/[^/]+")
_CONNECTIONS_METHODS = frozenset({"GET", "POST", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sigv4_scope(authorization: str | bytes | None) -> tuple[str, str] | None:
    """(region, service) of a SigV4 ``Authorization`` header, or None if it is not one."""
    if not authorization:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    found = _SIGV4_SCOPE.search(authorization)
    return (found.group(1), found.group(2)) if found else None


@lru_cache(maxsize=64)
def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _host_header(scheme: str, netloc: str) -> str:
    """The ``Host`` header ``http.client`` sends for a URL: the default port left out."""
    host, _, port = netloc.rpartition(":")
    if host and port.isdigit() and not host.endswith("]") and int(port) == _DEFAULT_PORTS.get(scheme):
        return host
    return netloc


@dataclass(frozen=True)
class DoorRoutes:
    """Which requests a worker sends through which door.

    * ``moto``: requests to ``endpoint_url`` (the function's ``AWS_ENDPOINT_URL``) whose SigV4
      scope names one of ``services``;
    * ``gateway``: GET, POST and DELETE of ``[/stage]/@connections/<id>`` at ``callback_url``'s origin
      (the function's ``WEBSOCKET_CALLBACK_URL``), signed or not (the gateway refuses the unsigned).
    """

    endpoint_url: str | None = None
    services: frozenset[str] = MOTO_SERVICES
    moto: DoorClient | None = None
    callback_url: str | None = None
    gateway: DoorClient | None = None

    def door_for(self, method: str, url: str, headers: Any) -> DoorClient | None:
        if self.moto is not None and self.endpoint_url and url.startswith(self.endpoint_url.rstrip("/") + "/"):
            scope = sigv4_scope(headers.get("Authorization"))
            if scope is not None and scope[1] in self.services:
                return self.moto
            return None
        if self.gateway is not None and self.callback_url and method in _CONNECTIONS_METHODS:
            scheme, netloc, path = _url_parts(url)
            if (scheme, netloc) == _origin(self.callback_url) and _CONNECTIONS_PATH.fullmatch(path):
                return self.gateway
        return None


@lru_cache(maxsize=4096)
def _target_and_host(url: str) -> tuple[str, str]:
    """A URL's request-line target (path and query) and the ``Host`` ``http.client`` would send:
    a fan-out posts to the same few ``@connections`` URLs again and again."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), _host_header(parts.scheme.lower(),
                                                                                          parts.netloc)


@lru_cache(maxsize=4096)
def _url_parts(url: str) -> tuple[str, str, str]:
    """(scheme, netloc, path) of a URL, lower-cased where case does not matter: a fan-out routes the
    same few ``@connections`` URLs again and again."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path


class _RawBody(BytesIO):
    """The ``raw`` of botocore's ``AWSResponse``: a body read whole, streamed as urllib3's would be."""

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk

    def release_conn(self) -> None:
        pass


def _body_bytes(body: Any) -> bytes | None:
    """A request body as bytes, or None if it is a stream (those stay on HTTP)."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return None


def _header_text(value: Any) -> str:
    # http.client sends str headers as latin-1 and bytes as they are; latin-1 round-trips both.
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class DoorAnswer:
    """An answer of :meth:`BotocoreDoorTransport.send_many`: an ``AWSResponse``'s ``url``,
    ``status_code``, ``content`` and (case-insensitive, built when first read) ``headers``."""

    __slots__ = ("_answer", "_headers", "url")

    def __init__(self, url: str, answer: DoorResponse) -> None:
        self.url = url
        self._answer = answer
        self._headers: Any = None

    @property
    def status_code(self) -> int:
        return self._answer.status

    @property
    def content(self) -> bytes:
        return self._answer.body

    @property
    def text(self) -> str:
        return self._answer.body.decode("utf-8", "replace")

    @property
    def headers(self) -> Any:
        if self._headers is None:
            from botocore.awsrequest import HeadersDict

            self._headers = HeadersDict(self._answer.headers)
        return self._headers


class BotocoreDoorTransport:
    """The replacement for ``URLLib3Session.send`` in a worker: doors for what they serve, else HTTP.

    Only the bytes' transport changes.  The request is the one botocore prepared and signed (or one
    prepared by hand and given to a ``URLLib3Session``), sent with the headers ``http.client`` would
    add (``Host``, ``Accept-Encoding: identity``, ``Content-Length``); the answer comes back as
    the ``AWSResponse`` urllib3's would make — status, case-insensitive headers (urllib3's own
    ``HTTPHeaderDict``), a ``raw`` that streams — and transport failures as the exceptions
    botocore's ``send`` raises, so its retries treat them alike: could not connect is
    ``EndpointConnectionError``, no answer in time is ``ReadTimeoutError`` (botocore's read timeout,
    per request if overridden), a connection broken on the way is ``ConnectionClosedError``.
    """

    def __init__(self, routes: DoorRoutes) -> None:
        self.routes = routes
        self.original: Callable[[Any, Any], Any] | None = None

    def install(self, session_class: type[Any]) -> None:
        """Replace ``session_class.send`` (botocore's ``URLLib3Session``). Idempotent."""
        current = session_class.send
        if getattr(current, "__door_transport__", None) is not None:
            return
        self.original = current
        transport = self

        def send(session: Any, request: Any) -> Any:
            return transport.send(session, request)

        def send_many(session: Any, requests: Sequence[Any]) -> list[Any]:
            return transport.send_many(session, requests)

        send.__door_transport__ = self  # type: ignore[attr-defined]
        send.__wrapped__ = current  # type: ignore[attr-defined]
        session_class.send = send
        session_class.send_many = send_many  # type: ignore[attr-defined]

    def attach(self, client: Any) -> None:
        """Put the transport in front of one botocore client's HTTP session only (the orchestrator's
        SQS pollers: its other clients, and a test's in the same process, stay on HTTP)."""
        from botocore.httpsession import URLLib3Session

        if self.original is None:
            self.original = URLLib3Session.send
        endpoint = client._endpoint
        if not isinstance(endpoint.http_session, _AttachedSession):
            endpoint.http_session = _AttachedSession(self, endpoint.http_session)

    @staticmethod
    def uninstall(session_class: type[Any]) -> None:
        current = session_class.send
        if getattr(current, "__door_transport__", None) is not None:
            session_class.send = current.__wrapped__
            with contextlib.suppress(AttributeError):
                del session_class.send_many

    def send(self, session: Any, request: Any) -> Any:
        assert self.original is not None
        method = str(request.method).upper()
        door = self.routes.door_for(method, request.url, request.headers)
        body = _body_bytes(request.body) if door is not None else None
        if door is None or body is None:
            return self.original(session, request)
        try:
            answer = door.request(self._door_request(request, body), self._read_timeout(session, request))
        except OSError as exc:
            raise self._botocore_error(exc, request) from exc
        return self._response(request, answer)

    def send_many(self, session: Any, requests: Sequence[Any]) -> list[Any]:
        """Send several requests: an answer or the exception :meth:`send` would raise, per request,
        in order.  Requests that all go through the same door cross in one exchange (a ``SHARED``
        batch when they differ only in their target and one header, else a ``BATCH``) and are
        answered by :class:`DoorAnswer` (what ``ConnectionsApi``, the one caller, reads of an
        ``AWSResponse``, at a tenth of its cost: a fan-out makes ~50 per edit); anything else is
        sent one by one and answered by :meth:`send`."""
        routed = [self.routes.door_for(str(request.method).upper(), request.url, request.headers)
                  for request in requests]
        bodies = [_body_bytes(request.body) for request in requests]
        door = routed[0] if routed else None
        if door is None or any(r is not door for r in routed) or any(body is None for body in bodies):
            return [self._outcome(session, request) for request in requests]
        timeout = self._read_timeout(session, requests[0])
        try:
            batch = self._shared_batch(requests, bodies)  # type: ignore[arg-type]  # (None was sent one by one)
            if batch is not None:
                answers = door.request_shared(batch, timeout)
            else:
                answers = door.request_many([self._door_request(request, body) for request, body
                                             in zip(requests, bodies, strict=True) if body is not None], timeout)
        except OSError as exc:
            return [self._botocore_error(exc, request) for request in requests]
        return [DoorAnswer(request.url, answer) for request, answer in zip(requests, answers, strict=True)]

    def _shared_batch(self, requests: Sequence[Any], bodies: Sequence[bytes]) -> SharedRequests | None:
        """The requests as the ``SHARED`` batch :func:`shared` would make of their door requests,
        built without making each one (a fan-out sends ~50 a keystroke): when they are the same but
        for their URL's path and query and one header's value; else None."""
        if len(requests) < 2:
            return None
        first = requests[0]
        batch = shared([self._door_request(first, bodies[0]), self._door_request(requests[1], bodies[1])])
        if batch is None or batch.name not in first.headers:  # (not a header the transport added)
            return None
        name, body, host = batch.name, bodies[0], _target_and_host(first.url)[1]
        names = list(first.headers.keys())
        others = [(key, value) for key, value in first.headers.items() if key != name]
        for request, request_body in zip(requests[2:], bodies[2:], strict=True):
            headers = request.headers
            target, request_host = _target_and_host(request.url)
            if (str(request.method).upper() != batch.method or request_host != host
                    or (request_body is not body and request_body != body) or list(headers.keys()) != names
                    or any(headers[key] != value for key, value in others)):
                return None
            batch.variants.append((target, _header_text(headers[name])))
        return batch

    def _outcome(self, session: Any, request: Any) -> Any:
        try:
            return self.send(session, request)
        except Exception as exc:
            return exc

    @staticmethod
    def _botocore_error(exc: OSError, request: Any) -> Exception:
        """What botocore's ``send`` raises for this transport failure."""
        from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

        url = request.url
        if isinstance(exc, DoorUnavailable):
            return EndpointConnectionError(endpoint_url=url, error=exc)
        if isinstance(exc, TimeoutError):
            return ReadTimeoutError(endpoint_url=url, error=exc)
        if isinstance(exc, DoorError):
            return ConnectionClosedError(error=exc, request=request, endpoint_url=url)
        raise exc

    @staticmethod
    def _door_request(request: Any, body: bytes) -> DoorRequest:
        """The request as ``http.client`` would put it on the wire."""
        method = str(request.method).upper()
        target, host = _target_and_host(request.url)
        headers = [(str(name), _header_text(value)) for name, value in request.headers.items()]
        present = {name.lower() for name, _ in headers}
        extra: Headers = []
        if "host" not in present:
            extra.append(("Host", host))
        if "accept-encoding" not in present:
            extra.append(("Accept-Encoding", "identity"))
        if "content-length" not in present and (body or method in ("POST", "PUT", "PATCH")):
            headers.append(("Content-Length", str(len(body))))
        return DoorRequest(method, target, extra + headers, body)

    @staticmethod
    def _response(request: Any, answer: DoorResponse) -> Any:
        """The ``AWSResponse`` urllib3's answer would have made."""
        from botocore.awsrequest import AWSResponse
        from urllib3._collections import HTTPHeaderDict

        response = AWSResponse(request.url, answer.status, HTTPHeaderDict(answer.headers), _RawBody(answer.body))
        if not getattr(request, "stream_output", False):
            response.content  # noqa: B018 - what botocore's send does: read the body now
        return response

    @staticmethod
    def _read_timeout(session: Any, request: Any) -> float | None:
        context = getattr(request, "context", None) or {}
        override = context.get("read_timeout")
        if override is not None:
            return float(override)
        timeout = getattr(session, "_timeout", None)
        if timeout is None:
            return DEFAULT_TIMEOUT_SECONDS
        read = getattr(timeout, "read_timeout", timeout)
        return float(read) if isinstance(read, int | float) else DEFAULT_TIMEOUT_SECONDS


class _AttachedSession:
    """One client's HTTP session with a :class:`BotocoreDoorTransport` in front (``attach``)."""

    def __init__(self, transport: BotocoreDoorTransport, session: Any) -> None:
        self._transport = transport
        self._session = session

    def send(self, request: Any) -> Any:
        return self._transport.send(self._session, request)

    def close(self) -> None:
        self._session.close()


# ---------------------------------------------------------------- installing it in a worker

_HTTPSESSION = "botocore.httpsession"


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds ``botocore.httpsession`` as the normal finders would, then installs the transport in
    it as soon as the module has run — before any importer can see the module."""

    def __init__(self, transport: BotocoreDoorTransport) -> None:
        self._transport = transport

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != _HTTPSESSION:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        transport = self._transport

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> ModuleType | None:
                return loader.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                loader.exec_module(module)
                transport.install(module.URLLib3Session)

        spec.loader = _Loader()
        return spec


def install_when_imported(transport: BotocoreDoorTransport) -> None:
    """Put ``transport`` in place in this process: now if botocore is loaded, else when it is."""
    module = sys.modules.get(_HTTPSESSION)
    if module is not None:
        transport.install(module.URLLib3Session)
        return
    sys.meta_path.insert(0, _PatchOnImport(transport))
