"""Model providers: one streaming interface, implemented for Amazon Bedrock's Converse API.

A provider turns (system prompt, user prompt) into a stream of :class:`Delta` (text, in order) that
ends with exactly one :class:`Done` (usage and stop reason) — or raises :class:`ProviderError`, whose
``message`` is safe to show a product manager (no prompt text, no credentials, no AWS request ids).

:class:`BedrockProvider` calls ``bedrock-runtime`` ``ConverseStream`` through boto3, so botocore's
SigV4 signing and its incremental event-stream parser are what runs, in tests too: the tests point
``endpoint_url`` at ``scripts/localstack/bedrock.py``, which speaks the same wire format; in AWS
``endpoint_url`` is ``None``.

Failure policy:

* Before the first delta, transient failures (throttling, service unavailable, internal errors,
  model timeouts, dropped connections — as an HTTP error or as the stream's first event) are retried
  here, up to ``max_attempts`` in all, with exponential backoff and full jitter.  botocore's own
  retries are off (``total_max_attempts=1``): two retry layers would multiply.
* After a delta was yielded nothing is retried: the caller has already shown partial output, and a
  silent second answer would not continue the first.  The error is raised with ``partial=True`` and
  ``retryable`` telling whether *a new request* may succeed (throttling: yes) — the caller decides
  whether to discard the partial text and offer "try again".
* Stop reasons ``content_filtered`` / ``guardrail_intervened`` raise
  ``ProviderError(code="content_filtered", retryable=False)`` after the deltas that came before.
* Validation, access and unknown-model errors are not retryable.

Cancellation: ``cancel()`` is polled before the request and at every event; when it returns true the
stream is closed (the HTTP connection is dropped, so the model stops generating and billing) and the
iterator ends without :class:`Done`.  Closing the iterator (``close()``, or abandoning a ``for``
loop) closes the stream too.  A cancel while the model is silent takes effect at its next event.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore import exceptions as bx
from botocore.config import Config
from urllib3 import exceptions as ux

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the interface
@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    latency_ms: int | None = None


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    usage: Usage
    stop_reason: str


class ProviderError(Exception):
    """A provider failure, normalised.

    ``code``: ``throttled``, ``unavailable``, ``timeout``, ``invalid_request``, ``access_denied``,
    ``model_not_found``, ``quota_exceeded``, ``content_filtered``, ``incomplete`` or ``provider_error``.
    ``retryable``: a new request may succeed.  ``partial``: deltas were already yielded before it.
    ``provider_code``: the provider's own error code (e.g. ``ThrottlingException``), for logs.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        partial: bool = False,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.partial = partial
        self.provider_code = provider_code

    def __repr__(self) -> str:
        return f"ProviderError(code={self.code!r}, retryable={self.retryable}, partial={self.partial})"


@dataclass(frozen=True)
class Brief:
    """What the job asks for, in structured form (the prompt is this, rendered for a model).

    Model providers ignore it: they read ``system`` and ``prompt``.  The offline provider, which is
    not a model, drafts from it (``prdtool.ai.offline``).
    """

    mode: str  # draft | rewrite | expand | summarize | fill-gaps
    section: str | None  # the target section's title (None for fill-gaps)
    instruction: str  # the person's prompt
    document: str  # the PRD's whole Markdown
    current: str = ""  # the target section's current body ("" when the section is missing)
    guidance: str = ""  # the template's guidance for the target section
    gaps: tuple[str, ...] = ()  # fill-gaps: the titles of the sections to draft, in order


class Provider(Protocol):
    name: str  # "bedrock", "openai-compatible", "offline-template"
    model: str  # the model id (or, offline, what drafts instead of one)

    def stream(
        self,
        *,
        system: str,
        prompt: str,
        max_tokens: int,
        temperature: float = 0.3,
        cancel: Callable[[], bool] | None = None,
        brief: Brief | None = None,
    ) -> Iterator[Delta | Done]: ...


