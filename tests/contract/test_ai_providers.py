"""Contract of the model providers: what the worker relies on, checked against the local endpoints
by default and against the real services when configured.

    PRDTOOL_CONTRACT_BEDROCK_MODEL=anthropic.claude-3-haiku-20240307-v1:0 AWS_REGION=us-east-1 \\
        .venv/bin/pytest tests/contract          # real Bedrock (AWS credentials from the environment)
    PRDTOOL_CONTRACT_OPENAI_URL=http://127.0.0.1:11434/v1 PRDTOOL_CONTRACT_OPENAI_MODEL=llama3.2 \\
        .venv/bin/pytest tests/contract          # a real OpenAI-compatible server (Ollama, vLLM, ...)

The local endpoints (scripts/localstack/bedrock.py, openai_server.py) must pass the same tests, so a
difference between them and the real services shows up here, not in production.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prdtool.ai.openai_compat import OpenAICompatibleProvider
from prdtool.ai.providers import BedrockProvider, Delta, Done, Provider, ProviderError
from scripts.localstack.bedrock import serve_bedrock
from scripts.localstack.openai_server import serve_openai

LOCAL_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
Factory = Callable[[str | None], Provider]  # a provider for the model (None: the configured one)


def _local_bedrock() -> Iterator[Factory]:
    with serve_bedrock(models=[LOCAL_MODEL]) as fake:
        yield lambda model: BedrockProvider(model or LOCAL_MODEL, region="us-east-1", endpoint_url=fake.url,
                                            backoff=0.01)


def _local_openai() -> Iterator[Factory]:
    with serve_openai(models=["echo"]) as fake:
        yield lambda model: OpenAICompatibleProvider(fake.base_url, model or "echo", backoff=0.01)


def _real_bedrock() -> Iterator[Factory]:
    model_id = os.environ["PRDTOOL_CONTRACT_BEDROCK_MODEL"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    yield lambda model: BedrockProvider(model or model_id, region=region)


def _real_openai() -> Iterator[Factory]:
    url, name = os.environ["PRDTOOL_CONTRACT_OPENAI_URL"], os.environ["PRDTOOL_CONTRACT_OPENAI_MODEL"]
    key = os.environ.get("PRDTOOL_CONTRACT_OPENAI_KEY")
    yield lambda model: OpenAICompatibleProvider(url, model or name, api_key=key)


TARGETS: list[Any] = [
    pytest.param(_local_bedrock, id="local-bedrock"),
    pytest.param(_local_openai, id="local-openai"),
    pytest.param(_real_bedrock, id="bedrock", marks=pytest.mark.skipif(
        not os.environ.get("PRDTOOL_CONTRACT_BEDROCK_MODEL"), reason="PRDTOOL_CONTRACT_BEDROCK_MODEL not set")),
    pytest.param(_real_openai, id="openai", marks=pytest.mark.skipif(
        not os.environ.get("PRDTOOL_CONTRACT_OPENAI_URL"), reason="PRDTOOL_CONTRACT_OPENAI_URL not set")),
]


@pytest.fixture(params=TARGETS)
def provider(request: pytest.FixtureRequest) -> Iterator[Factory]:
    yield from request.param()


PROMPT = "Reply with the words: payment risks are low. Nothing else."


def test_a_stream_is_deltas_then_exactly_one_done_with_usage(provider: Factory) -> None:
    events = list(provider(None).stream(system="You are terse.", prompt=PROMPT, max_tokens=64))
    assert events and all(isinstance(e, Delta) for e in events[:-1]) and isinstance(events[-1], Done)
    assert "".join(e.text for e in events[:-1]).strip()
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn" and done.usage.input_tokens > 0 and done.usage.output_tokens > 0


def test_the_token_limit_ends_the_answer_with_max_tokens(provider: Factory) -> None:
    events = list(provider(None).stream(system="", prompt="Count from one to one hundred in words: " + PROMPT,
                                        max_tokens=3))
    done = events[-1]
    assert isinstance(done, Done) and done.stop_reason == "max_tokens"


def test_an_unknown_model_is_a_configuration_error_not_retried(provider: Factory) -> None:
    with pytest.raises(ProviderError) as caught:
        list(provider("no-such-model-v9").stream(system="", prompt=PROMPT, max_tokens=16))
    assert caught.value.code == "model_not_found" and not caught.value.retryable and not caught.value.partial
    assert "no-such-model" not in caught.value.message  # the provider's text is never shown


def test_cancel_after_the_first_delta_ends_the_stream_without_done(provider: Factory) -> None:
    seen: list[Any] = []
    stream = provider(None).stream(system="", prompt="Write three long sentences about checkout. " + PROMPT,
                                   max_tokens=200, cancel=lambda: bool(seen))
    for event in stream:
        seen.append(event)
    assert len(seen) == 1 and isinstance(seen[0], Delta)
