"""HTTP routes of PRDs and members (mounted by functions/prds)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..auth.principal import Principal
from ..http import current_principal
from . import service, templates

router = APIRouter(prefix="/api", tags=["prds"], dependencies=[Depends(current_principal)])

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                         pattern=r"^[^\x00-\x1f\x7f]*$")]
PrdId = Annotated[str, Path(min_length=1, max_length=64)]
Username = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$")]
Caller = Annotated[Principal, Depends(current_principal)]


class CreatePrd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    template: str = Field(default="blank", max_length=64)
    markdown: str | None = Field(default=None, max_length=1_000_000,
                                 description="Initial content; when absent the template's is used")


class PatchPrd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    status: Literal["draft", "in_review", "approved", "archived"] | None = None


class PutMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["owner", "editor", "commenter", "viewer"]


@router.get("/templates", summary="The templates a new PRD can start from")
def list_templates() -> list[dict[str, Any]]:
    return templates.catalogue()


@router.post("/prds", status_code=201, summary="Create a PRD (blank, from a template, or from Markdown)")
def create_prd(body: CreatePrd, caller: Caller, request: Request) -> dict[str, Any]:
    created = service.create_prd(caller, title=body.title, template=body.template, markdown=body.markdown)
    request.state.audit_resource = f"prd/{created['id']}"  # so its owner finds the creation
    return created


@router.get("/prds", summary="The PRDs the caller can read, most recently changed first")
def list_prds(caller: Caller, scope: Annotated[Literal["mine", "all"], Query()] = "mine") -> dict[str, Any]:
    return {"items": service.list_prds(caller, scope=scope)}


@router.get("/prds/{id}", summary="A PRD's metadata and current Markdown")
def get_prd(id: PrdId, caller: Caller) -> dict[str, Any]:
    return service.get_prd(caller, id)


@router.patch("/prds/{id}", summary="Change a PRD's title or status")
def patch_prd(id: PrdId, body: PatchPrd, caller: Caller) -> dict[str, Any]:
    return service.update_prd(caller, id, title=body.title, status=body.status)


@router.delete("/prds/{id}", status_code=204, summary="Delete a PRD (owners only)")
def delete_prd(id: PrdId, caller: Caller) -> Response:
    service.delete_prd(caller, id)
    return Response(status_code=204)


@router.get("/prds/{id}/members", summary="Who has which role on a PRD")
def list_members(id: PrdId, caller: Caller) -> dict[str, Any]:
    return {"items": service.list_members(caller, id)}


@router.put("/prds/{id}/members/{username}", summary="Give a person a role on a PRD (owners only)")
def put_member(id: PrdId, username: Username, body: PutMember, caller: Caller) -> dict[str, Any]:
    return service.put_member(caller, id, username, body.role)


@router.delete("/prds/{id}/members/{username}", status_code=204,
               summary="Remove a person from a PRD (owners; anyone may remove themselves)")
def delete_member(id: PrdId, username: Username, caller: Caller) -> Response:
    service.remove_member(caller, id, username)
    return Response(status_code=204)
