"""``python -m scripts.localstack.moto_main``: moto's server, with S3 conditional writes and DynamoDB
writes made atomic, dying with its parent, and journaling every write before answering it.

moto 5.2.5 checks ``If-None-Match: *`` and ``If-Match`` on ``PutObject`` and then stores the object
as a separate step, without a lock, while its server handles requests on threads: two concurrent
conditional puts of one key can both succeed, the later silently replacing the earlier (seen here
with four threads racing on one key; see tests/unit/test_audit_store.py).  In AWS exactly one wins
and the others get 412.  Writers that serialise on conditional puts (the audit trail's partitions)
would lose data locally that they cannot lose in AWS, so the local stack runs moto with the check
and the store under one lock.  Unconditional puts are left alone.

DynamoDB is alike: moto's ``UpdateItem`` reads, evaluates and writes without a lock, so concurrent
``ADD`` updates of one item lose increments (8 threads x 50 updates ended at 392, not 400) — in AWS
every single-item write is atomic.  The rate limiter's counters and the conditional puts of the
document store rely on that, so every DynamoDB write runs under one lock here.

With ``--journal DIR`` every write to a DynamoDB item or an S3 object is appended to the journal
(``journal.py``) before moto's answer leaves: the images of the items a DynamoDB write touched are
read and appended under the same lock as the write (so no other write can see, and journal, a
transaction's effect before the transaction's own record is written); the S3 objects a request
touched are imaged at the end of the request, once moto has also set their metadata.  Journaling
starts only when the orchestrator asks (``POST /_localstack/journal/start``), after it has restored
the last snapshot and replayed the journal, so a restore is not journaled again.  SQS, EventBridge
and Cognito are not journaled: the snapshots do not keep them either (queues are transient, users
are seeded), so after a crash the stack comes back as it would after a clean stop.

``--door PATH`` also serves the Lambda workers' DynamoDB, SQS and EventBridge calls over a unix
socket (``door.py``; :class:`MotoDoor`): the same requests, dispatched to the same moto handlers
with the same request object moto's server builds, so the same locks, journal and serializer apply
(both hooks sit below the transport: the DynamoDB handler's methods and the S3 backend's).  S3 and
everything else stay on HTTP.  ``moto_fast`` (an exact fast path for the DynamoDB serializer, the
action lookup cached per handler class, request ids drawn in one call) is installed for both; the
door also builds moto's request object through ``moto_fast.request_from_door`` (the environ
``Request.from_primitives`` builds, its URL-only part cached).

``--lifeline-fd`` makes the server exit when the orchestrator is gone (``worker_main.exit_with_parent``);
``--stack-id`` marks the process for ``stack.StackLock``.
"""

from __future__ import annotations

import argparse
import calendar
import collections
import contextlib
import copy
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from scripts.localstack import moto_fast, s3_post
from scripts.localstack.door import MOTO_SERVICES, BlockingDoorServer, DoorRequest, DoorResponse, sigv4_scope
from scripts.localstack.journal import Image, ItemImage, JournalWriter, ObjectImage

_lock = threading.RLock()  # moto's S3 object handlers, one at a time (s3_object_patches)
CONTROL_PATH = "/_localstack/journal"
# The emulation's clock for what moto does not check itself: a presigned URL's expiry.  Tests move it
# forward (``POST /_localstack/clock {"offset": seconds}``) to see a 24-hour link refused after 24 h;
# the lifecycle sweeper (``lifecycle.py``) reads it (``GET``) to expire objects on the same clock.
CLOCK_PATH = "/_localstack/clock"
_clock_offset = 0.0


def emulated_now() -> float:
    return time.time() + _clock_offset


