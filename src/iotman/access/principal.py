"""Who is calling: an anonymous device or the holder of a bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from iotman.core.scopes import grants

__all__ = ["ANONYMOUS", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "anonymous" | "token" | "server" (a server-admin token, bound to no workspace) | "worker"
    workspace_id: int | None = None
    name: str | None = None
    scopes: tuple[str, ...] = ()
    token_id: int | None = None

    @property
    def auth_method(self) -> str:
        if self.kind == "worker":  # a function running as its worker client
            return "function"
        return "none" if self.kind == "anonymous" else "oauth2"

    @property
    def server_admin(self) -> bool:
        return self.kind == "server"

    @property
    def label(self) -> str:
        if self.kind == "worker":
            return f"worker:{self.name}"
        return "anonymous" if self.kind == "anonymous" else f"token:{self.name}"

    @property
    def identity(self) -> str:
        """Stable and unique per credential (token names are labels and may repeat)."""
        if self.kind == "worker":
            return f"worker#{self.workspace_id}:{self.name}"
        return "anonymous" if self.kind == "anonymous" else f"{self.kind}#{self.token_id}"

    def has_scope(self, required: str) -> bool:
        return grants(self.scopes, required)


ANONYMOUS = Principal("anonymous")
