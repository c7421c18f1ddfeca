"""Audit queue consumer: append each batch to the date-partitioned, hash-chained store, and index it.

Partial batch response (``batchItemFailures``; the event source mapping sets
``FunctionResponseTypes: [ReportBatchItemFailures]``): a message that can never be stored fails
alone and ends in the dead-letter queue, the rest of its batch is stored (see
``prdtool.audit.writer``).  Not Powertools' batch processor: it handles one record at a time, while
the writer appends a whole batch as one chained object per date; the response has the same shape.
"""

from typing import Any

from prdtool.audit import writer
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Store an SQS batch of audit entries; returns the messages to retry (``batchItemFailures``)."""
    return writer.handle_sqs_batch(event.get("Records") or [])
