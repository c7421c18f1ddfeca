"""OpenAICompatibleProvider against the local OpenAI-compatible endpoint (``scripts/localstack/openai_server.py``).

The real ``openai`` package on the client side: it builds the request, raises its own exception
classes and parses the Server-Sent Events incrementally; the fake answers with SSE events written one
by one, with real pauses.  Nothing is patched; only loopback connections are allowed.

Decisions tested here (the same as for Bedrock): an error after deltas were yielded is not retried and
comes out as ``ProviderError(partial=True)``; before the first delta transient errors are retried by
the provider alone (the openai client's own retries are off); the server's error text never reaches
``ProviderError.message``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from prdtool.ai.openai_compat import OpenAICompatibleProvider
from prdtool.ai.providers import Delta, Done, Provider, ProviderError, Usage
from scripts.localstack.openai_server import FakeOpenAI, Script, serve_openai

MODEL = "llama3.1:8b"
_OPENAI_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS")


@pytest.fixture
def clean_env(loopback_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # The openai client reads these; none may change what the tests send.
    for name in _OPENAI_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(clean_env: None) -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(fake: FakeOpenAI, sleeps: list[float]) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(fake.base_url, MODEL, timeout=5, sleep=sleeps.append, backoff=0.01)


def outcomes(fake: FakeOpenAI) -> list[str | None]:
    """What the server made of each request, once it has finished with it (the client may finish
    reading a moment before the server records the outcome)."""
    for received in fake.requests:
        assert received.finished.wait(2), "the fake never finished a request"
    return [received.outcome for received in fake.requests]


def collect(events: Iterator[Delta | Done]) -> tuple[list[str], list[Done]]:
    texts: list[str] = []
    dones: list[Done] = []
    for event in events:
        if isinstance(event, Delta):
            texts.append(event.text)
        else:
            dones.append(event)
    return texts, dones


def deltas_until_error(events: Iterator[Delta | Done]) -> tuple[list[str], ProviderError]:
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        for event in events:
            assert isinstance(event, Delta), "no Done after an error"
            texts.append(event.text)
    return texts, caught.value


# ----------------------------------------------------------------------------- happy path
def test_is_a_provider(provider: OpenAICompatibleProvider) -> None:
    as_provider: Provider = provider
    assert (as_provider.name, as_provider.model) == ("openai-compatible", MODEL)
    with pytest.raises(ValueError):
        OpenAICompatibleProvider("http://127.0.0.1:1/v1", MODEL, max_attempts=0, client=object())


def test_deltas_arrive_in_order_as_they_are_produced(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    collect(provider.stream(system="s", prompt="warm-up", max_tokens=5))  # the openai package's lazy imports
    fake.push(Script(chunks=["# Goals\n", "Faster ", "checkout."], delay=0.15, usage=(120, 7)))
    started = time.monotonic()
    stamps: list[tuple[float, Delta | Done]] = []
    for event in provider.stream(system="You write PRDs.", prompt="Draft the goals.", max_tokens=300):
        stamps.append((time.monotonic() - started, event))

    assert [e for _, e in stamps if isinstance(e, Delta)] == [Delta("# Goals\n"), Delta("Faster "), Delta("checkout.")]
    assert [type(e) for _, e in stamps] == [Delta, Delta, Delta, Done]
    first_delta_at, second_delta_at, end_at = stamps[0][0], stamps[1][0], stamps[-1][0]
    assert end_at >= 0.28  # two pauses of 0.15 s
    assert first_delta_at < end_at - 0.2  # the first delta was not held back until the end
    assert end_at - second_delta_at >= 0.1  # nor the second
    done = stamps[-1][1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (120, 7)
    assert done.usage.latency_ms is not None and 280 <= done.usage.latency_ms <= end_at * 1000 + 5
    assert outcomes(fake) == ["completed", "completed"]


def test_request_carries_model_messages_and_options(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.push(Script(chunks=["ok"]))
    collect(provider.stream(system="You write PRDs.", prompt="Draft the goals.", max_tokens=321, temperature=0.2))

    (received,) = fake.requests
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    body = received.body
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You write PRDs."},
        {"role": "user", "content": "Draft the goals."},
    ]
    assert body["max_tokens"] == 321
    assert body["temperature"] == pytest.approx(0.2)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert received.headers["Authorization"] == "Bearer not-needed"  # no key: a placeholder, not $OPENAI_API_KEY
    assert outcomes(fake) == ["completed"]


def test_an_empty_system_prompt_is_left_out(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    collect(provider.stream(system="", prompt="hello", max_tokens=10))
    assert fake.requests[0].body["messages"] == [{"role": "user", "content": "hello"}]


def test_echo_is_the_default_answer_and_max_tokens_stops_it(provider: OpenAICompatibleProvider) -> None:
    texts, dones = collect(provider.stream(system="Be brief.", prompt="one two three", max_tokens=100))
    assert "".join(texts) == "Echo: one two three"
    assert dones == [Done(Usage(5, 4, dones[0].usage.latency_ms), "end_turn")]

    texts, dones = collect(provider.stream(system="", prompt="one two three", max_tokens=2))
    assert "".join(texts) == "Echo: one "
    assert dones[0].stop_reason == "max_tokens"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("eos", "eos")],
)
def test_finish_reasons_become_bedrock_stop_reasons(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, finish_reason: str, stop_reason: str
) -> None:
    fake.push(Script(chunks=["a ", "b"], finish_reason=finish_reason))
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["a ", "b"]
    assert [d.stop_reason for d in dones] == [stop_reason]


def test_a_server_without_usage_gives_zero_usage(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.push(Script(chunks=["hi"], include_usage=False))
    _, (done,) = collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert (done.usage.input_tokens, done.usage.output_tokens) == (0, 0)
    assert done.usage.latency_ms is not None


def test_api_key_is_sent_as_bearer(clean_env: None, sleeps: list[float]) -> None:
    with serve_openai(api_key="sk-local-123") as fake:
        good = OpenAICompatibleProvider(fake.base_url, MODEL, api_key="sk-local-123", sleep=sleeps.append)
        texts, dones = collect(good.stream(system="s", prompt="hi", max_tokens=10))
        assert "".join(texts) == "Echo: hi" and len(dones) == 1
        assert fake.requests[0].headers["Authorization"] == "Bearer sk-local-123"

        for key in ("sk-wrong", None):  # None: the placeholder
            bad = OpenAICompatibleProvider(fake.base_url, MODEL, api_key=key, sleep=sleeps.append)
            with pytest.raises(ProviderError) as caught:
                collect(bad.stream(system="s", prompt="hi", max_tokens=10))
            assert (caught.value.code, caught.value.retryable) == ("access_denied", False)
        assert caught.value.provider_code == "401:invalid_api_key"
        assert "Incorrect API key" not in caught.value.message
        assert outcomes(fake) == ["completed", "rejected", "rejected"] and sleeps == []


# ----------------------------------------------------------------------------- retries before the first delta
def test_throttling_and_unavailable_before_the_stream_are_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(
        Script(http_error=(429, "rate_limit_exceeded"), retry_after=None),
        Script(http_error=(503, None), retry_after=None),
        Script(chunks=["Hello"]),
    )
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))

    assert texts == ["Hello"] and len(dones) == 1
    assert outcomes(fake) == ["rejected", "rejected", "completed"]
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.01 and 0 <= sleeps[1] <= 0.02  # full jitter, doubling


def test_retry_after_is_honoured_up_to_the_backoff_cap(fake: FakeOpenAI, clean_env: None, sleeps: list[float]) -> None:
    fake.push(Script(http_error=(429, "rate_limit_exceeded"), retry_after=1.5), Script(chunks=["ok"]))
    provider = OpenAICompatibleProvider(fake.base_url, MODEL, sleep=sleeps.append, backoff=0.01)
    collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert sleeps == [1.5]  # the injected sleep: no real wait

    fake.push(Script(http_error=(503, None), retry_after=30), Script(chunks=["ok"]))
    capped = OpenAICompatibleProvider(fake.base_url, MODEL, sleep=sleeps.append, backoff=0.01, backoff_cap=0.05)
    collect(capped.stream(system="s", prompt="p", max_tokens=10))
    assert sleeps[1] == 0.05
    assert fake.requests[0].finished.is_set() and len(fake.requests) == 4


def test_the_openai_client_does_not_retry_on_its_own(fake: FakeOpenAI, clean_env: None, sleeps: list[float]) -> None:
    fake.push(Script(http_error=(429, "rate_limit_exceeded"), retry_after=0))
    provider = OpenAICompatibleProvider(fake.base_url, MODEL, max_attempts=1, sleep=sleeps.append)
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))

    error = caught.value
    assert (error.code, error.retryable, error.partial) == ("throttled", True, False)
    assert error.provider_code == "429:rate_limit_exceeded"
    assert len(fake.requests) == 1 and sleeps == []


def test_retries_stop_after_max_attempts(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(http_error=(500, None), retry_after=None))  # repeats
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert (caught.value.code, caught.value.retryable, caught.value.provider_code) == ("unavailable", True, "500")
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_exhausted_quota_is_not_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(http_error=(429, "insufficient_quota"), error_type="insufficient_quota"))
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert (caught.value.code, caught.value.retryable) == ("quota_exceeded", False)
    assert len(fake.requests) == 1 and sleeps == []


def test_a_dropped_connection_before_the_first_delta_is_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["never"], fail_after=0, failure="drop"), Script(chunks=["ok"]))
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["ok"] and len(dones) == 1 and len(sleeps) == 1
    assert outcomes(fake) == ["dropped", "completed"]


def test_an_unreachable_server_is_unavailable(clean_env: None, sleeps: list[float]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", MODEL, sleep=sleeps.append, backoff=0.01)
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert (caught.value.code, caught.value.retryable, caught.value.provider_code) == (
        "unavailable",
        True,
        "ConnectError",
    )
    assert len(sleeps) == 2


# ----------------------------------------------------------------------------- no retry after a delta
def test_a_dropped_connection_after_a_delta_is_not_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["one ", "two ", "three"], fail_after=2, failure="drop"))
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))

    assert texts == ["one ", "two "]
    assert (error.code, error.retryable, error.partial) == ("unavailable", True, True)
    assert error.provider_code == "RemoteProtocolError"  # httpx: incomplete chunked read
    assert len(fake.requests) == 1 and sleeps == []
    assert outcomes(fake) == ["dropped"]


def test_an_error_event_mid_stream_is_not_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(
        Script(
            chunks=["one ", "two "],
            fail_after=1,
            failure="error",
            error_code="rate_limit_exceeded",
            error_type="tokens",
            error_message="Rate limit reached for my-org on tokens per min",
        )
    )
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["one "]
    assert (error.code, error.retryable, error.partial) == ("throttled", True, True)
    assert error.provider_code == "rate_limit_exceeded"
    assert "my-org" not in error.message and error.message == str(error)
    assert len(fake.requests) == 1 and sleeps == []
    assert outcomes(fake) == ["error"]


def test_an_error_event_before_the_first_delta_is_retried(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["x"], fail_after=0, failure="error"), Script(chunks=["ok"]))
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["ok"] and len(dones) == 1 and len(sleeps) == 1


def test_a_stream_that_ends_without_a_finish_is_incomplete(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["one ", "two "], fail_after=1, failure="eof"))
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["one "]
    assert (error.code, error.retryable, error.partial) == ("incomplete", True, True)
    assert len(fake.requests) == 1 and sleeps == []

    fake.push(Script(chunks=["a"], finish_reason=None))  # [DONE], but no finish reason before it
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["a"] and (error.code, error.partial) == ("incomplete", True)
    assert outcomes(fake) == ["truncated", "completed"]


def test_content_filter_finish_raises_after_the_deltas(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.push(Script(chunks=["Part one. "], finish_reason="content_filter"))
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["Part one. "]
    assert (error.code, error.retryable, error.partial) == ("content_filtered", False, True)
    assert error.provider_code == "content_filter"
    assert len(fake.requests) == 1


# ----------------------------------------------------------------------------- errors that are not retried
@pytest.mark.parametrize(
    ("http_error", "code", "provider_code"),
    [
        ((400, None), "invalid_request", "400"),
        ((400, "context_length_exceeded"), "invalid_request", "400:context_length_exceeded"),
        ((401, "invalid_api_key"), "access_denied", "401:invalid_api_key"),
        ((403, None), "access_denied", "403"),
        ((404, "model_not_found"), "model_not_found", "404:model_not_found"),
        ((422, None), "invalid_request", "422"),
        ((418, None), "provider_error", "418"),
    ],
)
def test_client_errors_are_not_retried(
    fake: FakeOpenAI,
    provider: OpenAICompatibleProvider,
    sleeps: list[float],
    http_error: tuple[int, str | None],
    code: str,
    provider_code: str,
) -> None:
    fake.push(Script(http_error=http_error, error_message="secret detail"))
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="my private prompt", max_tokens=10))
    error = caught.value
    assert (error.code, error.retryable, error.partial, error.provider_code) == (code, False, False, provider_code)
    assert "secret detail" not in str(error) and "private" not in str(error)
    assert len(fake.requests) == 1 and sleeps == []


def test_an_unknown_model_is_model_not_found(clean_env: None, sleeps: list[float]) -> None:
    with serve_openai(models=["llama3.1:8b"]) as fake:
        provider = OpenAICompatibleProvider(fake.base_url, "gpt-nope", sleep=sleeps.append)
        with pytest.raises(ProviderError) as caught:
            collect(provider.stream(system="s", prompt="p", max_tokens=10))
        assert (caught.value.code, caught.value.provider_code) == ("model_not_found", "404:model_not_found")
        assert len(fake.requests) == 1 and sleeps == []


# ----------------------------------------------------------------------------- timeouts
def test_a_server_silent_before_the_first_delta_times_out_and_is_retried(
    fake: FakeOpenAI, clean_env: None, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["late"], first_delay=0.6), Script(chunks=["late"], response_delay=0.6))
    provider = OpenAICompatibleProvider(fake.base_url, MODEL, timeout=0.15, max_attempts=2, sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert time.monotonic() - started < 0.9  # two attempts of 0.15 s, not the server's 0.6 s pauses
    assert (caught.value.code, caught.value.retryable, caught.value.partial) == ("timeout", True, False)
    assert caught.value.provider_code == "ReadTimeout"
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_a_server_silent_after_a_delta_times_out_without_retry(
    fake: FakeOpenAI, clean_env: None, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["one ", "two"], delay=0.6))
    provider = OpenAICompatibleProvider(fake.base_url, MODEL, timeout=0.15, sleep=sleeps.append)
    texts, error = deltas_until_error(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["one "]
    assert (error.code, error.retryable, error.partial) == ("timeout", True, True)
    assert len(fake.requests) == 1 and sleeps == []


# ----------------------------------------------------------------------------- cancel
def test_cancel_after_the_first_delta_closes_the_stream(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.push(Script(chunks=[f"chunk {i} " for i in range(20)], delay=0.05))
    stop = threading.Event()
    started = time.monotonic()
    events = []
    for event in provider.stream(system="s", prompt="p", max_tokens=10, cancel=stop.is_set):
        events.append(event)
        stop.set()
    ended = time.monotonic() - started

    assert events == [Delta("chunk 0 ")]  # no Done after a cancel
    assert ended < 0.6  # not the 1 s the whole answer takes
    received = fake.requests[0]
    assert received.finished.wait(2), "the server never noticed the client went away"
    assert received.outcome == "client_gone"
    assert received.chunks_sent < 5


def test_cancel_before_the_request_sends_nothing(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    assert list(provider.stream(system="s", prompt="p", max_tokens=10, cancel=lambda: True)) == []
    assert fake.requests == []


def test_abandoning_the_iterator_closes_the_stream(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.push(Script(chunks=[f"c{i}" for i in range(20)], delay=0.05))
    events = provider.stream(system="s", prompt="p", max_tokens=10)
    assert next(events) == Delta("c0")
    events.close()  # type: ignore[attr-defined]
    received = fake.requests[0]
    assert received.finished.wait(2) and received.outcome == "client_gone"


# ----------------------------------------------------------------------------- the fake itself
def test_fake_errors_are_openai_shaped(clean_env: None) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    with serve_openai(api_key="sk-x") as fake:
        missing = requests.post(f"{fake.base_url}/chat/completions", json=body, timeout=5)
        assert missing.status_code == 401
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}

        fake.push(Script(http_error=(429, "rate_limit_exceeded"), retry_after=2))
        headers = {"Authorization": "Bearer sk-x"}
        limited = requests.post(f"{fake.base_url}/chat/completions", json=body, headers=headers, timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"

        fake.push(Script(echo=True))
        empty = requests.post(f"{fake.base_url}/chat/completions", json={"model": MODEL}, headers=headers, timeout=5)
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
        assert outcomes(fake) == ["rejected"] * 3


def test_fake_streams_sse_and_answers_without_stream(fake: FakeOpenAI) -> None:
    import openai

    client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=5)
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi there"}])
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3

    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    raw = requests.post(f"{fake.base_url}/chat/completions", json=body, timeout=5)
    assert raw.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert '"usage"' not in raw.text  # not asked for: no usage chunk, no usage fields
    assert [m.id for m in client.models.list().data] == ["echo"]
