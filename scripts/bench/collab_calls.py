"""AWS API calls per relayed edit and per document open (issue #3), on the local stack.

N real WebSocket clients (``tests/e2e/yclient.YClient``, pycrdt) join one PRD through the local
gateway.  Then *this* process, pointed at the stack's moto with ``WEBSOCKET_CALLBACK_URL`` set to
the gateway (which serves ``@connections``, so posts reach the real sockets), calls
``prdtool.collab.socket.on_message`` with real API Gateway WebSocket ``MESSAGE`` events from one of
those connections, each carrying one keystroke-sized Yjs update, and counts every AWS API call the
handler makes by patching ``botocore.client.BaseClient._make_api_call`` (the one method boto3
clients and pynamodb's connection both go through; retries happen below it, so a call is a call).
DynamoDB capacity units are computed from the item sizes sent and received, with DynamoDB's
rounding (1 KB per write unit and item, 4 KB per strongly consistent read unit and request).

The helpers here (``bench_stack``, ``bind_to``, ``ApiCounter``, ``Api``) are shared by the other
``collab_*`` benchmarks and ``cost``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import os
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "shared") not in sys.path:
    sys.path.insert(0, str(ROOT / "shared"))

PEERS = (2, 5, 10)
EDITS = 50
WARMUP_EDITS = 5
OPENS = 5
SAMPLE_MARKDOWN = ROOT / "scripts" / "localstack" / "sample_prd.md"
API_GW_MESSAGE_BYTES = 32 * 1024  # API Gateway WebSocket bills messages in 32 KB increments

DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DDB_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


# ----------------------------------------------------------------------------- the stack
@contextlib.contextmanager
def bench_stack(*, seed: bool = True, function_env: dict[str, str] | None = None) -> Iterator[Any]:
    """A fresh local stack on free loopback ports (no saved state), quiet unless it fails; yielded
    once its own start-up work (saving and indexing the sample PRDs) is done, so that is not measured."""
    from scripts.localstack.stack import LocalStack

    logging.getLogger("localstack").setLevel(logging.WARNING)
    with LocalStack(ROOT, port=0, state_dir=None, seed=seed, function_env=function_env) as stack:
        settle(stack)
        yield stack


def settle(stack: Any) -> None:
    """Wait until the stack's background work is done (``LocalStack.wait_until_idle``), so that
    what came before — its start, an earlier load — is not measured with what comes next."""
    if not stack.wait_until_idle():
        logging.getLogger("localstack").warning("the stack was still busy after 180 s: measuring anyway")


@contextlib.contextmanager
def bind_to(stack: Any, function: str = "WebSocketFunction") -> Iterator[None]:
    """Point prdtool's settings, clients and models at the stack, with ``function``'s environment.

    As ``tests/e2e/storage.py`` does, plus the callback URL of the local gateway (which serves
    ``@connections``) and dummy credentials.
    """
    from prdtool.aws import reset_clients
    from prdtool.observability import logger
    from prdtool.settings import reset_settings_cache
    from prdtool.storage import rebind_models

    env = dict(stack.manifest["functions"][function]["environment"])
    env.update({
        "AWS_ENDPOINT_URL": stack.moto_url,
        "AWS_REGION": stack.manifest["region"],
        "AWS_DEFAULT_REGION": stack.manifest["region"],
        # The stack's own credentials: its @connections refuses requests signed with anything else.
        "AWS_ACCESS_KEY_ID": stack.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": stack.credentials.secret_access_key,
        "WEBSOCKET_CALLBACK_URL": stack.base_url,
        "POWERTOOLS_TRACE_DISABLED": "true",
    })
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings_cache()
    reset_clients()
    rebind_models()
    log_level = logger.log_level
    logger.setLevel("WARNING")  # the handlers' INFO lines go to stdout, which carries the Markdown
    try:
        yield
    finally:
        logger.setLevel(log_level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings_cache()
        reset_clients()
        rebind_models()


class Api:
    """The few HTTP API calls the benchmarks need (as a person's script would make them)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def login(self, username: str) -> str:
        return str(self.call("POST", "/api/auth/login", {"username": username, "password": "demo-password"})
                   ["access_token"])

    def shared_prd(self, title: str, markdown: str) -> tuple[str, dict[str, str]]:
        """A new PRD owned by alice, bob an editor; returns its id and both users' tokens."""
        tokens = {name: self.login(name) for name in ("alice", "bob")}
        prd_id = str(self.call("POST", "/api/prds", {"title": title, "markdown": markdown}, tokens["alice"])["id"])
        self.call("PUT", f"/api/prds/{prd_id}/members/bob", {"role": "editor"}, tokens["alice"])
        return prd_id, tokens


# ----------------------------------------------------------------------------- counting
def _attr_size(value: Any) -> int:
    """Bytes a DynamoDB attribute value counts for (AWS's item size rules, closely enough)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(base64.b64decode(v) if isinstance(v, str) else v)
    if kind == "N":
        digits = len(str(v).lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_attr_size({"N": n}) for n in v)
    if kind == "BS":
        return sum(_attr_size({"B": b}) for b in v)
    if kind == "L":
        return 3 + sum(1 + _attr_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _attr_size(x) for k, x in v.items())
    return 0


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _attr_size(value) for name, value in item.items())


def _read_units(total_bytes: int, consistent: bool) -> float:
    units = max(1, math.ceil(total_bytes / 4096))
    return float(units) if consistent else units / 2


def _capacity(operation: str, params: dict[str, Any], result: dict[str, Any]) -> tuple[float, float]:
    """(read units, write units) one DynamoDB call consumed, from the sizes of the items involved."""
    consistent = bool(params.get("ConsistentRead"))
    if operation == "PutItem":
        return 0.0, max(1, math.ceil(item_size(params["Item"]) / 1024))
    if operation in ("UpdateItem", "DeleteItem"):
        return 0.0, 1.0  # the items updated or deleted on these paths are all under 1 KB
    if operation == "BatchWriteItem":
        wru = 0
        for requests in params.get("RequestItems", {}).values():
            for request in requests:
                put = request.get("PutRequest")
                wru += max(1, math.ceil(item_size(put["Item"]) / 1024)) if put else 1
        return 0.0, float(wru)
    if operation == "GetItem":
        return _read_units(item_size(result.get("Item") or {}), consistent), 0.0
    if operation in ("Query", "Scan"):
        return _read_units(sum(item_size(i) for i in result.get("Items", [])), consistent), 0.0
    if operation == "TransactWriteItems":
        return 0.0, 2.0 * len(params.get("TransactItems", []))
    if operation in ("BatchGetItem", "TransactGetItems"):
        return 1.0, 0.0  # not on the measured paths
    return 0.0, 0.0


@dataclass
class Tally:
    """What a stretch of work cost: calls by (service, operation, resource), time, units."""

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    seconds: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    rru: float = 0.0
    wru: float = 0.0
    wru_by_op: Counter[str] = field(default_factory=Counter)  # e.g. "PutItem Docs" -> write units
    gw_message_units: int = 0  # PostToConnection data, in 32 KB increments
    sqs_request_units: int = 0  # SQS requests, in 64 KB chunks

    def count(self, service: str, operation: str | None = None) -> int:
        return sum(n for (s, o, _r), n in self.calls.items() if s == service and (operation is None or o == operation))

    def ddb_writes(self) -> int:
        return sum(n for (s, o, _r), n in self.calls.items() if s == "dynamodb" and o in DDB_WRITES)

    def ddb_reads(self) -> int:
        return sum(n for (s, o, _r), n in self.calls.items() if s == "dynamodb" and o in DDB_READS)

    def posts(self) -> int:
        return self.count("apigatewaymanagementapi", "PostToConnection")

    def sqs_sends(self) -> int:
        return self.count("sqs", "SendMessage") + self.count("sqs", "SendMessageBatch")

    def other(self) -> int:
        return sum(self.calls.values()) - self.ddb_writes() - self.ddb_reads() - self.posts() - self.sqs_sends()

    def detail(self) -> str:
        """E.g. ``PutItem Docs x50, Query Connections x50`` (table names without the stack prefix)."""
        parts = [f"{op}{' ' + res if res else ''} x{n}" for (_s, op, res), n in sorted(self.calls.items())]
        return ", ".join(parts)


def _resource(service: str, params: dict[str, Any]) -> str:
    if service == "dynamodb":
        table = params.get("TableName") or next(iter(params.get("RequestItems", {}) or {}), "")
        return str(table).rsplit("-", 1)[-1].removesuffix("Table")
    return ""


class ApiCounter:
    """Counts the botocore API calls of the code under test while installed (thread-safe).

    The local stack's own SQS pollers run in this process too (asyncio executor threads): only
    calls made on the thread that installed the counter and on the relay's fan-out pool threads
    (``fanout_*``) are counted.
    """

    def __init__(self) -> None:
        self.tally = Tally()
        self._lock = threading.Lock()
        self._original: Any = None
        self._original_call: Any = None
        self._thread = threading.current_thread()

    def _counts_here(self) -> bool:
        thread = threading.current_thread()
        return thread is self._thread or thread.name.startswith("fanout")

    def __enter__(self) -> ApiCounter:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            if not counter._counts_here():
                return original(client, operation_name, api_params)
            service = client.meta.service_model.service_name
            started = time.perf_counter()
            try:
                result = original(client, operation_name, api_params)
            except Exception:
                counter._record(service, operation_name, api_params, {}, started)
                raise
            counter._record(service, operation_name, api_params, result, started)
            return result

        # The fan-out posts go through prdtool's lean management API client, not a boto3 client.
        from prdtool.collab.poster import ConnectionsApi

        original_call = ConnectionsApi._call

        def counted_call(api: Any, method: str, connection_id: str, body: bytes, operation: str) -> None:
            if not counter._counts_here():
                return original_call(api, method, connection_id, body, operation)
            started = time.perf_counter()
            try:
                return original_call(api, method, connection_id, body, operation)
            finally:
                counter._record("apigatewaymanagementapi", operation, {"Data": body}, {}, started)

        self._original = original
        self._original_call = original_call
        self._thread = threading.current_thread()
        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        ConnectionsApi._call = counted_call  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from botocore.client import BaseClient

        from prdtool.collab.poster import ConnectionsApi

        BaseClient._make_api_call = self._original  # type: ignore[method-assign]
        ConnectionsApi._call = self._original_call  # type: ignore[method-assign]

    def _record(self, service: str, operation: str, params: dict[str, Any], result: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        rru = wru = 0.0
        if service == "dynamodb":
            rru, wru = _capacity(operation, params, result if isinstance(result, dict) else {})
        with self._lock:
            tally = self.tally
            tally.calls[(service, operation, _resource(service, params))] += 1
            tally.seconds[(service, operation)] += elapsed
            tally.rru += rru
            tally.wru += wru
            if wru:
                tally.wru_by_op[f"{operation} {_resource(service, params)}".strip()] += wru
            if service == "apigatewaymanagementapi" and operation == "PostToConnection":
                tally.gw_message_units += max(1, math.ceil(len(params.get("Data", b"")) / API_GW_MESSAGE_BYTES))
            if service == "sqs":
                tally.sqs_request_units += max(1, math.ceil(len(str(params.get("MessageBody", ""))) / 65536))

    def take(self) -> Tally:
        """The tally so far, and start a new one."""
        with self._lock:
            tally, self.tally = self.tally, Tally()
        return tally


# ----------------------------------------------------------------------------- the benchmark
def message_event(connection_id: str, prd_id: str, username: str, body: str) -> dict[str, Any]:
    """An API Gateway WebSocket ``$default`` MESSAGE event (events/ws-message-ping.json's shape)."""
    event: dict[str, Any] = json.loads((ROOT / "events" / "ws-message-ping.json").read_text())
    now = int(time.time() * 1000)
    ctx = event["requestContext"]
    ctx.update({"connectionId": connection_id, "requestId": f"bench-{now}-{id(body)}", "messageId": f"m{now}",
                "requestTimeEpoch": now})
    ctx["authorizer"].update({"principalId": username, "username": username, "prd_id": prd_id, "role": "editor",
                              "is_admin": "false", "expires_at": str(now // 1000 + 3600)})
    event["body"] = body
    return event


class PhaseTimer:
    """Wall time of named steps of the handler, by wrapping module attributes (restored on exit)."""

    def __init__(self, targets: list[tuple[Any, str, str]]) -> None:
        self.targets = targets
        self.times: defaultdict[str, list[float]] = defaultdict(list)
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> PhaseTimer:
        for module, attr, label in self.targets:
            original = getattr(module, attr)
            self._saved.append((module, attr, original))
            setattr(module, attr, self._wrap(original, label))
        return self

    def _wrap(self, function: Any, label: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.times[label].append((time.perf_counter() - started) * 1000)
        return timed

    def __exit__(self, *exc: object) -> None:
        for module, attr, original in reversed(self._saved):
            setattr(module, attr, original)
        self._saved.clear()


def _phases() -> list[tuple[Any, str, str]]:
    from prdtool.collab import relay, socket, store, writequeue

    return [(socket, "parse_frame", "parse JSON frame"), (socket, "decode_message", "decode y-message"),
            (socket, "_validate_update", "validate (pycrdt)"), (store, "append_update", "PutItem update"),
            (relay, "update_peers", "peers (roster read)"), (relay, "broadcast", "fan-out posts (wall)"),
            (writequeue, "notify", "write-queue notify")]


@dataclass
class PeerResult:
    peers: int
    edits: int
    edit: Tally
    edit_ms: list[float]
    acked: Tally
    acked_edits: int
    opens: int
    open: Tally
    open_ms: list[float]
    pending_at_open: int
    delivered_to: int  # clients (of peers - 1) that received every edit
    phases: dict[str, list[float]] = field(default_factory=dict)


def _quietly() -> contextlib.AbstractContextManager[Any]:
    # Powertools Metrics prints EMF to stdout when its buffer fills; keep the Markdown clean.
    return contextlib.redirect_stdout(io.StringIO())


def _wait_delivered(clients: list[Any], expected: str, want: int, timeout: float = 30) -> int:
    """How many clients hold exactly ``expected`` (waiting up to ``timeout`` for ``want`` of them)."""
    deadline = time.monotonic() + timeout
    while True:
        delivered = sum(1 for c in clients if c.content() == expected)
        if delivered >= want or time.monotonic() > deadline:
            return delivered
        time.sleep(0.05)


def measure_peers(stack: Any, peers: int, *, edits: int = EDITS, opens: int = OPENS) -> PeerResult:
    from pycrdt import Doc, Text

    from prdtool.collab import connections, socket, store
    from prdtool.collab.protocol import SyncStep1, SyncUpdate, encode_frames, encode_message
    from tests.e2e.yclient import YClient

    api = Api(stack.base_url)
    prd_id, tokens = api.shared_prd(f"Calls with {peers} peers", SAMPLE_MARKDOWN.read_text())
    clients = [YClient(stack.ws_url, prd_id, tokens[("alice", "bob")[i % 2]], name=f"peer{i}")
               for i in range(peers)]
    try:
        for client in clients:
            client.connect(timeout=30)
        with bind_to(stack):
            ids = [c.connection_id for c in connections.of_prd(prd_id)]
            if len(ids) != peers:
                raise RuntimeError(f"expected {peers} registered connections, found {len(ids)}")
            sender = ids[0]
            doc: Doc[Any] = store.read(prd_id).doc
            text = doc.get("content", type=Text)

            def keystroke(i: int) -> bytes:
                before = doc.get_state()
                with doc.transaction():
                    text.insert(len(text), "abcdefghij"[i % 10])
                return doc.get_update(before)

            def frame(update: bytes, **extra: Any) -> str:
                (one,) = encode_frames(encode_message(SyncUpdate(update)))
                return json.dumps({**json.loads(one), **extra}, separators=(",", ":"))

            with ApiCounter() as counter, _quietly():
                for i in range(WARMUP_EDITS):  # first use: clients, connection pools, thread pool
                    socket.on_message(message_event(sender, prd_id, "alice", frame(keystroke(i))))
                counter.take()
                edit_ms = []
                with PhaseTimer(_phases()) as phases:
                    for i in range(edits):
                        started = time.perf_counter()
                        socket.on_message(message_event(sender, prd_id, "alice", frame(keystroke(i))))
                        edit_ms.append((time.perf_counter() - started) * 1000)
                edit = counter.take()
                acked_edits = 10
                for i in range(acked_edits):
                    socket.on_message(message_event(sender, prd_id, "alice", frame(keystroke(i), id=i + 1)))
                acked = counter.take()
                delivered = _wait_delivered(clients, str(text), peers - 1)
                pending = store.pending_updates(prd_id)
                counter.take()
                open_ms = []
                step1 = encode_frames(encode_message(SyncStep1(b"\x00")))[0]  # a new client: empty state vector
                for _ in range(opens):
                    started = time.perf_counter()
                    socket.on_message(message_event(sender, prd_id, "alice", step1))
                    open_ms.append((time.perf_counter() - started) * 1000)
                opened = counter.take()
    finally:
        for client in clients:
            client.close()
    return PeerResult(peers, edits, edit, edit_ms, acked, acked_edits, opens, opened, open_ms, pending, delivered,
                      dict(phases.times))


def run(stack: Any | None = None, peer_counts: tuple[int, ...] = PEERS) -> list[PeerResult]:
    if stack is None:
        with bench_stack() as own:
            return run(own, peer_counts)
    return [measure_peers(stack, n) for n in peer_counts]


def _per(n: float, count: int) -> str:
    value = n / count
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


def report(results: list[PeerResult]) -> str:
    lines = [
        f"Per relayed edit (one keystroke update, average over {results[0].edits} edits from one connection; "
        "no `id`, so no ack):\n",
        "| peers N | DynamoDB writes | DynamoDB reads | PostToConnection | SQS sends | other | WRU | RRU "
        "| handler ms (p50, in-process) | delivered to | calls (all edits) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        t, n = r.edit, r.edits
        lines.append(
            f"| {r.peers} | {_per(t.ddb_writes(), n)} | {_per(t.ddb_reads(), n)} | {_per(t.posts(), n)} | "
            f"{_per(t.sqs_sends(), n)} | {_per(t.other(), n)} | {_per(t.wru, n)} | {_per(t.rru, n)} | "
            f"{statistics.median(r.edit_ms):.1f} | {r.delivered_to}/{r.peers - 1} | {t.detail()} |")
    lines += [
        "",
        f"With an ack requested (`\"id\"` in the frame, {results[0].acked_edits} edits): "
        + "; ".join(f"N={r.peers}: {_per(r.acked.posts(), r.acked_edits)} posts, "
                    f"{_per(r.acked.ddb_writes(), r.acked_edits)} writes, "
                    f"{_per(r.acked.ddb_reads(), r.acked_edits)} reads" for r in results) + ".",
        "",
        f"Per document open (sync step 1 with an empty state vector, from a connected client, average of "
        f"{results[0].opens}):\n",
        "| peers N | uncompacted updates | DynamoDB writes | DynamoDB reads | PostToConnection | SQS sends | other "
        "| RRU | handler ms (p50) | calls (all opens) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        t, n = r.open, r.opens
        lines.append(
            f"| {r.peers} | {r.pending_at_open} | {_per(t.ddb_writes(), n)} | {_per(t.ddb_reads(), n)} | "
            f"{_per(t.posts(), n)} | {_per(t.sqs_sends(), n)} | {_per(t.other(), n)} | {_per(t.rru, n)} | "
            f"{statistics.median(r.open_ms):.1f} | {t.detail()} |")
    lines += ["", "Where an edit's handler time goes (in-process, p50 ms per step; the posts run concurrently on the "
              "relay's thread pool against the local gateway's `@connections`, which runs in this same process):\n",
              "| peers N | " + " | ".join(label for _m, _a, label in _phases()) + " | whole handler |",
              "|---:|" + "---:|" * (len(_phases()) + 1)]
    for r in results:
        cells = [f"{statistics.median(r.phases[label]):.1f}" if r.phases.get(label) else "-"
                 for _m, _a, label in _phases()]
        lines.append(f"| {r.peers} | " + " | ".join(cells) + f" | {statistics.median(r.edit_ms):.1f} |")
    where = results[-1].edit
    lines += ["", f"AWS call time (N={results[-1].peers}, per edit, summed over calls): "
              + ", ".join(f"{op} {1000 * s / results[-1].edits:.1f} ms" for (_svc, op), s in
                          sorted(where.seconds.items(), key=lambda kv: -kv[1])) + "."]
    return "\n".join(lines)


def main() -> str:
    return report(run())


if __name__ == "__main__":
    print(main())
