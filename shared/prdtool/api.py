"""The whole HTTP API in one app: the OpenAPI reference and the schema-driven tests use it.

In AWS each function mounts only its own router; this module is never deployed as a handler.
"""

from __future__ import annotations

from fastapi import FastAPI

from .ai.routes import router as ai_router
from .audit.routes import router as audit_router
from .auth.routes import router as auth_router
from .exports.routes import router as exports_router
from .health.routes import router as health_router
from .http import create_app
from .imports.routes import router as imports_router
from .prds.routes import router as prds_router
from .search.routes import router as search_router
from .versions.routes import router as versions_router

ROUTERS = (auth_router, prds_router, versions_router, ai_router, imports_router, exports_router, health_router,
           audit_router, search_router)


def full_app() -> FastAPI:
    return create_app(*ROUTERS)
