"""The import worker (issue #16): an SQS consumer turning one upload per record into a PRD
(prdtool.imports.worker)."""

from typing import Any

from prdtool.imports.worker import on_sqs
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return on_sqs(event)
