"""The audit trail (seed flow 5.2): who did what, to which resource, from where, when, how it ended.

* :mod:`.recorder` — :class:`AuditEntry`, :func:`redact` and :func:`record` (one SQS message per
  entry; never raises).  Light on purpose: the WebSocket path imports it (no pynamodb, no FastAPI).
* :mod:`.chain` — the tamper-evident format: gzip JSON-lines objects per UTC date, hash-chained.
* :mod:`.writer` — the queue consumer: appends a batch to its date partitions in S3 with
  conditional writes (no lock service) and indexes every entry in DynamoDB, idempotently.
* :mod:`.query` and :mod:`.routes` — ``GET /api/audit`` (admins; PRD owners for their PRD).
* :mod:`.verify` — recomputes a partition's chain (``GET /api/audit/verify``, daily maintenance).
"""

from .recorder import AuditEntry, record, redact

__all__ = ["AuditEntry", "record", "redact"]
