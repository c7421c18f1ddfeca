"""HTTP route of search (mounted by functions/search_api): ``GET /api/search``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ..auth.principal import Principal
from ..http import current_principal
from . import service

router = APIRouter(prefix="/api", tags=["search"], dependencies=[Depends(current_principal)])
Caller = Annotated[Principal, Depends(current_principal)]


@router.get("/search", summary="Search the PRDs the caller may read: full text, by meaning, or both")
def search(
    caller: Caller,
    q: Annotated[str, Query(description="what to find: words, \"a phrase\", a prefix*; nothing else is syntax")] = "",
    mode: Annotated[str, Query(description="text (words), semantic (meaning) or hybrid (both, fused)")] = "hybrid",
    section: Annotated[str | None, Query(description="only this section (\"Risks\"; synonyms match)")] = None,
    owner: Annotated[str | None, Query(description="only PRDs owned by this username")] = None,
    updated_after: Annotated[int | None, Query(description="only PRDs updated after (epoch ms)")] = None,
    version: Annotated[str | None, Query(description="a version (1.2.0) or * for every version; "
                                                     "default: the current documents")] = None,
    limit: Annotated[int, Query(description="at most this many results (1-50)")] = 10,
    scope: Annotated[str | None, Query(description="all: an organisation admin searches every PRD")] = None,
) -> dict[str, Any]:
    return service.search(caller, q=q, mode=mode, section=section, owner=owner, updated_after=updated_after,
                          version=version, limit=limit, scope=scope)
