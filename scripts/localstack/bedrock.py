"""A local Amazon Bedrock Runtime endpoint that speaks Bedrock's real wire format.

Why: Bedrock cannot be reached from tests or from the local stack, and a mock of boto3 would leave
the part most likely to break untested — botocore's request serialisation, SigV4 signing and, above
all, its incremental ``application/vnd.amazon.eventstream`` parser.  This server lets the production
code run unchanged (``boto3.client("bedrock-runtime", endpoint_url=fake.url)``); against real
Bedrock only ``endpoint_url`` differs (``None``).

What it serves (shapes from botocore's ``bedrock-runtime`` service model, protocol ``rest-json``):

* ``POST /model/{modelId}/converse-stream`` — a chunked event-stream response, written frame by
  frame as the script says, with real pauses between deltas: ``messageStart``, one
  ``contentBlockDelta`` per chunk, ``contentBlockStop``, ``messageStop``, ``metadata``; or, mid-stream,
  an exception frame (``:message-type`` ``exception``), which botocore raises as ``EventStreamError``
  after the events before it.
* ``POST /model/{modelId}/converse`` — the same answer as one JSON document.

Errors before the stream are ordinary rest-json errors: the status of the error shape, header
``x-amzn-ErrorType`` and ``{"message": ...}``, raised by botocore as ``ClientError``.  Every request
must carry a SigV4 ``Authorization`` header whose credential scope names service ``bedrock`` and the
server's region (the signature itself is not verified: the point is that the client signs like it
would for AWS), else 403 ``UnrecognizedClientException``; a body without a non-empty ``messages``
list (or with a blank text block) is a 400 ``ValidationException``.

Behaviour is scripted per request by :class:`Script` (a queue: each request takes the next script,
the last one repeats); with no script the server *echoes* deterministically from the request (useful
for the local stack).  Every request is recorded (:class:`ReceivedRequest`), including how its
response ended — ``client_gone`` when the client closed the connection mid-stream.

The server runs on its own event loop in a daemon thread (:class:`FakeBedrock`, or
:func:`serve_bedrock` as a context manager), on 127.0.0.1 and a free port by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from scripts.localstack.aioserver import LoopServer

log = logging.getLogger("localstack.bedrock")

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# Error shapes of the service model and their HTTP status (``error.httpStatusCode``).
ERROR_STATUS: dict[str, int] = {
    "ThrottlingException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ServiceQuotaExceededException": 400,
    "UnrecognizedClientException": 403,
}

_CREDENTIAL = re.compile(r"^AWS4-HMAC-SHA256 .*Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


# ----------------------------------------------------------------------------- frames
def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message, as botocore's ``EventStreamBuffer`` parses it.

    Layout (all integers big-endian)::

        u32 total length | u32 headers length | u32 CRC32 of the previous 8 bytes
        headers: for each, u8 name length, name, u8 type (7 = string), u16 value length, value
        payload bytes
        u32 CRC32 of everything before it (prelude, prelude CRC, headers, payload)

    Only string headers are written: that is all Bedrock's events use.
    """
    encoded = bytearray()
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += struct.pack(">B", len(name_bytes)) + name_bytes
        encoded += struct.pack(">BH", 7, len(value_bytes)) + value_bytes
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def encode_event(event_type: str, payload: Mapping[str, Any], *, message_type: str = "event") -> bytes:
    """An event frame: headers ``:event-type``, ``:content-type`` (JSON), ``:message-type``; JSON payload.

    ``event_type`` is a member of ``ConverseStreamOutput`` (``messageStart``, ``contentBlockDelta``,
    ``contentBlockStop``, ``messageStop``, ``metadata``); see :func:`encode_frame` for the layout.
    """
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": message_type}
    return encode_frame(headers, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def encode_exception(exception_type: str, message: str) -> bytes:
    """A modelled exception frame: ``:message-type`` ``exception``, ``:exception-type`` (the member name
    in ``ConverseStreamOutput``, e.g. ``throttlingException``), payload ``{"message": ...}``.

    botocore raises it as ``EventStreamError`` whose ``response["Error"]["Code"]`` is ``exception_type``.
    """
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, json.dumps({"message": message}).encode())


# ----------------------------------------------------------------------------- scripts and records
@dataclass(frozen=True)
class Script:
    """How the server answers one request.

    ``chunks`` are the text deltas, ``delay`` seconds apart (``first_delay`` before the first);
    ``usage`` is (input, output) tokens; ``fail_after`` sends the exception frame ``exception`` after
    that many deltas instead of the rest; ``http_error`` = (status, error type) refuses the request
    before any stream, e.g. ``(429, "ThrottlingException")``.  ``echo=True`` ignores ``chunks`` and
    answers from the request (see :func:`echo_answer`).
    """

    chunks: Sequence[str] = ()
    delay: float = 0.0
    first_delay: float = 0.0
    usage: tuple[int, int] | None = None
    stop_reason: str = "end_turn"
    fail_after: int | None = None
    exception: str = "throttlingException"
    exception_message: str = "Too many requests, please wait before trying again."
    http_error: tuple[int, str] | None = None
    http_error_message: str = "Too many requests, please wait before trying again."
    echo: bool = False


