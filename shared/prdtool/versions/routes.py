"""HTTP routes of versions (mounted by functions/versions_api): list, read, diff, save, restore."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ..auth.principal import Principal
from ..http import current_principal
from . import api

router = APIRouter(prefix="/api", tags=["versions"], dependencies=[Depends(current_principal)])

PrdId = Annotated[str, Path(min_length=1, max_length=64)]
# "1.2.0" or "v1.2.0" (DESIGN 3.3); anything else is simply not a version of this PRD (404).
VersionPath = Annotated[str, Path(min_length=1, max_length=40, description="1.2.0 or v1.2.0")]
VersionQuery = Annotated[str, Query(min_length=1, max_length=40, pattern=r"^v?\d{1,6}\.\d{1,6}\.\d{1,6}$")]
Caller = Annotated[Principal, Depends(current_principal)]
_LINE = r"^[^\x00-\x1f\x7f]*$"


class SaveVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=_LINE)
    message: str | None = Field(default=None, min_length=1, max_length=2000)


@router.get("/prds/{id}/versions", summary="A PRD's versions, newest first")
def list_versions(id: PrdId, caller: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  before: Annotated[str | None, Query(max_length=40, pattern=r"^v?\d{1,6}\.\d{1,6}\.\d{1,6}$",
                                                      description="the page after this version")] = None,
                  ) -> dict[str, Any]:
    return api.list_versions(caller, id, limit=limit, before=before)


@router.post("/prds/{id}/versions", status_code=201, summary="Save a version now (named, with a message)")
def save_version(id: PrdId, caller: Caller, body: SaveVersion | None = None) -> dict[str, Any]:
    body = body or SaveVersion()
    return api.save_version(caller, id, name=body.name, message=body.message)


@router.get("/prds/{id}/versions/{version}", summary="A version: its record and its Markdown")
def get_version(id: PrdId, version: VersionPath, caller: Caller) -> dict[str, Any]:
    return api.get_version(caller, id, version)


@router.post("/prds/{id}/versions/{version}/restore", summary="Make the document what it was at a version")
def restore_version(id: PrdId, version: VersionPath, caller: Caller) -> dict[str, Any]:
    return api.restore(caller, id, version)


@router.get("/prds/{id}/diff", summary="What changed between two versions: unified diff and per section")
def diff(id: PrdId, caller: Caller, old: Annotated[VersionQuery, Query(alias="from")],
         new: Annotated[VersionQuery, Query(alias="to")]) -> dict[str, Any]:
    return api.diff(caller, id, old, new)
