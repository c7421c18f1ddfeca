"""The web client in a real browser (Debian's Chromium via playwright-core) against the local stack.

The scenarios are Playwright specs in ``web/e2e/*.spec.mjs`` (Node's test runner); this module starts
them against the session's local stack and fails with their output when any fails. ``make test`` builds
``web/dist`` and installs Chromium first; run alone: ``make web browser && .venv/bin/python -m pytest
tests/browser -q``. Screenshots land in ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.localstack.stack import LocalStack
from tests.integration.fixtures import ensure_user

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def built_web() -> Path:
    """``web/dist`` and ``web/node_modules`` as ``make web`` leaves them (a no-op when up to date)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed for the web client tests")
    result = subprocess.run(["make", "--no-print-directory", "web"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"make web failed:\n{result.stdout}\n{result.stderr}"
    assert (WEB / "dist" / "index.html").is_file()
    return WEB


def test_web_client_in_chromium(stack: LocalStack, built_web: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs it (apt-get install -y chromium)")
    ensure_user(stack, "dave")  # the share dialog test adds dave to a PRD
    env = {**os.environ, "BASE_URL": stack.base_url, "CHROMIUM": CHROMIUM,
           "ARTIFACTS": str(ROOT / "test-artifacts" / "web")}
    specs = sorted(str(p.relative_to(built_web)) for p in (built_web / "e2e").glob("*.spec.mjs"))
    result = subprocess.run(
        ["node", "--test", "--test-concurrency=1", "--test-reporter=spec", *specs],
        cwd=built_web, env=env, capture_output=True, text=True, timeout=900,
    )
    print(result.stdout[-20000:])
    print(result.stderr[-5000:])
    assert result.returncode == 0, f"browser tests failed:\n{result.stdout[-12000:]}\n{result.stderr[-3000:]}"
    assert re.search(r"\bfail 0\b", result.stdout), "the spec run reported failures"
