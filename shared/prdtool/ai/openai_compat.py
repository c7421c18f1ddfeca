"""The ``openai-compatible`` provider: chat completions streamed from any OpenAI-compatible server.

Ollama, vLLM, llama.cpp's server, LM Studio and OpenAI itself speak the same
``POST {base_url}/chat/completions`` with ``"stream": true`` (Server-Sent Events of
``chat.completion.chunk``).  :class:`OpenAICompatibleProvider` calls it through the official
``openai`` package, so its request building, error classes and incremental SSE parser are what runs,
in tests too: the tests point ``base_url`` at ``scripts/localstack/openai_server.py``, which speaks
the same wire format.  ``base_url`` includes the API prefix: ``http://127.0.0.1:11434/v1`` (Ollama),
``http://127.0.0.1:8000/v1`` (vLLM), ``http://127.0.0.1:8080/v1`` (llama.cpp),
``https://api.openai.com/v1``.  Local servers need no key: without ``api_key`` a placeholder is sent
(the ``openai`` client insists on one; ``OPENAI_API_KEY`` from the environment is never used, so a real
key cannot leak to a self-hosted server).

The policy is :class:`~prdtool.ai.providers.BedrockProvider`'s (see ``providers.py``):

* Before the first delta, transient failures (429 rate limits, 5xx, timeouts, refused or dropped
  connections, an error event as the stream's first event) are retried here, up to ``max_attempts``
  in all, with exponential backoff and full jitter — at least the server's ``Retry-After`` (capped at
  ``backoff_cap``) when it sent one.  The ``openai`` client's own retries are off (``max_retries=0``).
* After a delta was yielded nothing is retried; the error is raised with ``partial=True``.
* ``finish_reason`` ``content_filter`` raises ``ProviderError("content_filtered")`` after the deltas
  before it; ``stop`` / ``length`` end with :class:`Done` whose ``stop_reason`` uses Bedrock's words
  (``end_turn`` / ``max_tokens``; ``tool_calls`` → ``tool_use``; anything else as sent).  A stream that
  ends without a finish reason raises ``ProviderError("incomplete")``.
* Errors are classified by HTTP status and OpenAI's ``error.code``: 429 ``throttled`` (but
  ``insufficient_quota`` → ``quota_exceeded``), 5xx ``unavailable``, 408 and client timeouts
  ``timeout``, connection failures ``unavailable``, 401/403 ``access_denied``, 404 ``model_not_found``,
  400/413/422 (and ``context_length_exceeded``) ``invalid_request``, anything else ``provider_error``.
  The message is always the safe one of :func:`~prdtool.ai.providers.provider_error`, never the
  server's text; ``provider_code`` is ``"<status>"`` or ``"<status>:<error.code>"`` (e.g.
  ``429:rate_limit_exceeded``), the error's code for an error event mid-stream, or the transport
  exception's class name (``ReadTimeout``, ``RemoteProtocolError``, ``ConnectError``).

Usage comes from the final usage chunk (``stream_options.include_usage``; servers that don't send one
give ``Usage(0, 0)``); ``latency_ms`` is the time from sending the request to the last event.

Cancellation: ``cancel()`` is polled before the request and at every chunk; when it returns true the
HTTP response is closed (the connection is dropped, so the server stops generating) and the iterator
ends without :class:`Done`.  Closing the iterator closes the response too.

``import openai`` takes about a second, so it happens when a provider is built, not on import.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prdtool.ai.providers import (
    Attempt,
    Brief,
    Delta,
    Done,
    ProviderError,
    Usage,
    provider_error,
    with_retries,
)

log = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "not-needed"

# finish_reason → Done.stop_reason (Bedrock's vocabulary); others pass through unchanged.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}

# OpenAI ``error.code`` / ``error.type`` values to our codes (checked before the HTTP status).
_ERROR_CODES = {
    "insufficient_quota": "quota_exceeded",
    "context_length_exceeded": "invalid_request",
    "string_above_max_length": "invalid_request",
    "rate_limit_exceeded": "throttled",
    "model_not_found": "model_not_found",
    "invalid_api_key": "access_denied",
}
# Only for errors without a status (an error event mid-stream): the looser ``error.type`` values too.
_ERROR_TYPES = {
    "requests": "throttled",
    "tokens": "throttled",
    "rate_limit_error": "throttled",
    "server_error": "unavailable",
    "internal_error": "unavailable",
    "internal_server_error": "unavailable",
    "service_unavailable": "unavailable",
    "overloaded_error": "unavailable",
    "timeout": "timeout",
    "invalid_request_error": "invalid_request",
    "authentication_error": "access_denied",
    "permission_error": "access_denied",
    "not_found_error": "model_not_found",
}


def _code_for_status(status: int) -> str:
    if status == 429:
        return "throttled"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "unavailable"
    if status in (401, 403):
        return "access_denied"
    if status == 404:
        return "model_not_found"
    if status in (400, 413, 422):
        return "invalid_request"
    return "provider_error"


def _translate(exc: Exception, *, partial: bool) -> ProviderError:
    """An ``openai`` exception as a :class:`ProviderError` (never with the server's message text)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError, its base class
        cause = exc.__cause__
        return provider_error(
            "timeout", partial=partial, provider_code=type(cause).__name__ if cause else type(exc).__name__
        )
    if isinstance(exc, openai.APIConnectionError):  # refused, reset, or a chunked body cut short
        cause = exc.__cause__
        return provider_error(
            "unavailable", partial=partial, provider_code=type(cause).__name__ if cause else type(exc).__name__
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = exc.code
        ours = _ERROR_CODES.get(code or "") or _code_for_status(status)
        return provider_error(ours, partial=partial, provider_code=f"{status}:{code}" if code else str(status))
    if isinstance(exc, openai.APIError):  # an error event in the stream: no status, the body's code and type
        code, kind = exc.code, exc.type
        if code and code.isdigit():  # vLLM sends the HTTP status as the code
            ours = _code_for_status(int(code))
        else:
            ours = _ERROR_CODES.get(code or "") or _ERROR_TYPES.get(kind or "") or "provider_error"
        return provider_error(ours, partial=partial, provider_code=code or kind or type(exc).__name__)
    if isinstance(exc, openai.OpenAIError | ValueError):  # e.g. a chunk that is not JSON
        return provider_error("provider_error", partial=partial, provider_code=type(exc).__name__)
    raise exc


def _retry_after(exc: Exception) -> float | None:
    """The server's ``Retry-After`` (or ``retry-after-ms``) in seconds, if the error carried one."""
    import openai

    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (ValueError, TypeError, OverflowError):
        return None


class OpenAICompatibleProvider:
    """Chat completions from an OpenAI-compatible server (see the module docstring for the policy).

    ``timeout`` (seconds) bounds connecting (at most 10 s), waiting for the response and every wait
    between two chunks.  ``client`` replaces the ``openai.OpenAI`` client (it must behave like one, with
    its own retries off); ``sleep`` and ``backoff`` (base delay in seconds, doubled per attempt, capped at
    ``backoff_cap``, full jitter) let tests keep retry pauses tiny.
    """

    name = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_attempts: int = 3,
        timeout: float = 60,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        client: Any = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url
        self.model = model
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._client = client if client is not None else _openai_client(base_url, api_key, timeout)

    def stream(
        self,
        *,
        system: str,
        prompt: str,
        max_tokens: int,
        temperature: float = 0.3,
        cancel: Callable[[], bool] | None = None,
        brief: Brief | None = None,
    ) -> Iterator[Delta | Done]:
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        yield from with_retries("openai-compatible", lambda state: self._attempt(request, state, cancel),
                                max_attempts=self.max_attempts, sleep=self._sleep, backoff=self._backoff,
                                backoff_cap=self._backoff_cap)

    def _attempt(
        self, request: dict[str, Any], state: Attempt, cancel: Callable[[], bool] | None
    ) -> Iterator[Delta | Done]:
        """One request: its deltas, then Done; failures as ProviderError."""
        if cancel is not None and cancel():
            return
        started = last_event = time.monotonic()
        try:
            response = self._client.chat.completions.create(**request)
        except Exception as exc:
            state.retry_after = _retry_after(exc)
            raise _translate(exc, partial=False) from None
        finish: str | None = None
        usage = (0, 0)
        try:
            try:
                for chunk in response:
                    last_event = time.monotonic()
                    if cancel is not None and cancel():
                        return
                    tokens = getattr(chunk, "usage", None)
                    if tokens is not None:  # the final usage chunk (some servers: on every chunk)
                        usage = (
                            int(getattr(tokens, "prompt_tokens", 0) or 0),
                            int(getattr(tokens, "completion_tokens", 0) or 0),
                        )
                    for choice in getattr(chunk, "choices", None) or ():
                        if getattr(choice, "index", 0) != 0:
                            continue
                        delta = getattr(choice, "delta", None)
                        text = getattr(delta, "content", None) if delta is not None else None
                        if text:  # role-only chunks, tool calls and reasoning are not part of a draft
                            state.deltas += 1
                            yield Delta(text)
                            if cancel is not None and cancel():
                                return
                        reason = getattr(choice, "finish_reason", None)
                        if reason:
                            finish = str(reason)
            except Exception as exc:
                raise _translate(exc, partial=state.deltas > 0) from None
        finally:
            response.close()
        if finish is None:
            raise provider_error("incomplete", partial=state.deltas > 0)
        if finish == "content_filter":
            raise provider_error("content_filtered", partial=state.deltas > 0, provider_code=finish)
        latency_ms = int((last_event - started) * 1000)
        yield Done(Usage(usage[0], usage[1], latency_ms), _STOP_REASONS.get(finish, finish))


def _openai_client(base_url: str, api_key: str | None, timeout: float) -> Any:
    import openai

    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key or PLACEHOLDER_API_KEY,
        # The openai client retries 408/409/429/5xx and connection errors on its own (twice by default),
        # also after a failed stream start; we retry ourselves (before the first delta only).
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=min(timeout, 10)),
    )
