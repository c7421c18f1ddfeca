"""The export worker (issue #16): an SQS consumer rendering one export per record
(prdtool.exports.worker)."""

from typing import Any

from prdtool.exports.worker import on_sqs
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return on_sqs(event)
