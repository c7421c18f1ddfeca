"""Imports and exports over HTTP (POST/GET /api/imports, POST /api/prds/{id}/exports, GET /api/exports/{id})."""

from typing import Any

from prdtool.exports.routes import router as exports_router
from prdtool.http import lambda_handler
from prdtool.imports.routes import router as imports_router
from prdtool.observability import lambda_entry

_app = lambda_handler(imports_router, exports_router)


@lambda_entry(flush_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app(event, context)
