"""HTTP routes of AI drafting (mounted by functions/ai_api): ask, follow, approve, reject, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ..auth.principal import Principal
from ..http import current_principal
from . import service

router = APIRouter(prefix="/api", tags=["ai"], dependencies=[Depends(current_principal)])

PrdId = Annotated[str, Path(min_length=1, max_length=64)]
JobId = Annotated[str, Path(min_length=1, max_length=64)]
Caller = Annotated[Principal, Depends(current_principal)]


class NewJob(BaseModel):
    """What to write.  ``prompt`` is checked for size by the service (413 beyond the limit)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=1_000_000, description="what you want written")
    mode: str = Field(default="draft", max_length=40,
                      description="draft | rewrite | expand | summarize | fill-gaps")
    section: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                description="the target section's title (not for fill-gaps)")


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=200_000,
                             description="the suggestion as edited by the approver (default: as written)")


@router.post("/prds/{id}/ai/jobs", status_code=202, summary="Ask the AI for a suggestion (queued; 202 with jobId)")
def create_job(id: PrdId, body: NewJob, caller: Caller) -> dict[str, Any]:
    return service.create_job(caller, id, prompt=body.prompt, mode=body.mode, section=body.section)


@router.get("/prds/{id}/ai/jobs", summary="A PRD's AI jobs, newest first (status=pending: awaiting review)")
def list_jobs(id: PrdId, caller: Caller,
              status: Annotated[Literal["pending", "queued", "running", "done", "failed", "cancelled",
                                        "approved", "rejected"] | None, Query()] = None) -> dict[str, Any]:
    return service.list_jobs(caller, id, status=status)


@router.get("/ai/jobs/{job_id}", summary="A job: status, the answer so far, usage")
def get_job(job_id: JobId, caller: Caller) -> dict[str, Any]:
    return service.get_job(caller, job_id)


@router.post("/ai/jobs/{job_id}/approve", summary="Apply the suggestion (optionally edited) and version it")
def approve(job_id: JobId, caller: Caller, body: Approval | None = None) -> dict[str, Any]:
    return service.approve(caller, job_id, text=(body or Approval()).text)


@router.post("/ai/jobs/{job_id}/reject", summary="Discard the suggestion")
def reject(job_id: JobId, caller: Caller) -> dict[str, Any]:
    return service.reject(caller, job_id)


@router.post("/ai/jobs/{job_id}/cancel", summary="Stop a queued or generating job")
def cancel(job_id: JobId, caller: Caller) -> dict[str, Any]:
    return service.cancel(caller, job_id)
