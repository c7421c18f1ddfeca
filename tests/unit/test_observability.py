"""prdtool.observability.lambda_entry: after a container's first invocation its heap is frozen
(``gc.freeze``) — in a Lambda environment only, never in a test process calling handlers."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from prdtool.observability import lambda_entry


class Context:
    function_name = "unit"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:unit"
    aws_request_id = "r-1"


def handler_counting_freezes(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[int]]:
    freezes: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(gc.get_freeze_count()))

    @lambda_entry(flush_metrics=False)
    def handler(event: Any, context: Any) -> Any:
        if event == "boom":
            raise RuntimeError("boom")
        return {"ok": event}

    return handler, freezes


def test_the_heap_is_frozen_once_after_the_first_invocation_in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "unit")
    handler, freezes = handler_counting_freezes(monkeypatch)
    with pytest.raises(RuntimeError):
        handler("boom", Context())  # a failed first invocation loaded what the container keeps too
    assert len(freezes) == 1
    assert handler(1, Context()) == {"ok": 1} and handler(2, Context()) == {"ok": 2}
    assert len(freezes) == 1


def test_a_test_process_is_never_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    handler, freezes = handler_counting_freezes(monkeypatch)
    assert handler(1, Context()) == {"ok": 1}
    assert freezes == []
