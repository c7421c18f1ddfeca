"""Audit queue consumer: append each batch to the date-partitioned, hash-chained store, and index it.

Not Powertools' batch processor: it handles one record at a time, and the writer appends a whole
batch as one object per date; partial failures are still reported (``batchItemFailures``).
"""

from typing import Any

from prdtool.audit import writer
from prdtool.observability import lambda_entry


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return writer.handle_sqs_batch(event.get("Records") or [])
