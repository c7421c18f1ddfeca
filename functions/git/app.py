"""git clone over smart HTTP (read only): /git/<prdId>.git, basic auth with a token or an API key."""

from typing import Any

from prdtool.observability import lambda_entry
from prdtool.versions import git_http


@lambda_entry(flush_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return git_http.handle(event)
