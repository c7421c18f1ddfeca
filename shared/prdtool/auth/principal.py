"""The authenticated caller, as verified by the authorizer and handed to every handler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Principal:
    username: str
    jti: str
    origin_jti: str
    expires_at: int  # epoch seconds of the access token's expiry
    groups: tuple[str, ...] = ()
    is_admin: bool = False

    def to_context(self) -> dict[str, str]:
        """Authorizer context: flat strings, the only shape both API Gateway APIs accept."""
        return {
            "username": self.username,
            "jti": self.jti,
            "origin_jti": self.origin_jti,
            "expires_at": str(self.expires_at),
            "groups": ",".join(self.groups),
            "is_admin": "true" if self.is_admin else "false",
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
        )
