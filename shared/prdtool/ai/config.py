"""Which provider drafts: chosen by ``AI_PROVIDER`` (docs/ai.md), one instance per container."""

from __future__ import annotations

from functools import lru_cache

from ..settings import Settings, get_settings
from .providers import Provider

PROVIDERS = ("bedrock", "openai", "offline")


def provider() -> Provider:
    return _provider(get_settings())


@lru_cache(maxsize=4)
def _provider(settings: Settings) -> Provider:
    kind = settings.ai_provider.strip().lower()
    timeout = float(min(120, settings.ai_job_seconds))
    if kind == "bedrock":
        from .providers import BedrockProvider

        return BedrockProvider(settings.ai_model_id, region=settings.region,
                               endpoint_url=settings.bedrock_endpoint_url or None, timeout=timeout)
    if kind in ("openai", "openai-compatible"):
        from .openai_compat import OpenAICompatibleProvider

        if not settings.ai_openai_base_url:
            raise ValueError("AI_PROVIDER=openai needs AI_OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1)")
        return OpenAICompatibleProvider(settings.ai_openai_base_url, settings.ai_model_id,
                                        api_key=settings.ai_openai_api_key or None, timeout=timeout)
    if kind == "offline":
        from .offline import OfflineProvider

        return OfflineProvider(chunk_delay=settings.ai_offline_chunk_ms / 1000)
    raise ValueError(f"AI_PROVIDER must be one of {', '.join(PROVIDERS)}, got {settings.ai_provider!r}")
