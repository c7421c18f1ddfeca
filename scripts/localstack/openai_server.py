"""A local OpenAI-compatible chat completions endpoint that speaks OpenAI's real wire format.

Why: the ``openai-compatible`` provider (``prdtool.ai.openai_compat``) is meant for Ollama, vLLM,
llama.cpp's server or OpenAI itself, none of which can be reached from tests.  A mock of the
``openai`` package would leave the part most likely to break untested — its request building,
error mapping and, above all, its incremental Server-Sent Events parser.  This server lets the
production code run unchanged (``OpenAI(base_url=fake.base_url)``).

What it serves (shapes as OpenAI documents them):

* ``POST /v1/chat/completions`` with ``"stream": true`` — ``text/event-stream``, written event by
  event as the script says, with real pauses between them: ``data: {chat.completion.chunk}\\n\\n``
  — first the assistant role with empty content, one chunk per text delta, a chunk with an empty
  delta and ``finish_reason``; when ``stream_options.include_usage`` is true every chunk carries
  ``"usage": null`` and a last chunk with empty ``choices`` carries the usage — then
  ``data: [DONE]\\n\\n``.  Mid-stream the script may instead drop the connection (no end of the
  chunked body), send an error event (``data: {"error": {...}}``, as OpenAI does), or end the body
  cleanly without a finish reason or ``[DONE]``.
* The same with ``"stream": false`` (or absent): one ``chat.completion`` JSON document.
* ``GET /v1/models``: the configured models (or the one model ``echo``).

Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with the status —
401 when an API key is configured and the request's ``Authorization: Bearer`` is missing or wrong,
404 ``model_not_found`` for a model not in ``models`` (when given), 400 for a malformed body, and
whatever the script says (429 and 503 with ``Retry-After``).

Behaviour is scripted per request by :class:`Script` (a queue: each request takes the next script,
the last one repeats); with no script the server *echoes* the last user message (useful for the
local stack: ``python -m scripts.localstack.openai_server --port N``).  Every request is recorded
(:class:`ReceivedRequest`), including how its answer ended — ``client_gone`` when the client closed
the connection before the end.

The server runs on its own event loop in a daemon thread (:class:`FakeOpenAI`, or
:func:`serve_openai` as a context manager), on 127.0.0.1 and a free port by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from scripts.localstack.aioserver import LoopServer, run_standalone

log = logging.getLogger("localstack.openai")

# The ``error.type`` OpenAI sends with each status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    408: "timeout",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}
# The ``error.message`` a script's error carries unless it gives one (OpenAI's wording).
ERROR_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    408: "Request timed out.",
    409: "The request conflicted with another request.",
    422: "Invalid request.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
}
_ROLES = ("system", "developer", "user", "assistant", "tool")

Failure = Literal["drop", "error", "eof"]


# ----------------------------------------------------------------------------- scripts and records
@dataclass(frozen=True)
class Script:
    """How the server answers one request.

    ``chunks`` are the text deltas, ``delay`` seconds apart (``first_delay`` after the headers and
    before the first chunk; ``response_delay`` before the status line and headers, like a slow
    proxy).  ``usage`` is (prompt, completion) tokens — by default words of the request's messages
    and of the chunks.  ``finish_reason`` is sent on the last choice chunk (``None``: no finish reason,
    the stream still ends with ``[DONE]``).  ``include_usage=False`` never sends the usage chunk,
    whatever the client asked (some servers don't).

    ``fail_after`` = N stops after N text chunks (0: right after the role chunk) with ``failure``:
    ``"drop"`` closes the connection without ending the chunked body, ``"error"`` sends an error event
    (``error_code``, ``error_type``, ``error_message``) and ends the body, ``"eof"`` ends the body cleanly without a
    finish reason and without ``[DONE]``.

    ``http_error`` = (status, code) refuses the request before any stream with an OpenAI error
    document, e.g. ``(429, "rate_limit_exceeded")``, ``(400, "context_length_exceeded")``, ``(503, None)``;
    429 and 503 carry ``Retry-After: retry_after`` (seconds; ``None``: no header).  ``error_type`` and
    ``error_message`` default to what OpenAI sends with the status (:data:`ERROR_TYPES`, :data:`ERROR_MESSAGES`).

    ``echo=True`` ignores ``chunks``/``usage``/``finish_reason`` and answers from the request (see
    :func:`echo_answer`), keeping the delays.
    """

    chunks: Sequence[str] = ()
    delay: float = 0.0
    first_delay: float = 0.0
    response_delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str | None = "stop"
    include_usage: bool = True
    fail_after: int | None = None
    failure: Failure = "drop"
    http_error: tuple[int, str | None] | None = None
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_after: float | None = 1.0
    echo: bool = False


ECHO = Script(echo=True)


@dataclass
class ReceivedRequest:
    """A request as the server saw it; ``outcome`` is set when the answer is over:
    ``completed``, ``rejected`` (an HTTP error), ``dropped`` (the script dropped the connection),
    ``error`` (an error event ended the stream), ``truncated`` (the body ended without a finish),
    ``client_gone`` (the client closed the connection before the end; noticed at the next write),
    ``stopped`` (the server was stopped before the end)."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    outcome: str | None = None
    chunks_sent: int = 0  # text chunks (deltas) written
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def _end(self, outcome: str) -> None:
        self.outcome = outcome
        self.finished.set()


def _words(text: str) -> int:
    return len(text.split())


def message_text(content: Any) -> str:
    """A message's text: ``content`` as a string, or the ``text`` parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") or []
    return sum(_words(message_text(m.get("content"))) for m in messages if isinstance(m, dict))


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def echo_answer(body: Mapping[str, Any], script: Script = ECHO) -> Script:
    """The deterministic answer to a request: ``Echo: <last user message>``, one chunk per word.

    Tokens are counted as words: prompt = words of all messages, completion = words answered;
    ``max_tokens`` (or ``max_completion_tokens``) truncates the answer (finish reason ``length``).
    The delays (and failures) of ``script`` are kept.
    """
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    user = [m for m in messages if m.get("role") == "user"]
    last = message_text(user[-1].get("content")) if user else ""
    words = re.findall(r"\S+\s*", f"Echo: {last}".strip())
    limit = _max_tokens(body)
    finish = "stop"
    if limit is not None and 0 < limit < len(words):
        words, finish = words[:limit], "length"
    return dataclasses.replace(
        script, echo=False, chunks=words, usage=(_prompt_tokens(body), len(words)), finish_reason=finish
    )


# ----------------------------------------------------------------------------- the server
class FakeOpenAI(LoopServer):
    """The endpoint on its own loop thread; :meth:`start` returns the API base URL (also
    :attr:`base_url`, ``<url>/v1``, what an OpenAI client takes as ``base_url``).

    ``api_key``: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
    ``models``: when set, other models are 404 ``model_not_found``.
    """

    thread_name = "fake-openai"

    def __init__(
        self,
        script: Script | Sequence[Script] | None = None,
        *,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.models = tuple(models) if models is not None else None
        self._lock = threading.Lock()
        self._scripts: list[Script] = []
        self._last = ECHO  # repeated once the queue is empty
        self._requests: list[ReceivedRequest] = []
        self._handlers: set[asyncio.Task[Any]] = set()  # requests in progress (loop thread only)
        if script is not None:
            self.push(*([script] if isinstance(script, Script) else script))

    # ------------------------------------------------------------------ control (any thread)
    def push(self, *scripts: Script) -> None:
        """Queue scripts for the next requests, one each; once the queue is empty the last one taken repeats."""
        with self._lock:
            self._scripts.extend(scripts)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The chat completion requests so far (``GET /v1/models`` is not recorded)."""
        with self._lock:
            return list(self._requests)

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` once started (empty before): what an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1" if self.url else ""

    def start(self) -> str:
        super().start()
        return self.base_url

    # ------------------------------------------------------------------ on the loop
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        return app

    async def shutdown(self, runner: web.AppRunner) -> None:
        # Answers still in progress (e.g. asleep in a scripted delay) end now, not at their next write:
        # aiohttp would wait for them up to its shutdown timeout, then leave them pending on a closed loop.
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await super().shutdown(runner)

    def _next_script(self) -> Script:
        with self._lock:
            if self._scripts:
                self._last = self._scripts.pop(0)
            return self._last

    @staticmethod
    def _error(
        status: int,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> web.Response:
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        if retry_after is not None and status in (429, 503):
            headers["Retry-After"] = f"{retry_after:g}"
        error = {
            "message": message,
            "type": error_type or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
        return web.json_response({"error": error}, status=status, headers=headers)

    def _check(self, request: web.Request, body: Any) -> web.Response | None:
        """A refusal (auth, malformed body, unknown model) as the response to send, else None."""
        if self.api_key is not None:
            authorization = request.headers.get("Authorization", "")
            if not authorization.startswith("Bearer "):
                return self._error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            if not hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), self.api_key.encode()):
                return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body, dict):
            return self._error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "'messages' must contain at least one message.", param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                return self._error(400, f"Invalid value for 'messages[{index}].role'.", param=f"messages[{index}].role")
            if not isinstance(message.get("content"), str | list):
                return self._error(
                    400, f"Invalid type for 'messages[{index}].content'.", param=f"messages[{index}].content"
                )
        if self.models is not None and model not in self.models:
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return None

    async def _list_models(self, request: web.Request) -> web.Response:
        now = int(time.time())
        models = self.models if self.models is not None else ("echo",)
        data = [{"id": m, "object": "model", "created": now, "owned_by": "localstack"} for m in models]
        return web.json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await self._answer(request)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = ReceivedRequest(method=request.method, path=request.path, body=body, headers=dict(request.headers))
        with self._lock:
            self._requests.append(received)
        script = self._next_script()
        try:
            return await self._respond(request, received, body, script)
        finally:
            if not received.finished.is_set():  # cancelled by stop() before the answer was over
                received._end("stopped")

    async def _respond(
        self, request: web.Request, received: ReceivedRequest, body: Any, script: Script
    ) -> web.StreamResponse:
        if script.response_delay > 0:
            await asyncio.sleep(script.response_delay)
        refusal = self._check(request, body)
        if refusal is not None:
            received._end("rejected")
            return refusal
        if script.http_error is not None:
            received._end("rejected")
            status, code = script.http_error
            return self._error(
                status,
                script.error_message or ERROR_MESSAGES.get(status, "Error."),
                code=code,
                error_type=script.error_type,
                retry_after=script.retry_after,
            )
        if script.echo:
            script = echo_answer(body, script)
        if body.get("stream") is True:
            return await self._stream(request, received, body, script)
        return await self._complete(received, body, script)

    # ------------------------------------------------------------------ answers
    async def _stream(
        self, request: web.Request, received: ReceivedRequest, body: Mapping[str, Any], script: Script
    ) -> web.StreamResponse:
        options = body.get("stream_options")
        with_usage = script.include_usage and isinstance(options, dict) and options.get("include_usage") is True
        chunk_id, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), str(body["model"])

        def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_localstack",
                "choices": choices,
            }
            if with_usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_{uuid.uuid4().hex}",
            },
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        outcome = "completed"
        try:
            await response.write(event(choice({"role": "assistant", "content": "", "refusal": None})))
            for index, text in enumerate(script.chunks):
                pause = script.first_delay if index == 0 else script.delay
                if pause > 0:
                    await asyncio.sleep(pause)
                if script.fail_after is not None and index == script.fail_after:
                    break
                await response.write(event(choice({"content": text})))
                received.chunks_sent += 1
            if script.fail_after is not None:  # after `fail_after` chunks, or after all of them
                outcome = await self._fail(request, response, script)
                return response
            if script.finish_reason is not None:
                await response.write(event(choice({}, script.finish_reason)))
            if with_usage:
                await response.write(event([], _usage(script, body)))
            await response.write_eof(b"data: [DONE]\n\n")
        except ConnectionError:  # aiohttp: "Cannot write to closing transport"
            outcome = "client_gone"
        except asyncio.CancelledError:  # stop() (aiohttp does not cancel handlers when a client leaves)
            outcome = "stopped"
            raise
        finally:
            received._end(outcome)
        return response

    async def _fail(self, request: web.Request, response: web.StreamResponse, script: Script) -> str:
        """End a stream early as ``script.failure`` says; the outcome to record."""
        if script.failure == "drop":
            # Close the socket without the chunked body's last chunk: the client sees an incomplete body.
            transport = request.transport
            if transport is not None:
                transport.close()
            return "dropped"
        if script.failure == "error":
            error = {
                "message": script.error_message or ERROR_MESSAGES[500],
                "type": script.error_type or "server_error",
                "param": None,
                "code": script.error_code,
            }
            await response.write(f"data: {json.dumps({'error': error})}\n\n".encode())
            await response.write_eof()
            return "error"
        await response.write_eof()  # "eof": a clean end, but no finish reason and no [DONE]
        return "truncated"

    async def _complete(self, received: ReceivedRequest, body: Mapping[str, Any], script: Script) -> web.Response:
        await asyncio.sleep(script.first_delay + script.delay * max(len(script.chunks) - 1, 0))
        if script.fail_after is not None:
            received._end("rejected")
            return self._error(
                500, script.error_message or ERROR_MESSAGES[500], code=script.error_code, error_type=script.error_type
            )
        received.chunks_sent = len(script.chunks)
        received._end("completed")
        message = {"role": "assistant", "content": "".join(script.chunks), "refusal": None}
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body["model"]),
                "system_fingerprint": "fp_localstack",
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": script.finish_reason or "stop"}
                ],
                "usage": _usage(script, body),
            },
            headers={"x-request-id": f"req_{uuid.uuid4().hex}"},
        )


def _usage(script: Script, body: Mapping[str, Any]) -> dict[str, int]:
    prompt, completion = script.usage or (_prompt_tokens(body), sum(_words(c) for c in script.chunks))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@contextlib.contextmanager
def serve_openai(
    script: Script | Sequence[Script] | None = None,
    *,
    api_key: str | None = None,
    models: Sequence[str] | None = None,
) -> Iterator[FakeOpenAI]:
    """Run a :class:`FakeOpenAI` for the block; the client's base URL is ``.base_url``."""
    with FakeOpenAI(script, api_key=api_key, models=models) as fake:
        yield fake


# ----------------------------------------------------------------------------- standalone
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scripts.localstack.openai_server [--port N]``: an echoing endpoint until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m scripts.localstack.openai_server", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: none)")
    parser.add_argument("--model", action="append", dest="models", help="known model (repeatable; default: any)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between echoed chunks (default 0.05)")
    args = parser.parse_args(argv)
    script = Script(echo=True, delay=args.delay)
    fake = FakeOpenAI(script, api_key=args.api_key, models=args.models, host=args.host, port=args.port)
    return run_standalone(fake, lambda server: [f"OpenAI-compatible endpoint: {server.base_url}"])


if __name__ == "__main__":
    raise SystemExit(main())