# ----------------------------------------------------------------------------- error mapping
_MESSAGES = {
    "throttled": "The AI service is busy right now. Please try again in a moment.",
    "unavailable": "The AI service is temporarily unavailable. Please try again in a moment.",
    "timeout": "The AI service took too long to answer. Please try again.",
    "invalid_request": "The AI service rejected the request; the document may be too long for the model.",
    "access_denied": "This deployment is not allowed to use the AI model; an administrator must enable access.",
    "model_not_found": "The configured AI model does not exist in this region; an administrator must fix it.",
    "quota_exceeded": "The AI usage quota of this deployment is exhausted; an administrator must raise it.",
    "content_filtered": "The AI service stopped because its content filter blocked the answer.",
    "incomplete": "The AI answer was cut off before the end. Please try again.",
    "provider_error": "The AI service failed unexpectedly. Please try again later.",
}
_RETRYABLE = {"throttled", "unavailable", "timeout", "incomplete"}

# Provider error codes, normalised (lower case, no "exception" suffix), to our codes.
_CODES = {
    "throttling": "throttled",
    "toomanyrequests": "throttled",
    "serviceunavailable": "unavailable",
    "internalserver": "unavailable",
    "internalfailure": "unavailable",
    "modelstreamerror": "unavailable",
    "modelnotready": "unavailable",
    "modeltimeout": "timeout",
    "validation": "invalid_request",
    "accessdenied": "access_denied",
    "unrecognizedclient": "access_denied",
    "invalidsignature": "access_denied",
    "expiredtoken": "access_denied",
    "missingauthenticationtoken": "access_denied",
    "resourcenotfound": "model_not_found",
    "servicequotaexceeded": "quota_exceeded",
}


def provider_error(code: str, *, partial: bool = False, provider_code: str | None = None) -> ProviderError:
    return ProviderError(
        code, _MESSAGES[code], retryable=code in _RETRYABLE, partial=partial, provider_code=provider_code
    )


def _translate(exc: Exception, *, partial: bool) -> ProviderError:
    """A boto3/botocore/urllib3 exception as a :class:`ProviderError` (never with AWS's message text)."""
    if isinstance(exc, bx.ClientError):  # includes EventStreamError (an exception frame mid-stream)
        raw = str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"
        key = raw.split(":", 1)[0].rsplit("#", 1)[-1].lower().removesuffix("exception")
        code = _CODES.get(key, "provider_error")
        # Bedrock names an unknown (or not on-demand) model id with a ValidationException: "The provided
        # model identifier is invalid." — a configuration problem, not the request's (only classified).
        if code == "invalid_request" and "model identifier" in str(exc.response.get("Error", {}).get("Message", "")):
            code = "model_not_found"
        return provider_error(code, partial=partial, provider_code=raw)
    # Mid-stream, botocore's EventStream reads the raw urllib3 response: its errors arrive unwrapped.
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError | ux.ReadTimeoutError):
        return provider_error("timeout", partial=partial, provider_code=type(exc).__name__)
    if isinstance(
        exc,
        bx.EndpointConnectionError
        | bx.ConnectionClosedError
        | bx.ResponseStreamingError
        | ux.HTTPError
        | ConnectionError,
    ):
        return provider_error("unavailable", partial=partial, provider_code=type(exc).__name__)
    if isinstance(exc, bx.BotoCoreError):
        return provider_error("provider_error", partial=partial, provider_code=type(exc).__name__)
    raise exc


# ----------------------------------------------------------------------------- retries
class Attempt:
    """What one request got to: deltas yielded, and the wait the server asked for (Retry-After)."""

    __slots__ = ("deltas", "retry_after")

    def __init__(self) -> None:
        self.deltas = 0
        self.retry_after: float | None = None


