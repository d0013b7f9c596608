"""Where a request went, under the bridge's mount: the provider and the provider's own path.

A bridge request's path is `<mount>/<provider>/<route>` (behaviour §3), the mount being
`/api/v2/aibridge` or coder's newer `/api/v2/ai-gateway` (`BRIDGE_ROOT_PATHS`). A cassette
recorded against a provider directly (a public vcrpy cassette of api.openai.com) has only the
route, so requests are compared by route, and by provider when both sides name one.
"""

from __future__ import annotations

from .._bridge_paths import BRIDGE_ROOT_PATHS

__all__ = ["split_bridge_path"]


def split_bridge_path(path: str) -> tuple[str | None, str]:
    """`(provider, route)` of a path under a bridge mount; `(None, path)` for any other."""
    for mount in BRIDGE_ROOT_PATHS:
        at = path.find(mount + "/")
        # A server may put a root path before the mount (uvicorn's `--root-path`).
        if at >= 0:
            provider, _, route = path[at + len(mount) + 1 :].partition("/")
            return provider, "/" + route
    return None, path
