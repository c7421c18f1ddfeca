"""Frames about AI jobs (DESIGN 3.2): the answer to its requester, the news to everyone on the PRD.

* ``{"action": "ai", "job", "event": "chunk", "text", "seq"}``, then ``"done"`` (with usage) or
  ``"error"`` (with a message): to every connection of the job's requester on that PRD — no
  subscription needed, so a second tab of the same person follows too.
* ``{"action": "notice", "type": "ai-suggestion", "job", "status", "mode", "section", "by"}`` to
  every connection on the PRD: ``generating`` (someone asked), ``pending`` (a suggestion awaits
  review), ``approved`` / ``rejected`` / ``cancelled`` / ``failed``.  The suggestion's text is not in
  the notice: collaborators read it from the job (``GET /api/ai/jobs/{id}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..observability import logger
from .jobs import Job


def _frame(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def chunk_frame(job_id: str, text: str, seq: int) -> str:
    return _frame({"action": "ai", "job": job_id, "event": "chunk", "text": text, "seq": seq})


def done_frame(job_id: str, seq: int, usage: dict[str, int], *, truncated: bool, stop_reason: str) -> str:
    return _frame({"action": "ai", "job": job_id, "event": "done", "seq": seq, "usage": usage,
                   "truncated": truncated, "stopReason": stop_reason})


def error_frame(job_id: str, seq: int, code: str, message: str) -> str:
    return _frame({"action": "ai", "job": job_id, "event": "error", "seq": seq, "code": code, "message": message})


class Requester:
    """The requester's connections on a PRD, looked up again every ``refresh`` seconds (a client that
    reconnects mid-stream starts receiving chunks within that time; what it missed is in the job)."""

    def __init__(self, prd_id: str, username: str, *, refresh: float = 2.0) -> None:
        self.prd_id, self.username, self.refresh = prd_id, username, refresh
        self._ids: list[str] = []
        self._at = float("-inf")
        self.posts = 0

    def _targets(self, now: float) -> list[str]:
        from ..collab import connections

        if now - self._at >= self.refresh:
            found = connections.of_prd(self.prd_id)
            self._ids = [c.connection_id for c in found if c.username == self.username]
            self._at = now
        return self._ids

    def send(self, frames: Sequence[str], *, now: float) -> None:
        """Post ``frames`` in order to each connection; a gone one is dropped (never fails the job)."""
        from ..collab import relay

        for connection_id in list(self._targets(now)):
            try:
                self.posts += len(frames)
                if not relay.send(connection_id, list(frames)):
                    self._ids = [c for c in self._ids if c != connection_id]
            except Exception:
                logger.warning("could not post an AI frame", extra={"connection_id": connection_id})


def suggestion(job: Job, status: str) -> None:
    """Tell everyone on the PRD what became of a suggestion (best effort)."""
    try:
        from ..collab import relay

        notice = _frame({"action": "notice", "type": "ai-suggestion", "job": job.job_id, "status": status,
                         "mode": job.mode, "section": job.section, "by": job.requester,
                         "decidedBy": job.decided_by, "version": job.version})
        relay.broadcast(relay.update_peers(job.prd_id, exclude=None), [notice])
    except Exception:
        logger.exception("could not tell the PRD's editors about an AI suggestion", extra={"job_id": job.job_id})