def _presign_expired(environ: dict[str, Any]) -> str | None:
    """S3's answer to a presigned request past its ``X-Amz-Date`` + ``X-Amz-Expires`` (moto serves
    them forever), or None."""
    query = environ.get("QUERY_STRING") or ""
    if "X-Amz-Expires=" not in query or "X-Amz-Signature=" not in query:
        return None
    from urllib.parse import parse_qs

    params = parse_qs(query)
    try:
        signed = calendar.timegm(time.strptime(params["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
        expires = int(params["X-Amz-Expires"][0])
    except (KeyError, ValueError, IndexError):
        return None
    now = emulated_now()
    if now <= signed + expires:
        return None
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>Request has expired</Message><X-Amz-Expires>{expires}</X-Amz-Expires>"
            f"<Expires>{time.strftime(stamp, time.gmtime(signed + expires))}</Expires>"
            f"<ServerTime>{time.strftime(stamp, time.gmtime(now))}</ServerTime></Error>")
_USER_METADATA = "x-amz-meta-"


def atomic(put_object: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap moto's ``S3Response.put_object`` so a put — conditional or not — checks and stores under
    one lock, and never overlaps a read of the object it replaces (see :func:`read_whole`)."""

    def atomic_put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return put_object(self, *args, **kwargs)

    atomic_put_object.__wrapped__ = put_object  # type: ignore[attr-defined]
    return atomic_put_object


def read_whole(get_object: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap moto's ``S3Response.get_object`` so a read never overlaps a write or delete of its object.

    moto closes the buffer of an object it replaces or deletes, so a GET racing the put that
    replaces it, or the delete that removes it, can fail ("I/O operation on closed file"); in S3 it
    returns the old or the new object, or ``NoSuchKey``.  The git store's refs document is exactly
    such an object (read by every clone, replaced by every commit), and two version archivers read
    a version's Standard copy while the other deletes it.
    """

    def read_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return get_object(self, *args, **kwargs)

    read_object.__wrapped__ = get_object  # type: ignore[attr-defined]
    return read_object


def s3_object_patches(response_class: Any) -> dict[str, Callable[[Any], Any]]:
    """moto's S3 object handlers wrapped so writes, copies, deletes and reads of objects happen one at
    a time (:func:`atomic`, :func:`read_whole`): what :func:`make_s3_conditional_writes_atomic`
    installs, for a test to install on ``S3Response`` with ``monkeypatch``."""
    patches = {"put_object": atomic(response_class.put_object), "get_object": read_whole(response_class.get_object)}
    # _key_response: every object request looks its object up first ("if name in keys: keys[name]"),
    # which a delete in between turned into a KeyError (a 500) instead of NoSuchKey.
    for name in ("copy_object", "delete_object", "_bucket_response_delete_keys", "_key_response"):
        patches[name] = read_whole(getattr(response_class, name))  # the same lock: one at a time
    return patches


def make_s3_conditional_writes_atomic() -> None:
    """Patch moto (in this process) so ``PutObject`` (conditional or not) is atomic and no object
    write, copy or delete overlaps a ``GetObject``, as in S3. Idempotent."""
    from moto.s3.responses import S3Response

    if hasattr(S3Response.put_object, "__wrapped__"):
        return
    for name, method in s3_object_patches(S3Response).items():
        setattr(S3Response, name, method)


_dynamodb_lock = threading.RLock()
_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
# Moto applies an update's actions one by one to the stored item, so an unlocked read can see half of it
# (a job "running" without its lease yet); in AWS a read sees an item before or after a write, never within.
_DYNAMODB_READS = ("get_item", "batch_get_item", "query", "scan", "transact_get_items")
_journal: JournalWriter | None = None  # set by install_journal


def make_dynamodb_writes_atomic() -> None:
    """Patch moto (in this process) so each DynamoDB write is atomic, as in AWS, and each read sees whole
    items (never one half-way through a write). Idempotent.

    Once :func:`install_journal` has run, each successful write is also journaled under the lock.
    """
    from moto.dynamodb.responses import DynamoHandler

    for name in _DYNAMODB_WRITES + _DYNAMODB_READS:
        original = getattr(DynamoHandler, name)
        # Not ``__wrapped__``: moto's own decorators set it (put_item and delete_item have it), which
        # once made this skip them, leaving those two writes unlocked (and now, unjournaled).
        if hasattr(original, "__localstack_locked__"):
            continue

        def locked(self: Any, _original: Callable[[Any], Any] = original, _name: str = name) -> Any:
            with _dynamodb_lock:
                response = _original(self)  # raises on any refusal: then nothing changed
                journal = _journal
                if journal is not None and journal.active and _name in _DYNAMODB_WRITES:
                    journal.append(lambda: _dynamodb_images(self, _name))
                return response

        locked.__wrapped__ = original  # type: ignore[attr-defined]
        locked.__localstack_locked__ = True  # type: ignore[attr-defined]
        setattr(DynamoHandler, name, locked)
    _roll_back_transactions_by_item()


class _NoTableCopies:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: a deep copy of a Table is
    the table itself (see :func:`_roll_back_transactions_by_item`), anything else is copied."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _roll_back_transactions_by_item() -> None:
    """Make a failed TransactWriteItems undo only the items it wrote.  Idempotent.

    moto backs up every table a transaction names with a deep copy, before checking anything, so
    a transaction's cost grows with the table (160 ms against 1,000 versions of one PRD, and every
    PRD's items on each membership change).  DynamoDB's cost does not.  Here the backup is of the
    items the transaction targets, taken as they were (writes are serialised by
    ``_dynamodb_lock``, so nothing else changes them meanwhile), and restored with moto's own
    put/delete when moto rolls back; moto's table copies become no-ops.
    """
    import moto.dynamodb.models as models

    backend_class = models.DynamoDBBackend
    original = backend_class.transact_write_items
    if hasattr(original, "__localstack_item_rollback__"):
        return
    models.copy = _NoTableCopies()  # type: ignore[assignment]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            for kind, op in entry.items():
                if kind not in ("Put", "Update", "Delete") or not isinstance(op, dict):
                    continue
                try:
                    table = self.get_table(op["TableName"])
                    if kind == "Put":
                        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                        key = {name: op["Item"][name] for name in names}
                    else:
                        key = op["Key"]
                    current = self.get_item(op["TableName"], key)
                except Exception:  # moto refuses this entry itself, before writing it
                    continue
                before = copy.deepcopy(current.to_json()["Attributes"]) if current is not None else None
                saved.append((op["TableName"], key, before))
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, key, before in reversed(saved):
                if before is not None:
                    self.put_item(table_name, before)
                elif self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            raise

    transact_write_items.__wrapped__ = original  # type: ignore[attr-defined]
    transact_write_items.__localstack_item_rollback__ = True  # type: ignore[attr-defined]
    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]


# ---------------------------------------------------------------- journal: DynamoDB


def _dynamodb_images(handler: Any, operation: str) -> list[Image]:
    """The items a successful write touched, as they are now (called under ``_dynamodb_lock``)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    body = handler.body  # the request's parameters, parsed by moto
    backend = handler.dynamodb_backend
    touched: list[tuple[Any, dict[str, Any]]] = []
    if operation == "put_item":
        touched.append((backend.get_table(body["TableName"]), body["Item"]))
    elif operation in ("update_item", "delete_item"):
        touched.append((backend.get_table(body["TableName"]), body["Key"]))
    elif operation == "batch_write_item":
        for table_name, requests in body["RequestItems"].items():
            table = backend.get_table(table_name)
            for request in requests:
                put = request.get("PutRequest")
                touched.append((table, put["Item"] if put else request["DeleteRequest"]["Key"]))
    else:  # transact_write_items; ConditionCheck entries write nothing
        for entry in body["TransactItems"]:
            for kind, key_field in (("Put", "Item"), ("Update", "Key"), ("Delete", "Key")):
                if kind in entry:
                    touched.append((backend.get_table(entry[kind]["TableName"]), entry[kind][key_field]))
    images: list[Image] = []
    for table, attributes in touched:
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        key = {name: attributes[name] for name in names}
        item = table.get_item(
            DynamoType(key[table.hash_key_attr]),
            DynamoType(key[table.range_key_attr]) if table.range_key_attr else None,
        )
        images.append(ItemImage(table.name, key, None if item is None else item.to_json()["Attributes"]))
    return images


# ---------------------------------------------------------------- journal: S3

# The S3 objects the current request changed: (backend, bucket, key), imaged when the request ends.
_touched = threading.local()


def _touch(backend: Any, bucket: str, key: str) -> None:
    journal = _journal
    if journal is not None and journal.active:
        if not hasattr(_touched, "objects"):
            _touched.objects = {}
        _touched.objects[(id(backend), bucket, key)] = (backend, bucket, key)


def _take_touched() -> list[tuple[Any, str, str]]:
    objects: dict[Any, tuple[Any, str, str]] = getattr(_touched, "objects", {})
    _touched.objects = {}
    return list(objects.values())


def _object_images(touched: Iterable[tuple[Any, str, str]]) -> list[Image]:
    images: list[Image] = []
    for backend, bucket, key in touched:
        found = backend.get_object(bucket, key)  # the latest version; None if deleted (or a delete marker)
        if found is None:
            images.append(ObjectImage(bucket, key, None))
            continue
        metadata = dict(found.metadata)
        images.append(
            ObjectImage(
                bucket,
                key,
                found.value,
                metadata.get("content-type"),
                {k[len(_USER_METADATA) :]: v for k, v in metadata.items() if k.startswith(_USER_METADATA)},
            )
        )
    return images


def _track_s3_writes() -> None:
    """Note every object moto's S3 stores or deletes; every S3 write (put, copy, multipart
    completion, delete, multi-object delete, form upload) goes through these two methods."""
    from moto.s3.models import S3Backend

    for name in ("put_object", "delete_object"):
        original = getattr(S3Backend, name)
        if hasattr(original, "__journaled__"):
            continue

        def tracked(
            self: Any, bucket_name: str, key_name: str, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            result = _original(self, bucket_name, key_name, *args, **kwargs)
            _touch(self, bucket_name, key_name)
            return result

        tracked.__journaled__ = original  # type: ignore[attr-defined]
        setattr(S3Backend, name, tracked)


# ---------------------------------------------------------------- the server


def install_journal(journal: JournalWriter) -> None:
    """Journal this process's moto writes into ``journal`` (once it is started)."""
    global _journal
    _journal = journal
    make_dynamodb_writes_atomic()
    _track_s3_writes()


def _journal_touched_objects(journal: JournalWriter | None) -> None:
    """Journal the S3 objects the request that just ran on this thread touched (HTTP or door)."""
    touched = _take_touched()
    if touched and journal is not None:
        journal.append(lambda: _object_images(touched))


class JournaledApp:
    """moto's WSGI app, plus the journal's control endpoint and the S3 images taken at each request's end."""

    def __init__(self, app: Callable[..., Any], journal: JournalWriter | None) -> None:
        self._app = app
        self._journal = journal

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith(CONTROL_PATH):
            return self._control(environ, start_response)
        if environ.get("PATH_INFO", "").startswith(CLOCK_PATH):
            return self._clock(environ, start_response)
        expired = _presign_expired(environ) if environ.get("REQUEST_METHOD") in ("GET", "HEAD") else None
        if expired is not None:
            body = expired.encode()
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        refused = s3_post.refusal(environ, emulated_now())  # a presigned POST form's policy
        if refused is not None:
            status, body = refused
            start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        try:
            return self._app(environ, start_response)
        finally:
            # Before the response leaves (werkzeug sends it once this returns).  A failure to
            # write raises: the request then fails with 500 instead of being acknowledged.
            _journal_touched_objects(self._journal)

    @staticmethod
    def _clock(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        global _clock_offset
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            _clock_offset = float(json.loads(environ["wsgi.input"].read(length) or b"{}").get("offset", 0))
        body = json.dumps({"offset": _clock_offset, "now": emulated_now()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        journal = self._journal
        action = environ["PATH_INFO"][len(CONTROL_PATH) :].strip("/")
        method = environ["REQUEST_METHOD"]
        answer: dict[str, Any] | None = None
        if journal is not None:
            if method == "GET" and action == "":
                answer = journal.status()
            elif method == "POST" and action == "start":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                request = json.loads(environ["wsgi.input"].read(length) or b"{}")
                answer = {"sequence": journal.start(int(request.get("floor", 0)))}
            elif method == "POST" and action == "rotate":
                answer = {"sequence": journal.rotate()}
        status = "200 OK" if answer is not None else "404 Not Found"
        body = json.dumps(answer if answer is not None else {"message": "no such journal action"}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


# ---------------------------------------------------------------- the door


_AWS_HOSTS = {
    # The host a request to each door-served service has in AWS, which is what moto's URL patterns
    # match (as moto's server infers it from the signing name: ``infer_service_region_host``).
    "dynamodb": "dynamodb.{region}.amazonaws.com",
    "sqs": "sqs.{region}.amazonaws.com",
    "events": "events.{region}.amazonaws.com",
}
_STREAMS_HOST = "streams.dynamodb.{region}.amazonaws.com"  # DynamoDB Streams signs as "dynamodb" too


class Turns:
    """One request at a time, interactive ones first.

    In AWS a compaction's ``Query`` of 500 updates or its 20 ``BatchWriteItem`` calls do not hold
    up anybody's ``PutItem``; moto serves one request at a time, so here they would: a keystroke
    arriving behind a 60 ms ``Query`` waited for it.  So a background function's request (its
    workers use moto's second door) gets the turn only when no interactive request waits — unless
    it has waited ``BACKGROUND_PATIENCE_SECONDS`` already, so a steady stream of keystrokes cannot
    starve the doc writer; and such a forced turn comes at most once per that period, so a queue of
    background requests cannot starve the keystrokes either.  Otherwise first come, first served.

    The turn is handed from one request to the next: the one leaving wakes exactly the one whose
    turn it is (a lock each waiter sleeps on), never all of them — with ~30 door threads, waking
    them all to find out whose turn it was cost more than the requests themselves.
    """

    BACKGROUND_PATIENCE_SECONDS = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._interactive: collections.deque[_Waiter] = collections.deque()
        self._background: collections.deque[_Waiter] = collections.deque()
        self._forced_at = 0.0  # when a background request last went before waiting interactive ones

    @contextlib.contextmanager
    def turn(self, *, background: bool) -> Iterator[None]:
        with self._lock:
            if self._busy:
                waiter = _Waiter()
                (self._background if background else self._interactive).append(waiter)
            else:
                waiter = None  # nobody waits while the turn is free: it is ours
                self._busy = True
        if waiter is not None:
            waiter.gate.acquire()  # released by the request before us, which handed us the turn
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        with self._lock:
            background = self._background
            now = time.monotonic()
            # Patience runs from the later of the request's asking and the last forced turn: a queue
            # of background requests gets one turn ahead of interactive ones per period, not all.
            if (background and self._interactive
                    and now - max(background[0].asked, self._forced_at) >= self.BACKGROUND_PATIENCE_SECONDS):
                following: _Waiter | None = background.popleft()
                self._forced_at = now
            elif self._interactive:
                following = self._interactive.popleft()
            elif background:
                following = background.popleft()
            else:
                following = None
                self._busy = False
        if following is not None:
            following.gate.release()


class _Waiter:
    """A request waiting for its turn: it sleeps on ``gate`` until the one before it releases it."""

    __slots__ = ("asked", "gate")

    def __init__(self) -> None:
        self.asked = time.monotonic()
        self.gate = threading.Lock()
        self.gate.acquire()


class _DoorTrace:
    """``LOCAL_MOTO_DOOR_TRACE=<file>``: one line per door request — when it asked (epoch s), how long
    it waited for its turn and was served (ms), interactive or background, body size, operation, the
    serving thread's CPU time (ms) —
    to see what holds up whom (docs/benchmarks.md).  Off unless set; for a debugging session."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._offset = time.time() - time.monotonic()

    def record(self, request: DoorRequest, background: bool, asked: float, started: float, ended: float,
               cpu: float) -> None:
        operation = (request.header("X-Amz-Target") or request.target)[:80]
        self._file.write(f"{self._offset + asked:.4f} {1000 * (started - asked):.2f} {1000 * (ended - started):.2f} "
                         f"{'bg' if background else 'fg'} {len(request.body)} {operation} {1000 * cpu:.2f}\n")


def _door_trace() -> _DoorTrace | None:
    path = os.environ.get("LOCAL_MOTO_DOOR_TRACE")
    return _DoorTrace(path) if path else None


class MotoDoor:
    """Serves the door's requests (``door.py``) with moto's own handlers, as its server would.

    It does what ``moto.core.botocore_stubber.BotocoreStubber.process_request`` does — find the
    service's backend by the URL the request has in AWS (rebuilt from the SigV4 scope, as moto's
    server does from the same header), pick the handler by moto's URL patterns, call it with moto's
    normalised ``Request`` — with one difference that keeps the answers identical to the HTTP
    path's: the handler gets the request's *real* URL (``http://127.0.0.1:<port>/...``, from its
    ``Host`` header), not the AWS one.  Answers embed it: SQS builds every ``QueueUrl`` from it, so
    through the stubber a ``CreateQueue`` would answer ``https://sqs.<region>.amazonaws.com/...``
    where the HTTP path answers the local URL.  Region and account come from the ``Authorization``
    header in both paths (no region in a loopback URL).

    Errors come back as over HTTP: moto's error exceptions become their status, headers and body;
    a ``ClientError`` raised inside a handler becomes the 400 moto's Flask wrapper answers; anything
    else becomes a 500 (``BlockingDoorServer``), where werkzeug would also answer 500.  The response
    gets the ``Content-Type``/``Content-Length`` Flask would add.  Each request ends, like an HTTP
    one, by journaling the S3 objects it touched (none, for the services served here; DynamoDB
    writes are journaled by the handler's own lock wrapper).
    """

    def __init__(self, journal: JournalWriter | None, services: frozenset[str] = MOTO_SERVICES) -> None:
        unknown = services - _AWS_HOSTS.keys()
        if unknown:
            raise ValueError(f"the moto door cannot serve {sorted(unknown)}")
        self._journal = journal
        self._services = services
        self._routes: dict[str, list[tuple[re.Pattern[str], Callable[..., Any]]]] = {}  # by AWS host
        self._routes_lock = threading.Lock()
        self._turns = Turns()
        self._trace = _door_trace()

    def __call__(self, request: DoorRequest) -> DoorResponse:
        """Serve one request of an interactive function's worker (or of the stack's pollers)."""
        return self._take_turn(request, background=False)

    def background(self, request: DoorRequest) -> DoorResponse:
        """Serve one request of a background function's worker (``--background-door``): it waits
        while an interactive request waits."""
        return self._take_turn(request, background=True)

    def _take_turn(self, request: DoorRequest, *, background: bool) -> DoorResponse:
        """Serve one request; the door's threads take turns (one request at a time), except for an
        SQS ``ReceiveMessage``, which may wait for messages.

        Taking turns changes no outcome: moto's DynamoDB handlers already run one at a time
        (``_dynamodb_lock``), and what surrounds them — building the request, parsing, serialising —
        only competes for the GIL.  It saves that competition: eight threads contending for the GIL
        spent ~40 % more CPU per ``GetItem`` than eight taking turns (0.47 vs 0.34 ms).  Whose turn
        is next is not first come, first served: see :class:`Turns`.
        """
        if b"ReceiveMessage" in request.body or "ReceiveMessage" in request.target or (
                request.header("X-Amz-Target") or "").endswith(".ReceiveMessage"):
            return self._serve(request)
        asked = time.monotonic()
        with self._turns.turn(background=background):
            started = time.monotonic()
            cpu = time.thread_time() if self._trace is not None else 0.0
            try:
                return self._serve(request)
            finally:
                if self._trace is not None:
                    self._trace.record(request, background, asked, started, time.monotonic(), time.thread_time() - cpu)

    def _serve(self, request: DoorRequest) -> DoorResponse:
        from botocore.exceptions import ClientError
        from moto.core.exceptions import HTTPException
        from moto.moto_api import recorder

        scope = sigv4_scope(request.header("Authorization"))
        if scope is None or scope[1] not in self._services:
            # Never sent by the workers' transport, which routes by the same rule.
            served = ", ".join(sorted(self._services))
            refusal = {"message": f"the moto door serves only SigV4-signed requests of {served}"}
            return _door_answer(400, {"Content-Type": "application/json"}, json.dumps(refusal))
        region, service = scope
        template = _AWS_HOSTS[service]
        if service == "dynamodb" and (request.header("X-Amz-Target") or "").startswith("DynamoDBStreams"):
            template = _STREAMS_HOST
        handler = self._handler(template.format(region=region), request.path)
        if handler is None:
            return _door_answer(404, {}, "Not yet implemented")  # what the stubber answers
        host = request.header("Host") or "localhost"
        # Request.from_primitives(method, url, Headers(headers), body), built faster (moto_fast)
        moto_request = moto_fast.request_from_door(
            request.method, f"http://{host}{request.target}", request.headers, request.body
        )
        try:
            recorder._record_request(moto_request)
            # The request's own headers, not a dict copy of them (~18 µs): the handlers only read them.
            status, headers, body = handler(moto_request, moto_request.raw_url, moto_request.headers)
        except HTTPException as exc:
            status, headers, body = exc.code or 500, exc.get_headers(), exc.get_body()
        except ClientError as exc:  # moto's Flask wrapper answers these with 400 and the message
            status, headers, body = 400, {}, exc.response["Error"]["Message"]
        finally:
            _journal_touched_objects(self._journal)
        return _door_answer(status, headers, body, head=request.method == "HEAD")

    def _handler(self, host: str, path: str) -> Callable[..., Any] | None:
        """The moto handler for a request to ``https://{host}{path}`` (AWS's URL, no query), found
        as the stubber finds it: the routes of each backend whose URL pattern matches, in moto's
        order, the first route that matches winning (None: the stubber's 404)."""
        aws_url = f"https://{host}{path}"
        routes = self._routes.get(host)
        if routes is None:
            import moto.backend_index as backend_index

            # The stubber tries ~300 backend patterns on every request.  They are moto's URL bases
            # (scheme and host), so which backends match depends on the host alone: found once.
            routes = [
                route
                for name, pattern in backend_index.backend_url_patterns
                if pattern.match(aws_url)
                for route in self._backend_routes(name)
            ]
            with self._routes_lock:
                self._routes[host] = routes
        return next((handler for url_pattern, handler in routes if url_pattern.match(aws_url)), None)

    @staticmethod
    def _backend_routes(name: str) -> list[tuple[re.Pattern[str], Callable[..., Any]]]:
        import moto.backends as backends
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.core.base_backend import BackendDict

        backend_dict = backends.get_backend(name)  # type: ignore[call-overload]
        if isinstance(backend_dict, BackendDict):
            regions = backend_dict[DEFAULT_ACCOUNT_ID]
            backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
        else:
            backend = backend_dict["global"]
        # moto builds this dict (and the stubber compiles its patterns) on every request.
        return [(re.compile(url), handler) for url, handler in backend.urls.items()]


def _door_answer(status: Any, headers: Any, body: Any, *, head: bool = False) -> DoorResponse:
    """A moto handler's (status, headers, body) as the bytes Flask would have put on the wire."""
    if isinstance(status, str):
        status = int(status.split()[0])
    pairs = [(str(k), str(v)) for k, v in (headers.items() if hasattr(headers, "items") else headers)]
    data = body.encode() if isinstance(body, str) else bytes(body or b"")
    names = {name.lower() for name, _ in pairs}
    if "content-type" not in names:
        pairs.append(("Content-Type", "text/html; charset=utf-8"))  # Flask's default mimetype
    if "content-length" not in names:
        pairs.append(("Content-Length", str(len(data))))
    return DoorResponse(int(status), pairs, b"" if head else data)


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)  # as moto's own server does on SIGINT and SIGTERM


#: How often the emulation's heap is moved out of the cyclic collector's reach.
FREEZE_SECONDS = 10.0


def _freeze_the_heap() -> None:
    """Every :data:`FREEZE_SECONDS`, ``gc.freeze()`` what is alive: moto's backends, tables and items
    live as long as the process, and a full collection walks all of them with every request waiting
    on the GIL (70-100 ms pauses at a few hundred thousand objects, measured under the co-editing
    load; docs/benchmarks.md).  Reference counting still frees what moto drops (a deleted item); only
    a reference cycle that was alive at a freeze and dies later is never reclaimed, which moto's
    stored data does not form."""
    import gc

    while True:
        gc.freeze()
        time.sleep(FREEZE_SECONDS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.localstack.moto_main", description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--journal", type=Path, help="journal directory (journaling starts when asked)")
    parser.add_argument("--lifeline-fd", type=int, help="exit when this pipe reaches end-of-file")
    parser.add_argument("--stack-id", help="marks the process as part of one start of the local stack")
    parser.add_argument("--door", help="also serve the workers' DynamoDB/SQS/EventBridge calls on this unix socket")
    parser.add_argument("--background-door", help="the same for background functions' workers (served after --door's)")
    args = parser.parse_args(argv)
    if args.lifeline_fd is not None:
        from scripts.localstack.worker_main import exit_with_parent

        exit_with_parent(args.lifeline_fd)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    make_s3_conditional_writes_atomic()
    make_dynamodb_writes_atomic()
    moto_fast.install()
    moto_fast.cache_action_lookup()
    moto_fast.fast_random_strings()
    moto_fast.cache_jsonpath_parse()
    moto_fast.query_one_partition()
    moto_fast.sqs_one_clock_read_per_scan()
    moto_fast.sqs_long_polls_wait()
    moto_fast.cache_condition_parse()
    moto_fast.fast_string_comparisons()
    moto_fast.fast_item_sizes()
    moto_fast.compile_request_parsing()
    journal = JournalWriter(args.journal) if args.journal else None
    if journal is not None:
        install_journal(journal)
    threading.Thread(target=_freeze_the_heap, name="gc-freeze", daemon=True).start()
    served = MotoDoor(journal)
    doors = [BlockingDoorServer(args.door, served, name="moto-door")] if args.door else []
    if args.background_door:
        doors.append(BlockingDoorServer(args.background_door, served.background, name="moto-background-door"))
    # What moto.server.main does, with the journal around moto's app.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    try:
        run_simple(
            args.host,
            args.port,
            JournaledApp(app, journal),
            threaded=True,
            request_handler=MotoRequestHandler,
        )
    finally:
        for door in doors:
            door.close()


if __name__ == "__main__":
    main()
