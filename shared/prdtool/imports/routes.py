"""HTTP routes of imports (mounted by functions/imports_api)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile

from ..auth.principal import Principal
from ..errors import Unprocessable
from ..http import current_principal
from . import service

router = APIRouter(prefix="/api", tags=["imports"], dependencies=[Depends(current_principal)])
Caller = Annotated[Principal, Depends(current_principal)]


@router.post("/imports", status_code=202,
             summary="Import a Word, PDF, Markdown or HTML document as a new PRD (queued; 202 with importId)")
async def create_import(caller: Caller, file: Annotated[UploadFile, File(description="the document")],
                        title: Annotated[str | None, Form(max_length=200)] = None) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    from ..settings import get_settings

    limit = get_settings().import_max_bytes
    data = await file.read(limit + 1)
    name = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        raise Unprocessable("the upload has no file name", code="no_filename")
    return await run_in_threadpool(service.start, caller, filename=name, data=data,
                                   title=title.strip() if title and title.strip() else None)


@router.get("/imports/{import_id}", summary="An import: status, the PRD it made, the report")
def get_import(caller: Caller, import_id: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    return service.get(caller, import_id)
