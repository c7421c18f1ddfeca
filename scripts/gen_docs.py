"""Generate the documents derived from code: docs/policy.md and docs/openapi.json (`make docs`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "shared"))

POLICY_HEADER = """# Authorization policy

Generated from `shared/prdtool/auth/policy.py` by `make docs`; a test fails when it is stale.
Every HTTP route and WebSocket message checks this table through `policy.require`. A caller with
no role on a PRD gets 404 (not 403), so the existence of a PRD is never revealed.

"""


def policy_markdown() -> str:
    from prdtool.auth.policy import policy_table_markdown

    return POLICY_HEADER + policy_table_markdown()


def openapi_json() -> str:
    from prdtool.api import full_app

    return json.dumps(full_app().openapi(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "policy.md").write_text(policy_markdown())
    (ROOT / "docs" / "openapi.json").write_text(openapi_json())
    print("wrote docs/policy.md and docs/openapi.json")


if __name__ == "__main__":
    main()
