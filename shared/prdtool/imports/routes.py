"""HTTP routes of imports (mounted by functions/transfers_api)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Path, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from ..auth.principal import Principal
from ..errors import Unprocessable
from ..http import current_principal
from . import service

router = APIRouter(prefix="/api", tags=["imports"], dependencies=[Depends(current_principal)])
Caller = Annotated[Principal, Depends(current_principal)]
ImportId = Annotated[str, Path(min_length=1, max_length=64)]


def _filename(raw: str | None) -> str:
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        raise Unprocessable("the upload has no file name", code="no_filename")
    return name


def _title(raw: str | None) -> str | None:
    return raw.strip() if raw and raw.strip() else None


@router.post("/imports", status_code=202,
             summary="Import a Word, PDF, Markdown or HTML document (up to 4 MiB) as a new PRD (queued; 202 with "
                     "importId)")
async def create_import(caller: Caller, file: Annotated[UploadFile, File(description="the document")],
                        title: Annotated[str | None, Form(max_length=200)] = None,
                        draft_missing: Annotated[bool, Form(
                            alias="draftMissing",
                            description="ask the AI to draft the standard sections the document lacks, "
                                        "as suggestions to review")] = True) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from ..settings import get_settings

    data = await file.read(get_settings().import_max_bytes + 1)
    return await run_in_threadpool(service.start, caller, filename=_filename(file.filename), data=data,
                                   title=_title(title), draft_missing=draft_missing)


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    size: int | None = Field(default=None, description="bytes; when given, S3 takes exactly this many")
    title: str | None = Field(default=None, max_length=200)
    draftMissing: bool = True


@router.post("/imports/uploads", status_code=201,
             summary="Start the import of a large file (up to 20 MiB): an S3 upload form (presigned POST); "
                     "then POST /api/imports/{id}/complete")
def create_upload(caller: Caller, body: Annotated[UploadRequest, Body()]) -> dict[str, Any]:
    return service.create_upload(caller, filename=_filename(body.filename), size=body.size, title=_title(body.title),
                                 draft_missing=body.draftMissing)


@router.post("/imports/{import_id}/complete", status_code=202,
             summary="The upload is in S3: check it and queue the import (repeating it gives the same answer)")
def complete_upload(caller: Caller, import_id: ImportId) -> dict[str, Any]:
    return service.complete_upload(caller, import_id)


@router.get("/imports/{import_id}", summary="An import: status, the PRD it made, the report")
def get_import(caller: Caller, import_id: ImportId) -> dict[str, Any]:
    return service.get(caller, import_id)
