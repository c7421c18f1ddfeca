"""BedrockProvider against the local Bedrock Runtime endpoint (``scripts/localstack/bedrock.py``).

Real boto3 and botocore on both ends of the wire format: botocore signs and serialises the request,
the fake answers with event-stream frames written one by one, and botocore's own incremental parser
reads them.  Nothing is patched; only loopback connections are allowed.

Decision tested here: an error after deltas were yielded is not retried by the provider and comes
out as ``ProviderError(partial=True)``; ``retryable`` keeps telling whether a new request may succeed
(mid-stream throttling: True), so the caller may discard the partial text and offer "try again".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.eventstream import EventStreamBuffer

from prdtool.ai.providers import BedrockProvider, Delta, Done, ProviderError, Usage
from scripts.localstack.bedrock import FakeBedrock, Script, encode_event, encode_exception, encode_frame

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
REGION = "us-east-1"


@pytest.fixture
def fake(loopback_only: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    # botocore would send these requests elsewhere, or with a bearer token instead of SigV4.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_BEARER_TOKEN_BEDROCK", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with FakeBedrock(region=REGION) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(fake: FakeBedrock, sleeps: list[float]) -> BedrockProvider:
    return BedrockProvider(MODEL, region=REGION, endpoint_url=fake.url, timeout=5, sleep=sleeps.append, backoff=0.01)


def outcomes(fake: FakeBedrock) -> list[str | None]:
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


# ----------------------------------------------------------------------------- happy path
def test_deltas_arrive_in_order_as_they_are_produced(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.push(Script(chunks=["# Goals\n", "Faster ", "checkout."], delay=0.25, usage=(120, 7)))
    started = time.monotonic()
    stamps: list[tuple[float, Delta | Done]] = []
    for event in provider.stream(system="You write PRDs.", prompt="Draft the goals.", max_tokens=300):
        stamps.append((time.monotonic() - started, event))

    texts = [e.text for _, e in stamps if isinstance(e, Delta)]
    assert texts == ["# Goals\n", "Faster ", "checkout."]
    assert [type(e) for _, e in stamps] == [Delta, Delta, Delta, Done]
    first_delta_at, end_at = stamps[0][0], stamps[-1][0]
    assert end_at >= 0.45  # two pauses of 0.25 s
    assert first_delta_at < end_at - 0.3  # the first delta was not held back until the end
    done = stamps[-1][1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn"
    assert done.usage.input_tokens == 120 and done.usage.output_tokens == 7
    assert done.usage.latency_ms is not None and done.usage.latency_ms >= 400


def test_request_carries_model_prompts_and_inference_config(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.push(Script(chunks=["ok"]))
    collect(provider.stream(system="You write PRDs.", prompt="Draft the goals.", max_tokens=321, temperature=0.2))

    (received,) = fake.requests
    assert received.operation == "ConverseStream"
    assert received.model_id == MODEL
    assert received.body["system"] == [{"text": "You write PRDs."}]
    assert received.body["messages"] == [{"role": "user", "content": [{"text": "Draft the goals."}]}]
    assert received.body["inferenceConfig"]["maxTokens"] == 321
    assert received.body["inferenceConfig"]["temperature"] == pytest.approx(0.2)
    assert "/bedrock/aws4_request" in received.headers["Authorization"]
    assert received.finished.wait(2) and received.outcome == "completed"


def test_echo_is_the_default_answer_and_max_tokens_stops_it(provider: BedrockProvider) -> None:
    texts, dones = collect(provider.stream(system="Be brief.", prompt="one two three", max_tokens=100))
    assert "".join(texts) == "Echo: one two three"
    assert dones == [Done(Usage(5, 4, dones[0].usage.latency_ms), "end_turn")]

    texts, dones = collect(provider.stream(system="", prompt="one two three", max_tokens=2))
    assert "".join(texts) == "Echo: one "
    assert dones[0].stop_reason == "max_tokens"


# ----------------------------------------------------------------------------- failures
def test_throttling_before_the_stream_is_retried_then_succeeds(
    fake: FakeBedrock, provider: BedrockProvider, sleeps: list[float]
) -> None:
    fake.push(
        Script(http_error=(429, "ThrottlingException")),
        Script(http_error=(503, "ServiceUnavailableException"), http_error_message="Try later."),
        Script(chunks=["Hello"]),
    )
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))

    assert texts == ["Hello"] and len(dones) == 1
    assert outcomes(fake) == ["rejected", "rejected", "completed"]
    assert len(sleeps) == 2 and all(0 <= s <= 0.02 for s in sleeps)  # backoff 0.01, then up to 0.02


def test_botocore_does_not_retry_on_its_own(fake: FakeBedrock, loopback_only: None, sleeps: list[float]) -> None:
    fake.push(Script(http_error=(429, "ThrottlingException")))
    provider = BedrockProvider(MODEL, region=REGION, endpoint_url=fake.url, max_attempts=1, sleep=sleeps.append)
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))

    assert caught.value.code == "throttled" and caught.value.retryable and not caught.value.partial
    assert caught.value.provider_code == "ThrottlingException"
    assert len(fake.requests) == 1 and sleeps == []


def test_throttling_exception_mid_stream_is_not_retried(
    fake: FakeBedrock, provider: BedrockProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["one ", "two ", "three"], fail_after=2, exception="throttlingException"))
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        for event in provider.stream(system="s", prompt="p", max_tokens=10):
            assert isinstance(event, Delta)
            texts.append(event.text)

    assert texts == ["one ", "two "]
    error = caught.value
    assert (error.code, error.retryable, error.partial) == ("throttled", True, True)
    assert error.provider_code == "throttlingException"  # EventStreamError's code: the member name
    assert error.message == str(error) and "Too many requests" not in error.message
    assert len(fake.requests) == 1 and sleeps == []
    assert outcomes(fake)[0] == "exception"


def test_exception_frame_before_any_delta_is_retried(
    fake: FakeBedrock, provider: BedrockProvider, sleeps: list[float]
) -> None:
    fake.push(Script(chunks=["x"], fail_after=0, exception="internalServerException"), Script(chunks=["ok"]))
    texts, dones = collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert texts == ["ok"] and len(dones) == 1 and len(sleeps) == 1


def test_content_filtered_stop_raises_after_the_deltas(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.push(Script(chunks=["Part one. "], stop_reason="content_filtered"))
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        for event in provider.stream(system="s", prompt="p", max_tokens=10):
            assert isinstance(event, Delta)
            texts.append(event.text)
    assert texts == ["Part one. "]
    assert (caught.value.code, caught.value.retryable, caught.value.partial) == ("content_filtered", False, True)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (400, "ValidationException", "invalid_request"),
        (403, "AccessDeniedException", "access_denied"),
        (404, "ResourceNotFoundException", "model_not_found"),
    ],
)
def test_client_errors_are_not_retried(
    fake: FakeBedrock, provider: BedrockProvider, sleeps: list[float], status: int, error_type: str, code: str
) -> None:
    fake.push(Script(http_error=(status, error_type), http_error_message="secret detail"))
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="my private prompt", max_tokens=10))
    assert (caught.value.code, caught.value.retryable) == (code, False)
    assert "secret detail" not in str(caught.value) and "private" not in str(caught.value)
    assert len(fake.requests) == 1 and sleeps == []


def test_wrong_region_signature_is_refused(fake: FakeBedrock, loopback_only: None) -> None:
    provider = BedrockProvider(MODEL, region="eu-west-1", endpoint_url=fake.url, sleep=lambda _: None)
    with pytest.raises(ProviderError) as caught:
        collect(provider.stream(system="s", prompt="p", max_tokens=10))
    assert caught.value.code == "access_denied"
    assert caught.value.provider_code == "UnrecognizedClientException"


def test_fake_refuses_unsigned_and_invalid_requests(fake: FakeBedrock, provider: BedrockProvider) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    unsigned = requests.post(f"{fake.url}/model/{MODEL}/converse-stream", json=body, timeout=5)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert "message" in unsigned.json()

    forged = requests.post(
        f"{fake.url}/model/{MODEL}/converse",
        json=body,
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, x"},
        timeout=5,
    )
    assert forged.status_code == 403

    with pytest.raises(ProviderError) as caught:  # signed by botocore, but no message: 400
        collect(provider.stream(system="s", prompt="", max_tokens=10))
    assert caught.value.code == "invalid_request"
    assert outcomes(fake) == ["rejected"] * 3


# ----------------------------------------------------------------------------- cancel
def test_cancel_after_the_first_delta_closes_the_stream(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.push(Script(chunks=[f"chunk {i} " for i in range(20)], delay=0.1))
    stop = threading.Event()
    started = time.monotonic()
    events = []
    for event in provider.stream(system="s", prompt="p", max_tokens=10, cancel=stop.is_set):
        events.append(event)
        stop.set()
    ended = time.monotonic() - started

    assert events == [Delta("chunk 0 ")]  # no Done after a cancel
    assert ended < 0.5  # not the 2 s the whole answer takes
    received = fake.requests[0]
    assert received.finished.wait(2), "the server never noticed the client went away"
    assert received.outcome == "client_gone"
    assert received.frames_sent < 6


def test_abandoning_the_iterator_closes_the_stream(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.push(Script(chunks=[f"c{i}" for i in range(20)], delay=0.1))
    events = provider.stream(system="s", prompt="p", max_tokens=10)
    assert next(events) == Delta("c0")
    events.close()  # type: ignore[attr-defined]
    received = fake.requests[0]
    assert received.finished.wait(2) and received.outcome == "client_gone"


# ----------------------------------------------------------------------------- the frames
def test_frames_round_trip_through_botocores_parser() -> None:
    delta = encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    error = encode_exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(delta[:7])  # split mid-prelude: the buffer waits for the rest
    assert list(buffer) == []
    buffer.add_data(delta[7:] + error)
    first, second = list(buffer)

    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert first.payload == '{"contentBlockIndex":0,"delta":{"text":"héllo"}}'.encode()
    assert first.prelude.total_length == len(delta)
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400


def test_corrupted_frame_fails_botocores_crc_check() -> None:
    from botocore.eventstream import ChecksumMismatch

    frame = bytearray(encode_frame({":message-type": "event", ":event-type": "messageStop"}, b'{"stopReason":"x"}'))
    frame[-6] ^= 0xFF  # a payload byte
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