def with_retries(
    name: str,
    attempt: Callable[[Attempt], Iterator[Delta | Done]],
    *,
    max_attempts: int,
    sleep: Callable[[float], None],
    backoff: float,
    backoff_cap: float,
) -> Iterator[Delta | Done]:
    """Run ``attempt`` until it completes; retry a retryable :class:`ProviderError` raised before its
    first delta, up to ``max_attempts`` in all, after exponential backoff with full jitter (at least
    the server's Retry-After, capped at ``backoff_cap``)."""
    number = 0
    while True:
        number += 1
        state = Attempt()
        try:
            yield from attempt(state)
            return
        except ProviderError as err:
            extra = {"code": err.code, "provider_code": err.provider_code, "attempt": number}
            if state.deltas or not err.retryable or number >= max_attempts:
                log.warning("%s stream failed", name, extra=extra)
                raise
            pause = random.uniform(0, min(backoff_cap, backoff * 2 ** (number - 1)))
            if state.retry_after is not None:
                pause = max(pause, min(state.retry_after, backoff_cap))
            log.info("%s stream retry", name, extra={**extra, "pause": pause})
            sleep(pause)


# ----------------------------------------------------------------------------- Bedrock


class BedrockProvider:
    """``bedrock-runtime`` ``ConverseStream`` through boto3 (see the module docstring for the policy).

    ``client`` replaces the boto3 client (it must behave like one); ``sleep`` and ``backoff`` (base
    delay in seconds, doubled per attempt, capped at ``backoff_cap``, full jitter) let tests keep
    retry pauses tiny.
    """

    name = "bedrock"

    def __init__(
        self,
        model_id: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        client: Any = None,
        max_attempts: int = 3,
        timeout: float = 60,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model_id = self.model = model_id
        self.region = region
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._client = client if client is not None else _bedrock_client(region, endpoint_url, timeout)

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
        request: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system:  # SystemContentBlock.text must not be empty
            request["system"] = [{"text": system}]
        yield from with_retries("bedrock", lambda state: self._attempt(request, state, cancel),
                                max_attempts=self.max_attempts, sleep=self._sleep, backoff=self._backoff,
                                backoff_cap=self._backoff_cap)

    def _attempt(
        self, request: dict[str, Any], progress: Attempt, cancel: Callable[[], bool] | None
    ) -> Iterator[Delta | Done]:
        """One request: its deltas, then Done; failures as ProviderError."""
        if cancel is not None and cancel():
            return
        try:
            response = self._client.converse_stream(**request)
        except Exception as exc:
            raise _translate(exc, partial=False) from None
        events = response["stream"]
        stop_reason: str | None = None
        usage = Usage(0, 0)
        try:
            try:
                for event in events:
                    if cancel is not None and cancel():
                        return
                    if "contentBlockDelta" in event:
                        text = event["contentBlockDelta"].get("delta", {}).get("text")
                        if text:  # other deltas (tool use, reasoning) are not part of a draft
                            progress.deltas += 1
                            yield Delta(text)
                            if cancel is not None and cancel():
                                return
                    elif "messageStop" in event:
                        stop_reason = event["messageStop"].get("stopReason", "")
                    elif "metadata" in event:
                        tokens = event["metadata"].get("usage", {})
                        latency = event["metadata"].get("metrics", {}).get("latencyMs")
                        usage = Usage(
                            int(tokens.get("inputTokens", 0)),
                            int(tokens.get("outputTokens", 0)),
                            int(latency) if latency is not None else None,
                        )
            except Exception as exc:
                raise _translate(exc, partial=progress.deltas > 0) from None
        finally:
            events.close()
        if stop_reason is None:
            raise provider_error("incomplete", partial=progress.deltas > 0)
        if stop_reason in ("content_filtered", "guardrail_intervened"):
            raise provider_error("content_filtered", partial=progress.deltas > 0, provider_code=stop_reason)
        yield Done(usage, stop_reason)


def _bedrock_client(region: str, endpoint_url: str | None, timeout: float) -> Any:
    config = Config(
        read_timeout=timeout,
        connect_timeout=min(timeout, 10),
        # total_max_attempts counts the first attempt; botocore's "max_attempts" counts *retries*, so
        # {"max_attempts": 1} would still retry once.  We retry ourselves (before the first delta only).
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    session = boto3.session.Session()
    return session.client("bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config)
