"""The search indexing worker: an SQS consumer of domain events (prdtool.search.indexer)."""

from typing import Any

from prdtool.observability import lambda_entry
from prdtool.search.indexer import on_sqs


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return on_sqs(event, context)
