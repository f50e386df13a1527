"""Access control with API keys, off by default.

Prediction routes of every protocol need one of `API_KEYS` (or a line of `API_KEYS_FILE`)
once any is set; management routes need one of `ADMIN_API_KEYS` and are closed while none
is set. A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are
kept in memory only as SHA-256 digests and compared with `hmac.compare_digest` against
every known digest, so the time taken does not tell how much of a key was right.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.errors import Forbidden, Unauthorized

__all__ = ["KeyRing", "presented_key", "require_admin_key", "require_api_key"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The prediction and admin keys, hashed.

    Args:
        api_keys: Keys that may call the prediction routes; empty turns access control off.
        admin_keys: Keys that may call the management routes (and the prediction routes).
    """

    def __init__(self, api_keys: Iterable[str], admin_keys: Iterable[str]) -> None:
        self._admin = [_digest(key) for key in admin_keys if key]
        self._api = [_digest(key) for key in api_keys if key] + self._admin
        self.enabled = bool([key for key in api_keys if key])

    @staticmethod
    def _known(key: str, digests: list[bytes]) -> bool:
        digest = _digest(key)
        found = False
        for known in digests:  # no early exit: every comparison is made
            found |= hmac.compare_digest(digest, known)
        return found

    def may_predict(self, key: str | None) -> bool:
        """Whether `key` may call the prediction routes (always, when access control is off)."""
        return not self.enabled or (key is not None and self._known(key, self._api))

    def is_admin(self, key: str | None) -> bool:
        """Whether `key` is an admin key."""
        return key is not None and bool(self._admin) and self._known(key, self._admin)

    @property
    def admin_enabled(self) -> bool:
        """Whether any admin key is set (management routes are closed otherwise)."""
        return bool(self._admin)


def presented_key(request: Request) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key`, else None."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


async def require_api_key(request: Request) -> None:
    """Dependency of the prediction routes.

    Raises:
        Unauthorized: Access control is on and no known key was sent (401).
    """
    keys: KeyRing | None = getattr(request.state, "keys", None)
    if keys is not None and not keys.may_predict(presented_key(request)):
        raise Unauthorized("send an API key: Authorization: Bearer <key>, or X-API-Key: <key>")


BEARER = HTTPBearer(auto_error=False, description="an admin key as `Authorization: Bearer <key>`")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="an admin key as `X-API-Key`")


async def require_admin_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    header: Annotated[str | None, Depends(API_KEY_HEADER)],
) -> None:
    """Dependency of the management routes (declared in the OpenAPI schema as its security).

    Raises:
        Forbidden: No admin key is configured, or the key sent is not one (403).
        Unauthorized: No key, or an unknown one (401).
    """
    keys: KeyRing | None = getattr(request.state, "keys", None)
    if keys is None or not keys.admin_enabled:
        raise Forbidden("management is disabled; set ADMIN_API_KEYS to enable it")
    key = bearer.credentials if bearer is not None else header
    if keys.is_admin(key):
        return
    if key is not None and keys.may_predict(key) and keys.enabled:
        raise Forbidden("this key may predict but not manage models; use an admin key")
    raise Unauthorized("send an admin key: Authorization: Bearer <key>, or X-API-Key: <key>")
