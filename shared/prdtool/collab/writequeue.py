"""The write queue: edits are folded into the saved snapshot about every 5 seconds per PRD.

Lambda's SQS event source cannot batch a FIFO queue over a window (DESIGN 4), so the batching is
done by the queue itself: a FIFO queue with a 5-second delivery delay, one message group per PRD
(one consumer per document at a time, as compaction requires), and a deduplication id per PRD and
5-second bucket, so however many edits and Lambda containers there are, SQS delivers at most one
message per PRD per bucket, after the bucket has ended.  Each container also remembers which
buckets it already announced, so the hot path sends at most one message per PRD per 5 s.
Because every edit in a bucket is stored before its send is attempted, the consumer, running after
the bucket ends, sees all of them (consistent reads).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from ..aws import client
from ..observability import logger
from ..settings import get_settings

BUCKET_SECONDS = 5
_announced: OrderedDict[tuple[str, int], None] = OrderedDict()
_MAX_REMEMBERED = 4096


def notify(prd_id: str, *, now: float | None = None) -> bool:
    """Ask for a compaction of ``prd_id`` after the current 5-second bucket; True if a message was sent."""
    url = get_settings().doc_write_queue_url
    if not url:
        return False
    bucket = int((time.time() if now is None else now) // BUCKET_SECONDS)
    key = (prd_id, bucket)
    if key in _announced:
        return False
    try:
        client("sqs").send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"prd_id": prd_id, "bucket": bucket}),
            MessageGroupId=prd_id,
            MessageDeduplicationId=f"{prd_id}-{bucket}",
        )
    except Exception:
        # The edit is stored; it will be compacted with the next one. Never fail an edit for this.
        logger.exception("could not queue a compaction", extra={"prd_id": prd_id})
        return False
    _announced[key] = None
    while len(_announced) > _MAX_REMEMBERED:
        _announced.popitem(last=False)
    return True


def parse(body: str) -> str:
    """The PRD id of a write-queue message (ValueError if it is not one)."""
    data: Any = json.loads(body)
    prd_id = data.get("prd_id") if isinstance(data, dict) else None
    if not isinstance(prd_id, str) or not prd_id:
        raise ValueError("not a write-queue message")
    return prd_id
