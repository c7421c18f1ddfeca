"""HTTP routes of versions (mounted by functions/versions_api): list, read, diff, save, restore, and
the PRD's push remote."""

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


class RemoteBody(BaseModel):
    """Where to push the PRD's versions.  ``token`` is kept in Secrets Manager and never shown again;
    leave it out to keep the stored one (for the same host)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="https://host/owner/repo.git")
    username: str | None = Field(default=None, min_length=1, max_length=200, pattern=_LINE)
    token: str | None = Field(default=None, min_length=1, max_length=4000, pattern=_LINE)


@router.get("/prds/{id}/remote", summary="The PRD's push remote and how its last pushes went")
def get_remote(id: PrdId, caller: Caller) -> dict[str, Any]:
    return api.get_remote(caller, id)


@router.put("/prds/{id}/remote", summary="Mirror every version to a git remote (owner)")
def put_remote(id: PrdId, body: RemoteBody, caller: Caller) -> dict[str, Any]:
    return api.put_remote(caller, id, url=body.url, username=body.username, token=body.token)


@router.delete("/prds/{id}/remote", status_code=204, summary="Stop mirroring (the token is deleted)")
def delete_remote(id: PrdId, caller: Caller) -> None:
    api.delete_remote(caller, id)


@router.post("/prds/{id}/remote/push", status_code=202,
             summary="Push to the remote now (queued; GET /remote shows the outcome)")
def push_remote(id: PrdId, caller: Caller) -> dict[str, Any]:
    return api.push_remote(caller, id)

