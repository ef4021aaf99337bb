"""Request authentication as the Frequenz APIs expect it.

Every call carries the API key as metadata ``key``. A client that also holds a signing
secret adds ``ts`` (Unix seconds), ``nonce`` (16 random bytes, URL-safe base64) and
``sig``: the HMAC-SHA256, under the secret, of key, ts, nonce (as sent) and the RPC
method's short name, in URL-safe base64 without padding. The server recomputes it, so a
stolen key alone cannot be used, and a captured request cannot be replayed (ts and nonce).

Both ends of that exchange live here so they cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["auth_metadata", "method_short_name", "signature"]


def method_short_name(path: str) -> str:
    """``/pkg.Service/Method`` -> ``Method``: the part of the path that is signed."""
    return path.rsplit("/", 1)[-1]


def signature(secret: bytes, *, key: str, ts: str, nonce: str, method: str) -> str:
    """The ``sig`` value for these fields."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (key, ts, nonce, method):
        mac.update(part.encode())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def auth_metadata(
    key: str, sign_secret: bytes | None, method_path: str, *, now_s: int
) -> dict[str, str]:
    """The metadata to send with one call to `method_path` at Unix time `now_s`."""
    if sign_secret is None:
        return {"key": key}
    ts = str(now_s)
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()
    sig = signature(sign_secret, key=key, ts=ts, nonce=nonce, method=method_short_name(method_path))
    return {"key": key, "ts": ts, "nonce": nonce, "sig": sig}
