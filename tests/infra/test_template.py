"""Infrastructure tests: the SAM template lints, builds, and agrees with the pynamodb models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from prdtool.storage import registered_models

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".venv-sam" / "bin" / "sam"
TEMPLATE: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

# Import every module that registers a model, so the registry is complete.
import prdtool.ai.jobs  # noqa: E402
import prdtool.audit.models  # noqa: E402
import prdtool.auth.apikeys  # noqa: E402
import prdtool.auth.ratelimit  # noqa: E402
import prdtool.auth.revocation  # noqa: E402
import prdtool.collab.connections  # noqa: E402
import prdtool.collab.store  # noqa: E402
import prdtool.prds.models  # noqa: E402
import prdtool.transfers  # noqa: E402
import prdtool.versions.records  # noqa: E402,F401


def _sam(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    if not SAM.exists():
        pytest.fail("aws-sam-cli is not installed: run `make test` (it installs .venv-sam)")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.infra
def test_sam_validate_lint() -> None:
    result = _sam("validate", "--lint", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.infra
@pytest.mark.slow
def test_sam_build(tmp_path: Path) -> None:
    """`sam build` without Docker: needs python3.12 on PATH (the venv's interpreter is one)."""
    build_dir = tmp_path / "build"
    cache_dir = ROOT / ".aws-sam" / "cache-test"
    result = _sam("build", "--build-dir", str(build_dir), "--cached", "--cache-dir", str(cache_dir),
                  timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = yaml_parse((build_dir / "template.yaml").read_text())
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Serverless::Function":
            code = build_dir / built["Resources"][name]["Properties"]["CodeUri"]
            assert (code / "app.py").exists(), f"{name} built without its handler"
    shared = build_dir / "SharedLayer" / "python" / "prdtool" / "__init__.py"
    deps = build_dir / "DepsLayer" / "python"
    assert shared.exists(), "the shared layer lacks the prdtool package"
    assert (deps / "pycrdt").is_dir() and (deps / "dulwich").is_dir()
    # dulwich must come with its native extensions (cp312 manylinux_2_28 wheels, DESIGN §4)
    assert list((deps / "dulwich").glob("*.so")), "dulwich was built without its native extensions"
    shutil.rmtree(build_dir, ignore_errors=True)


def _env_table_resources() -> dict[str, str]:
    """Globals env var -> logical id, for variables that name a table (``!Ref SomeTable``)."""
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    return {name: value["Ref"] for name, value in variables.items()
            if isinstance(value, dict) and "Ref" in value and RESOURCES.get(value["Ref"], {}).get("Type")
            == "AWS::DynamoDB::Table"}


def test_every_model_has_a_table_and_every_table_a_model() -> None:
    tables = _env_table_resources()
    model_vars = {m.Meta.settings_attr.upper() for m in registered_models()}  # type: ignore[attr-defined]
    declared = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert model_vars == set(tables), "each model's table setting must be a Globals env var with !Ref"
    assert set(tables.values()) == declared


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m.__name__)
def test_table_schema_matches_the_model(model: Any) -> None:
    """Each model's keys are its table's; the models sharing a table (items of several kinds in one
    table) together declare exactly the table's attributes and indexes."""
    resource = RESOURCES[_env_table_resources()[model.Meta.settings_attr.upper()]]["Properties"]
    schema = model._get_schema()
    sharing = [m._get_schema() for m in registered_models() if m.Meta.settings_attr == model.Meta.settings_attr]
    def keys(ks: list[dict[str, str]]) -> list[tuple[str, str]]:
        return sorted(((k["AttributeName"], k["KeyType"]) for k in ks), key=lambda k: k[1])  # HASH first
    assert keys(resource["KeySchema"]) == keys(schema["key_schema"])
    model_attrs = {(a["AttributeName"], a["AttributeType"]) for sch in sharing for a in sch["attribute_definitions"]}
    template_attrs = {(a["AttributeName"], a["AttributeType"]) for a in resource["AttributeDefinitions"]}
    assert template_attrs == model_attrs
    model_gsis = {g["index_name"]: (keys(g["key_schema"]), g["projection"]["ProjectionType"])
                  for sch in sharing for g in sch["global_secondary_indexes"]}
    template_gsis = {g["IndexName"]: (keys(g["KeySchema"]), g["Projection"]["ProjectionType"])
                     for g in resource.get("GlobalSecondaryIndexes", [])}
    assert template_gsis == model_gsis
    ttl = resource.get("TimeToLiveSpecification")
    if ttl:
        attribute = model.get_attributes().get(ttl["AttributeName"])
        assert attribute is not None and attribute.attr_type == "N", "the TTL attribute must be a number"
    assert resource.get("BillingMode") == "PAY_PER_REQUEST"


def test_every_function_has_a_log_group_with_retention() -> None:
    functions = {n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    groups = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::LogGroup"]
    covered = {g["LogGroupName"]["Fn::Sub"].split("${")[1].rstrip("}") for g in groups}
    assert covered == functions
    assert all(g["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups)


def test_queues_have_dead_letter_queues_and_long_enough_visibility() -> None:
    queues = {n: r["Properties"] for n, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue"}
    dlqs = {n for n in queues if n.endswith("DLQ")}
    for name, props in queues.items():
        if name in dlqs:
            continue
        assert props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] in dlqs
        # Powertools guidance: visibility >= 6x the consumer's timeout (Globals timeout 10 s).
        assert props["VisibilityTimeout"] >= 60


def test_handlers_are_thin_and_use_no_aws_sdk_directly() -> None:
    for app in (ROOT / "functions").glob("*/app.py"):
        text = app.read_text()
        assert "boto3" not in text and "pynamodb" not in text, f"{app} must go through shared/prdtool"
        assert len(text.splitlines()) < 40, f"{app} is not a thin handler"


@pytest.mark.parametrize("function", ["websocket", "authorizer"])
def test_websocket_path_does_not_import_fastapi(function: str) -> None:
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT / 'shared')!r}]; "
            "import app; print('fastapi' in sys.modules, 'mangum' in sys.modules)")
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# Packages a handler's init (importing its module) must not load: each is imported on first use by
# the requests that need it (docs/benchmarks.md, "Cold start").  pycrdt: only document frames and
# PRD use cases that touch content; jose/cryptography: only a token verification; FastAPI and
# pydantic: never on the WebSocket path; pynamodb: the health routes read no table (only the rate
# limit of the first request does).
_HTTP_LAZY = ("pycrdt", "jose", "cryptography")
_LAZY_AT_INIT = {
    "websocket": ("fastapi", "starlette", "mangum", "pydantic", "pycrdt", "anyio", "jose", "cryptography",
                  "prdtool.collab.store", "prdtool.audit.recorder", "prdtool.prds.access", "prdtool.auth.revocation"),
    "authorizer": ("fastapi", "starlette", "mangum", "pydantic", "pycrdt", "jose", "cryptography"),
    "auth": _HTTP_LAZY,
    "prds": (*_HTTP_LAZY, "prdtool.collab.store", "prdtool.collab.live"),
    "health": (*_HTTP_LAZY, "pynamodb"),
    "audit": _HTTP_LAZY,
    "ai_api": (*_HTTP_LAZY, "prdtool.collab.store", "prdtool.ai.worker", "prdtool.ai.providers", "openai"),
    "ai_worker": ("fastapi", "starlette", "mangum", "openai", "jose", "cryptography"),
    "transfers_api": (*_HTTP_LAZY, "mammoth", "pdfplumber", "pypdf", "docx", "typst", "nh3", "markdownify"),
    "import_worker": ("fastapi", "starlette", "mangum", "mammoth", "pdfplumber", "typst", "docx"),
    "export_worker": ("fastapi", "starlette", "mangum", "mammoth", "pdfplumber", "typst", "docx"),
}


@pytest.mark.parametrize("function", sorted(_LAZY_AT_INIT))
def test_handler_init_leaves_heavy_packages_for_first_use(function: str) -> None:
    lazy = _LAZY_AT_INIT[function]
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT / 'shared')!r}]; "
            f"import app; print(' '.join(m for m in {lazy!r} if m in sys.modules))")
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"{function}'s init imports {out.stdout.split()}: import them where used"


def test_translated_template_has_no_cloudformation_errors() -> None:
    """Lint the CloudFormation that SAM produces: catches what `sam validate --lint` cannot see
    on the SAM source, e.g. a circular dependency between a function and the API routing to it."""
    import json

    from cfnlint.api import ManualArgs, lint

    from scripts.localstack.provision import _parameter_values, _stage_local_code, _translate

    template = yaml_parse((ROOT / "template.yaml").read_text())
    _stage_local_code(template, ROOT)
    cloudformation = _translate(template, _parameter_values(template, {}), "us-east-1")
    errors = [f"{m.rule.id} {m.message}" for m in lint(json.dumps(cloudformation),
                                                        config=ManualArgs(regions=["us-east-1"]))
              if m.rule.id.startswith("E")]
    assert errors == []
