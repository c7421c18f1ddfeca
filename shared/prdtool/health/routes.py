"""HTTP routes: ``GET /api/health`` and ``GET /api/config`` (both public; functions/health)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..settings import get_settings
from .checks import run_checks

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", summary="Health of every dependency: healthy, degraded or down")
def health() -> JSONResponse:
    report = run_checks()
    # 503 only when down, so load balancers and uptime checks react; degraded still serves.
    return JSONResponse(report, status_code=503 if report["status"] == "down" else 200,
                        headers={"Cache-Control": "no-store"})


@router.get("/config", summary="Where the web client finds the API and the WebSocket")
def config(request: Request) -> dict[str, Any]:
    s = get_settings()
    domain = ((request.scope.get("aws.event") or {}).get("requestContext") or {}).get("domainName")
    return {
        "apiUrl": s.public_api_url or (f"https://{domain}" if domain else str(request.base_url).rstrip("/")),
        "wsUrl": s.public_ws_url,
        "region": s.region,
        "stage": s.stage,
        "version": __version__,
        "auth": {"issuer": s.auth_issuer, "clientId": s.user_pool_client_id},
        # Limits a client checks before sending (the API enforces them anyway).
        "limits": {"aiPromptChars": s.ai_max_prompt_chars, "importDirectBytes": s.import_max_bytes,
                   "importUploadBytes": s.import_upload_max_bytes},
    }
