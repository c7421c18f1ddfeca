"""The authenticated caller, as verified by the authorizer and handed to every handler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PLAN_GROUP_PREFIX = "plan-"  # an identity-provider group "plan-pro" puts its members on plan "pro"


@dataclass(frozen=True)
class Principal:
    username: str
    jti: str
    origin_jti: str
    expires_at: int  # epoch seconds of the credential's expiry (0: none, for API keys without one)
    groups: tuple[str, ...] = ()
    is_admin: bool = False
    issued_at: int = 0  # epoch seconds (a user-wide revocation refuses tokens issued before it)
    # Set when the caller used an API key: its id, and the PRDs it is limited to (empty: all).
    api_key_id: str = ""
    prd_scope: tuple[str, ...] = ()
    plan: str = ""  # rate-limit plan ("" = the default plan)

    @property
    def via_api_key(self) -> bool:
        return bool(self.api_key_id)

    def may_reach(self, prd_id: str) -> bool:
        """False when an API key's scope leaves this PRD out."""
        return not self.prd_scope or prd_id in self.prd_scope

    def to_context(self) -> dict[str, str]:
        """Authorizer context: flat strings, the only shape both API Gateway APIs accept."""
        return {
            "username": self.username,
            "jti": self.jti,
            "origin_jti": self.origin_jti,
            "expires_at": str(self.expires_at),
            "issued_at": str(self.issued_at),
            "groups": ",".join(self.groups),
            "is_admin": "true" if self.is_admin else "false",
            "api_key_id": self.api_key_id,
            "prd_scope": ",".join(self.prd_scope),
            "plan": self.plan,
        }

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Principal | None:
        """Rebuild the principal from an authorizer context; None if it carries no user."""
        username = context.get("username")
        if not username:
            return None
        groups = tuple(g for g in str(context.get("groups", "")).split(",") if g)
        return cls(
            username=str(username),
            jti=str(context.get("jti", "")),
            origin_jti=str(context.get("origin_jti", "")),
            expires_at=int(context.get("expires_at", 0) or 0),
            groups=groups,
            is_admin=str(context.get("is_admin", "false")).lower() == "true",
            issued_at=int(context.get("issued_at", 0) or 0),
            api_key_id=str(context.get("api_key_id", "") or ""),
            prd_scope=tuple(p for p in str(context.get("prd_scope", "") or "").split(",") if p),
            plan=str(context.get("plan", "") or ""),
        )


def plan_of(groups: tuple[str, ...]) -> str:
    """The rate-limit plan named by a ``plan-<name>`` group ("" when none)."""
    return next((g[len(PLAN_GROUP_PREFIX):] for g in groups if g.startswith(PLAN_GROUP_PREFIX)), "")
