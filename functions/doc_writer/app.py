"""Write-queue consumer: about every 5 s per PRD, fold edits into the snapshot (SQS FIFO)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from prdtool.collab import writequeue, writer
from prdtool.observability import lambda_entry

# FIFO semantics: after a failure, later messages of the same PRD are retried, other PRDs go on.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def _record(record: SQSRecord) -> None:
    writer.save(writequeue.parse(record.body))


@lambda_entry()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