ECHO = Script(echo=True)


@dataclass
class ReceivedRequest:
    """A request as the server saw it; ``outcome`` is set when the answer is over:
    ``completed``, ``rejected`` (an HTTP error), ``exception`` (an exception frame ended the stream),
    ``client_gone`` (the client closed the connection before the end)."""

    operation: str  # "ConverseStream" or "Converse"
    model_id: str
    body: Any
    headers: dict[str, str]
    outcome: str | None = None
    frames_sent: int = 0
    received_at: float = field(default_factory=time.time)  # epoch seconds the request arrived
    delta_sent_at: list[float] = field(default_factory=list)  # epoch seconds each text delta was written
    finished: threading.Event = field(default_factory=threading.Event, repr=False)


def _words(text: str) -> int:
    return len(text.split())


def _texts(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return []
    return [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)]


def echo_answer(body: Mapping[str, Any]) -> Script:
    """The deterministic answer to a request: ``Echo: <last user text>``, one delta per word.

    Tokens are counted as words: input = words of the system prompt and all messages, output = words
    answered; ``inferenceConfig.maxTokens`` truncates the answer (stop reason ``max_tokens``).
    """
    messages = body.get("messages") or []
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = " ".join(_texts(user[-1].get("content"))) if user else ""
    words = re.findall(r"\S+\s*", f"Echo: {last}".strip())
    input_tokens = sum(_words(t) for t in _texts(body.get("system")))
    input_tokens += sum(_words(t) for m in messages if isinstance(m, dict) for t in _texts(m.get("content")))
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = "end_turn"
    if isinstance(limit, int) and 0 < limit < len(words):
        words, stop = words[:limit], "max_tokens"
    return Script(chunks=words, usage=(input_tokens, len(words)), stop_reason=stop)


