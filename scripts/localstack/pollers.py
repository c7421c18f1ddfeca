"""Lambda's SQS event source mappings and EventBridge rule deliveries, over moto's queues.

Event source mappings (``EventSourceMappingSpec``) behave as Lambda's pollers do: long-poll the
queue, gather a batch until ``batch_size`` or the batching window, invoke synchronously with a real
SQS event, delete what succeeded and leave the rest to the visibility timeout, so moto redelivers
it and, after ``maxReceiveCount``, moves it to the dead-letter queue.  Each mapping runs
``maximum_concurrency`` pollers (default 2), so batches of one queue are processed concurrently.

Rules whose targets are functions cannot be wired in moto (it would try Docker), so the
provisioner points each such rule at a shadow SQS queue; here that queue is drained and each
event is handed to the function as an asynchronous invocation, with Lambda's retries.

Waits are short (1 s) so that stopping takes about a second.  boto3 is blocking, so its calls run
in a dedicated thread pool sized to the pollers, never in the loop's default executor.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from scripts.localstack.door import BotocoreDoorTransport, DoorClient, DoorRoutes
from scripts.localstack.manifest import EventRuleSpec, EventSourceMappingSpec, Manifest, RuleTargetSpec
from scripts.localstack.workers import WorkerPool

log = logging.getLogger("localstack.pollers")

DEFAULT_MAXIMUM_CONCURRENCY = 2
POLL_WAIT_SECONDS = 1
STOP_GRACE_SECONDS = 3.0
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)
_JSON_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records[]`` entry of Lambda's SQS event, from a ``ReceiveMessage`` message."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: attributes[name] for name in _RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {
            name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda spells message attributes in camelCase, with binary values base64-encoded.
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    attribute["stringListValues"] = value.get("StringListValues", [])
    attribute["binaryListValues"] = [
        base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])
    ]
    attribute["dataType"] = value["DataType"]
    return attribute


def failed_item_ids(response: Any, message_ids: Sequence[str]) -> set[str]:
    """The ids a ``ReportBatchItemFailures`` response names; ValueError if Lambda would reject it.

    Lambda treats null, ``{}`` and an empty or null ``batchItemFailures`` as complete success, and
    any malformed response, or an id not in the batch, as failure of the whole batch.
    """
    if response is None:
        return set()
    if not isinstance(response, dict):
        raise ValueError(f"the response is a {type(response).__name__}, not an object")
    failures = response.get("batchItemFailures") or []
    if not isinstance(failures, list):
        raise ValueError("batchItemFailures is not a list")
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            raise ValueError(f"invalid itemIdentifier in {item!r}")
        failed.add(identifier)
    return failed


def compile_input_path(path: str) -> Callable[[Any], Any]:
    """A rule target's ``InputPath`` (``$``, ``$.detail``, ``$.detail.items[0]``) as a function.

    Raises ValueError for JSONPath beyond plain steps; the function raises KeyError when the path
    selects nothing.
    """
    if not path.startswith("$"):
        raise ValueError(f"InputPath {path!r} must start with '$'")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        step = _JSON_PATH_STEP.match(path, position)
        if step is None:
            raise ValueError(f"InputPath {path!r} is not emulated (only .key and [index] steps)")
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        position = step.end()

    def select(event: Any) -> Any:
        value = event
        for key in steps:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"InputPath {path} selects nothing") from None
        return value

    return select


class SqsPollers:
    """Every event source mapping and rule delivery of the manifest, polling until stopped."""

    def __init__(self, manifest: Manifest, pool: WorkerPool) -> None:
        self._manifest = manifest
        self._pool = pool
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mappings = [m for m in manifest["event_source_mappings"] if m["enabled"]]
        self._targets = [
            (rule, target, self._target_input(target))
            for rule in manifest["event_rules"]
            for target in rule["function_targets"]
        ]
        poller_count = sum(m.get("maximum_concurrency") or DEFAULT_MAXIMUM_CONCURRENCY for m in self._mappings)
        poller_count += len(self._targets)
        self._executor = ThreadPoolExecutor(max_workers=max(1, poller_count) + 2, thread_name_prefix="sqs-poller")
        self._sqs = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=manifest["region"],
        ).client(
            "sqs",
            endpoint_url=manifest["endpoint_url"],
            config=Config(max_pool_connections=poller_count + 2, retries={"max_attempts": 2}),
        )

    def use_door(self, path: str) -> None:
        """Poll through moto's door (``door.py``) instead of HTTP.

        The pollers long-poll each queue every second (``POLL_WAIT_SECONDS``), ~17 requests a second
        at rest; moto's werkzeug server closes every HTTP connection, so each was a new TCP connection
        and a new server thread — ~40 % of moto's CPU during a co-editing load.  Through the door each
        poller thread keeps one connection (a ``ReceiveMessage`` waits on its own door thread, never
        holding up the door's other requests).
        """
        transport = BotocoreDoorTransport(DoorRoutes(endpoint_url=self._manifest["endpoint_url"],
                                                     moto=DoorClient(path)))
        transport.attach(self._sqs)

    @staticmethod
    def _target_input(target: RuleTargetSpec) -> Callable[[Any], Any]:
        """How a target transforms the matched event: constant ``Input``, ``InputPath``, or as is."""
        if target["input"] is not None:
            constant = json.loads(target["input"])
            return lambda _event: constant
        if target["input_path"] is not None:
            return compile_input_path(target["input_path"])
        return lambda event: event

    async def start(self) -> None:
        for mapping in self._mappings:
            concurrency = mapping.get("maximum_concurrency") or DEFAULT_MAXIMUM_CONCURRENCY
            for _ in range(concurrency):
                self._spawn(self._poll_mapping(mapping))
            log.info(
                "%s <- SQS %s (batch %d, window %d s, %d pollers%s)",
                mapping["function"],
                mapping["queue_arn"].rsplit(":", 1)[-1],
                mapping["batch_size"],
                mapping["batching_window_seconds"],
                concurrency,
                ", partial batch failures" if mapping["report_batch_item_failures"] else "",
            )
        for rule, target, transform in self._targets:
            self._spawn(self._deliver_rule(rule, target, transform))
            log.info("%s <- rule %s on bus %s", target["function"], rule["name"], rule["bus_name"])

    async def stop(self) -> None:
        """Stop polling; batches being processed get a few seconds to finish, then are abandoned
        (their messages come back after the visibility timeout, as with a disabled mapping)."""
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS + POLL_WAIT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # A receive still waiting in a thread ends within POLL_WAIT_SECONDS; wait without blocking the loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call[T](self, function: Callable[..., T], **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: function(**kwargs))

    async def _receive(self, queue_url: str, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = await self._call(
            self._sqs.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    async def _delete(self, queue_url: str, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):  # DeleteMessageBatch takes at most 10 entries
            entries = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages[start : start + 10])
            ]
            response = await self._call(self._sqs.delete_message_batch, QueueUrl=queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                log.warning("could not delete a message from %s: %s", queue_url, failure.get("Message"))

    async def _keep_polling(self, name: str, step: Callable[[], Any]) -> None:
        """Run one poll step after another until stopped; an error (e.g. moto restarting) is logged
        once and retried each second rather than ending the poller."""
        failing = False
        while not self._stopping.is_set():
            try:
                await step()
                failing = False
            except Exception as exc:  # the poller must outlive any one failed call
                if not failing:
                    log.warning("%s: polling failed, retrying every second: %s", name, exc)
                failing = True
                await asyncio.sleep(1)

    # ------------------------------------------------------------ event source mappings

    async def _poll_mapping(self, mapping: EventSourceMappingSpec) -> None:
        async def step() -> None:
            batch = await self._collect_batch(mapping)
            if batch and not self._stopping.is_set():
                await self._process_batch(mapping, batch)

        await self._keep_polling(f"{mapping['function']} poller", step)

    async def _collect_batch(self, mapping: EventSourceMappingSpec) -> list[dict[str, Any]]:
        """Messages until ``batch_size`` or, once the first arrived, the batching window ends.

        A message whose visibility timeout ends within the window comes back while the batch is
        still gathering; it is held once, under its newest receipt handle (the one a delete
        needs), not handed to the function twice in one event."""
        batch: dict[str, dict[str, Any]] = {}
        window = mapping["batching_window_seconds"]
        deadline: float | None = None
        while len(batch) < mapping["batch_size"] and not self._stopping.is_set():
            remaining = POLL_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(POLL_WAIT_SECONDS, int(remaining))
            messages = await self._receive(mapping["queue_url"], min(10, mapping["batch_size"] - len(batch)), wait)
            held = len(batch)
            for message in messages:
                batch[message["MessageId"]] = message  # one seen again keeps its place, with its new handle
            fresh = len(batch) > held
            if batch and deadline is None:
                if window == 0:
                    break
                deadline = time.monotonic() + window
            if not fresh and wait == 0:  # under a second of window left: short polls, gently
                await asyncio.sleep(min(0.2, remaining))
        return list(batch.values())

    async def _process_batch(self, mapping: EventSourceMappingSpec, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, mapping["queue_arn"], self._manifest["region"]) for m in batch]}
        result = await self._pool.invoke(mapping["function"], event)
        if not result.ok:
            log.warning(
                "%s: batch of %d failed (%s); its messages return after the visibility timeout",
                mapping["function"],
                len(batch),
                (result.error or {}).get("errorType"),
            )
            return
        failed: set[str] = set()
        if mapping["report_batch_item_failures"]:
            try:
                failed = failed_item_ids(result.payload, [m["MessageId"] for m in batch])
            except ValueError as exc:
                log.warning(
                    "%s: invalid partial batch response, the whole batch of %d fails: %s",
                    mapping["function"],
                    len(batch),
                    exc,
                )
                return
            if failed:
                log.info("%s: %d of %d messages reported as failed", mapping["function"], len(failed), len(batch))
        await self._delete(mapping["queue_url"], [m for m in batch if m["MessageId"] not in failed])

    # ------------------------------------------------------------ rule deliveries

    async def _deliver_rule(self, rule: EventRuleSpec, target: RuleTargetSpec, transform: Callable[[Any], Any]) -> None:
        source = f"rule {rule['name']}"
        in_flight = asyncio.Semaphore(DEFAULT_MAXIMUM_CONCURRENCY * 2)  # bounds the invocations waiting

        async def invoke(event: Any) -> None:
            try:
                await self._pool.invoke_async(target["function"], event, source=source)
            finally:
                in_flight.release()

        async def step() -> None:
            messages = await self._receive(target["shadow_queue_url"], 10, POLL_WAIT_SECONDS)
            for message in messages:
                try:
                    event = transform(json.loads(message["Body"]))
                except (ValueError, KeyError) as exc:
                    log.error("%s: event for %s dropped: %s", source, target["function"], exc)
                else:
                    await in_flight.acquire()
                    self._spawn(invoke(event))
            # Once handed to the asynchronous invocation, the event is Lambda's, as in AWS.
            await self._delete(target["shadow_queue_url"], messages)

        await self._keep_polling(f"{target['function']} ({source})", step)
