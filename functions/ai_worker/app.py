"""The AI worker (issue #15): an SQS consumer generating one queued job per record, streaming the
answer to the requester's WebSocket connections (prdtool.ai.worker)."""

from typing import Any

from prdtool.ai.worker import on_sqs
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return on_sqs(event)
