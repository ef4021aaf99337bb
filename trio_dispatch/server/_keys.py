"""Who may call the server: API keys, their microgrids, and request signatures.

A `KeyRing` maps each API key to the microgrid ids it may use (or all of them) and,
optionally, a signing secret. Checks, in order, each failing with the gRPC status the
public API uses:

1. ``key`` metadata missing or unknown: ``UNAUTHENTICATED``. Keys are looked up by their
   SHA-256 digest and then compared with `hmac.compare_digest`, so the time a check
   takes tells nothing about how much of a guessed key was right.
2. The key has a signing secret: ``ts``, ``nonce`` and ``sig`` must be present, ``ts``
   within `MAX_CLOCK_SKEW` of the server's clock, the nonce not seen before within that
   window, and ``sig`` equal to the HMAC the client should have computed
   (`trio_dispatch._auth`). Otherwise ``UNAUTHENTICATED``.
3. The requested microgrid is not in the key's set: ``PERMISSION_DENIED``.

The keys file is TOML::

    [[keys]]
    key = "ops-team"                 # every microgrid

    [[keys]]
    key = "site-7"
    microgrids = [7]
    sign_secret = "s3cret"           # requests must be signed
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, final

from .._auth import method_short_name, signature
from ._errors import ApiError

__all__ = ["MAX_CLOCK_SKEW", "ApiKey", "KeyRing"]

MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far a signed request's ``ts`` may be from the server's clock."""


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """One API key and what it grants."""

    key: str = field(repr=False)
    microgrids: frozenset[int] | None = None
    """The microgrid ids this key may use; `None` for every microgrid."""
    sign_secret: str | None = field(default=None, repr=False)
    """When set, every request with this key must be signed with it."""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key must be a non-empty str")
        if self.sign_secret is not None and (
            not isinstance(self.sign_secret, str) or not self.sign_secret
        ):
            raise ValueError("sign_secret must be a non-empty str or None")
        if self.microgrids is not None:
            ids = frozenset(self.microgrids)
            for i in ids:
                if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                    raise ValueError(f"microgrids must be ids >= 0, got {i!r}")
            object.__setattr__(self, "microgrids", ids)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@final
class KeyRing:
    """The configured keys, and the replay memory of signed requests."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys: dict[bytes, ApiKey] = {}
        for api_key in keys:
            if not isinstance(api_key, ApiKey):
                raise TypeError(f"keys must contain ApiKey items, got {api_key!r}")
            self._keys[_digest(api_key.key)] = api_key
        self._nonces: dict[str, datetime] = {}

    @classmethod
    def of(cls, *keys: str) -> KeyRing:
        """Keys that grant every microgrid, without signing."""
        return cls(ApiKey(key=k) for k in keys)

    @classmethod
    def from_toml(cls, path: str | Path) -> KeyRing:
        """Read a keys file (see the module documentation for its form)."""
        with open(path, "rb") as f:
            document = tomllib.load(f)
        entries = document.get("keys", [])
        if not isinstance(entries, list):
            raise ValueError(f"{path}: 'keys' must be an array of tables")
        keys: list[ApiKey] = []
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: keys[{n}] must be a table")
            unknown = set(entry) - {"key", "microgrids", "sign_secret"}
            if unknown:
                raise ValueError(f"{path}: keys[{n}] has unknown fields {sorted(unknown)}")
            microgrids = entry.get("microgrids")
            if microgrids is not None and not isinstance(microgrids, list):
                raise ValueError(
                    f"{path}: keys[{n}]: microgrids must be a list of ids, got {microgrids!r}"
                )
            try:
                keys.append(
                    ApiKey(
                        key=entry.get("key", ""),
                        microgrids=None if microgrids is None else frozenset(microgrids),
                        sign_secret=entry.get("sign_secret"),
                    )
                )
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}: keys[{n}]: {exc}") from None
        return cls(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, metadata: Mapping[str, str], method_path: str, now: datetime) -> ApiKey:
        """Return the caller's key, or raise `ApiError` ``UNAUTHENTICATED``."""
        given = metadata.get("key")
        if not given:
            raise ApiError("UNAUTHENTICATED", "the request has no 'key' metadata")
        api_key = self._keys.get(_digest(given))
        if api_key is None or not hmac.compare_digest(api_key.key.encode(), given.encode()):
            raise ApiError("UNAUTHENTICATED", "the API key is not valid")
        if api_key.sign_secret is not None:
            self._check_signature(api_key, metadata, method_path, now)
        return api_key

    def _check_signature(
        self, api_key: ApiKey, metadata: Mapping[str, str], method_path: str, now: datetime
    ) -> None:
        assert api_key.sign_secret is not None
        ts, nonce, sig = (metadata.get(name) for name in ("ts", "nonce", "sig"))
        if not ts or not nonce or not sig:
            raise ApiError("UNAUTHENTICATED", "this key requires signed requests (ts, nonce, sig)")
        try:
            sent = int(ts)
        except ValueError:
            raise ApiError("UNAUTHENTICATED", f"'ts' must be Unix seconds, got {ts!r}") from None
        skew = abs(now.timestamp() - sent)
        if skew > MAX_CLOCK_SKEW.total_seconds():
            raise ApiError(
                "UNAUTHENTICATED",
                f"'ts' is {skew:.0f} s away from the server's clock (at most "
                f"{MAX_CLOCK_SKEW.total_seconds():.0f} s allowed)",
            )
        expected = signature(
            api_key.sign_secret.encode(),
            key=api_key.key,
            ts=ts,
            nonce=nonce,
            method=method_short_name(method_path),
        )
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise ApiError("UNAUTHENTICATED", "the request signature is not valid")
        self._forget_old_nonces(now)
        seen = f"{api_key.key}\0{nonce}"
        if seen in self._nonces:
            raise ApiError("UNAUTHENTICATED", "the request nonce was used before (replay)")
        self._nonces[seen] = now

    def _forget_old_nonces(self, now: datetime) -> None:
        # A nonce only needs remembering while its ts could still pass the skew check.
        horizon = now - 2 * MAX_CLOCK_SKEW
        if self._nonces and next(iter(self._nonces.values())) < horizon:
            self._nonces = {n: t for n, t in self._nonces.items() if t >= horizon}

    @staticmethod
    def authorize(api_key: ApiKey, microgrid_id: int) -> None:
        """Raise `ApiError` ``PERMISSION_DENIED`` unless the key grants the microgrid."""
        if api_key.microgrids is not None and microgrid_id not in api_key.microgrids:
            raise ApiError(
                "PERMISSION_DENIED",
                f"the API key does not grant access to microgrid {microgrid_id}",
            )
