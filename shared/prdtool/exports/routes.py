"""HTTP routes of exports (mounted by functions/transfers_api)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from ..auth.principal import Principal
from ..http import current_principal
from . import service

router = APIRouter(prefix="/api", tags=["exports"], dependencies=[Depends(current_principal)])
Caller = Annotated[Principal, Depends(current_principal)]


class NewExport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["pdf", "docx", "html", "markdown", "confluence"]
    version: str | None = Field(default=None, max_length=40, pattern=r"^v?\d{1,6}\.\d{1,6}\.\d{1,6}$",
                                description="a version (default: the document now)")


@router.post("/prds/{id}/exports", status_code=202, summary="Export a PRD (queued; 202 with exportId)")
def create_export(id: Annotated[str, Path(min_length=1, max_length=64)], body: NewExport,
                  caller: Caller) -> dict[str, Any]:
    return service.start(caller, id, fmt=body.format, version=body.version)


@router.get("/exports/{export_id}", summary="An export: status and, when done, a link valid for 24 h")
def get_export(caller: Caller, export_id: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    return service.get(caller, export_id)