# ----------------------------------------------------------------------------- the server
class FakeBedrock(LoopServer):
    """The endpoint on its own loop thread; :meth:`start` returns the base URL (also :attr:`url`)."""

    thread_name = "fake-bedrock"

    def __init__(
        self,
        script: Script | Sequence[Script] | None = None,
        *,
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] | None = None,
        echo_delay: float = 0.0,
    ) -> None:
        """``echo_delay``: seconds between the echoed deltas (a person can watch an echo stream in)."""
        super().__init__(host=host, port=port)
        self._echo = dataclasses.replace(ECHO, delay=echo_delay)
        self.region = region
        # When set, other model ids are refused as Bedrock does: 400 ValidationException "The provided
        # model identifier is invalid."
        self.models = tuple(models) if models is not None else None
        self._lock = threading.Lock()
        self._scripts: list[Script] = []
        self._last = self._echo  # repeated once the queue is empty
        self._requests: list[ReceivedRequest] = []
        if script is not None:
            self.push(*([script] if isinstance(script, Script) else script))

    # ------------------------------------------------------------------ control (any thread)
    def push(self, *scripts: Script) -> None:
        """Queue scripts for the next requests, one each; once the queue is empty the last one taken repeats."""
        with self._lock:
            self._scripts.extend(scripts)

    def reset(self) -> None:
        """Forget the queued scripts: the next requests are echoed (a test's scripts end with it)."""
        with self._lock:
            self._scripts.clear()
            self._last = self._echo

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    # ------------------------------------------------------------------ on the loop
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(r"/model/{model_id:.+}/converse-stream", self._converse_stream)
        app.router.add_post(r"/model/{model_id:.+}/converse", self._converse)
        return app

    def _next_script(self, body: Mapping[str, Any]) -> Script:
        with self._lock:
            if self._scripts:
                self._last = self._scripts.pop(0)
            script = self._last
        return dataclasses.replace(echo_answer(body), delay=script.delay) if script.echo else script

    @staticmethod
    def _error(status: int, error_type: str, message: str) -> web.Response:
        return web.json_response(
            {"message": message},
            status=status,
            headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())},
        )

    async def _admit(self, request: web.Request, operation: str) -> tuple[ReceivedRequest, web.Response | None]:
        """Record the request; a refusal (auth, validation) comes back as the response to send."""
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = ReceivedRequest(
            operation=operation,
            model_id=request.match_info["model_id"],
            body=body,
            headers=dict(request.headers),
        )
        with self._lock:
            self._requests.append(received)
        refusal = self._check(request.headers.get("Authorization", ""), body)
        if refusal is not None:
            received.outcome = "rejected"
            received.finished.set()
        return received, refusal

    def _check(self, authorization: str, body: Any) -> web.Response | None:
        match = _CREDENTIAL.match(authorization)
        if match is None:
            return self._error(403, "UnrecognizedClientException", "The request is not signed with AWS SigV4.")
        region, service = match.group(3), match.group(4)
        if service != "bedrock" or region != self.region:
            message = f"Credential should be scoped to service 'bedrock' in region '{self.region}'."
            return self._error(403, "UnrecognizedClientException", message)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return self._error(400, "ValidationException", "A conversation must have at least one message.")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                return self._error(400, "ValidationException", "Each message needs a role: user or assistant.")
            if not isinstance(message.get("content"), list) or not message["content"]:
                return self._error(400, "ValidationException", "Each message needs a non-empty content list.")
            if any(isinstance(b, dict) and "text" in b and not str(b["text"]).strip() for b in message["content"]):
                return self._error(400, "ValidationException", "The text field in a ContentBlock is blank.")
        return None

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        received, refusal = await self._admit(request, "ConverseStream")
        if refusal is None and self.models is not None and received.model_id not in self.models:
            received.outcome = "rejected"
            received.finished.set()
            refusal = self._error(400, "ValidationException", "The provided model identifier is invalid.")
        if refusal is not None:
            return refusal
        script = self._next_script(received.body)
        if script.http_error is not None:
            received.outcome = "rejected"
            received.finished.set()
            return self._error(*script.http_error, script.http_error_message)
        started = time.monotonic()
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": EVENTSTREAM_CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        outcome = "completed"
        try:
            for step in self._frames(script, started):
                if isinstance(step, float):
                    await asyncio.sleep(step)
                    continue
                kind, frame = step
                await response.write(frame)
                received.frames_sent += 1
                if kind == "delta":
                    received.delta_sent_at.append(time.time())
                if kind == "exception":
                    outcome = "exception"
            await response.write_eof()
        except ConnectionError:  # aiohttp: "Cannot write to closing transport"
            outcome = "client_gone"
        except asyncio.CancelledError:
            outcome = "client_gone"
            raise
        finally:
            received.outcome = outcome
            received.finished.set()
        return response

    def _frames(self, script: Script, started: float) -> Iterator[tuple[str, bytes] | float]:
        """The frames of a streamed answer as (kind, bytes) — kind ``event``, ``delta`` (a text delta
        event) or ``exception`` — with the pauses (floats, seconds) between."""
        yield "event", encode_event("messageStart", {"role": "assistant"})
        for index, chunk in enumerate(script.chunks):
            pause = script.first_delay if index == 0 else script.delay
            if pause > 0:
                yield pause
            if script.fail_after is not None and index == script.fail_after:
                break
            yield "delta", encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": chunk}})
        if script.fail_after is not None:  # after `fail_after` deltas, or after all of them
            yield "exception", encode_exception(script.exception, script.exception_message)
            return
        yield "event", encode_event("contentBlockStop", {"contentBlockIndex": 0})
        yield "event", encode_event("messageStop", {"stopReason": script.stop_reason})
        metadata = {"usage": _usage(script), "metrics": {"latencyMs": _elapsed_ms(started)}}
        yield "event", encode_event("metadata", metadata)

    async def _converse(self, request: web.Request) -> web.Response:
        received, refusal = await self._admit(request, "Converse")
        if refusal is not None:
            return refusal
        script = self._next_script(received.body)
        started = time.monotonic()
        if script.http_error is not None:
            received.outcome = "rejected"
            received.finished.set()
            return self._error(*script.http_error, script.http_error_message)
        if script.fail_after is not None:
            received.outcome = "rejected"
            received.finished.set()
            error_type = script.exception[:1].upper() + script.exception[1:]
            return self._error(ERROR_STATUS.get(error_type, 500), error_type, script.exception_message)
        received.outcome = "completed"
        received.finished.set()
        await asyncio.sleep(script.first_delay + script.delay * max(len(script.chunks) - 1, 0))
        return web.json_response(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "".join(script.chunks)}]}},
                "stopReason": script.stop_reason,
                "usage": _usage(script),
                "metrics": {"latencyMs": _elapsed_ms(started)},
            },
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )


def _usage(script: Script) -> dict[str, int]:
    tokens_in, tokens_out = script.usage or (0, sum(_words(c) for c in script.chunks))
    return {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out}


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


@contextlib.contextmanager
def serve_bedrock(
    script: Script | Sequence[Script] | None = None, *, region: str = "us-east-1", models: Sequence[str] | None = None,
    echo_delay: float = 0.0,
) -> Iterator[FakeBedrock]:
    """Run a :class:`FakeBedrock` for the block; its base URL is ``.url``."""
    with FakeBedrock(script, region=region, models=models, echo_delay=echo_delay) as fake:
        yield fake
