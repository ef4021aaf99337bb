"""Server URLs: ``grpc://host[:port][?option=value&...]``.

The same form the other Frequenz clients accept, so one configuration value works for
all of them. Options (booleans are ``true/false``, ``on/off`` or ``1/0``):

* ``ssl``: TLS on (default) or off.
* ``ssl_root_certificates_path``, ``ssl_private_key_path``, ``ssl_certificate_chain_path``:
  PEM files for TLS (only with TLS on).
* ``keep_alive``: HTTP/2 keepalive pings on (default) or off; they detect a dead peer on
  a quiet stream.
* ``keep_alive_interval_s`` (default 60), ``keep_alive_timeout_s`` (default 20): seconds
  (only with keepalive on).

Example:
    >>> parse_server_url("grpc://127.0.0.1:50051?ssl=false").port
    50051
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_PORT", "ServerUrl", "parse_server_url"]

DEFAULT_PORT: Final = 443
_TRUE: Final = frozenset({"true", "on", "1"})
_FALSE: Final = frozenset({"false", "off", "0"})
_TLS_PATHS: Final = (
    "ssl_root_certificates_path",
    "ssl_private_key_path",
    "ssl_certificate_chain_path",
)
_KEEPALIVE_TIMES: Final = ("keep_alive_interval_s", "keep_alive_timeout_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerUrl:
    """A parsed server URL."""

    host: str
    port: int
    ssl: bool = True
    ssl_root_certificates_path: Path | None = None
    ssl_private_key_path: Path | None = None
    ssl_certificate_chain_path: Path | None = None
    keep_alive: bool = True
    keep_alive_interval_s: float = 60.0
    keep_alive_timeout_s: float = 20.0


def parse_server_url(url: str) -> ServerUrl:
    """Parse `url`, raising `ValueError` that names the part that is wrong."""
    if not isinstance(url, str):
        raise TypeError(f"server_url must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme != "grpc":
        raise ValueError(f"server_url scheme must be 'grpc', got {parts.scheme!r} in {url!r}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"server_url must not have a path or fragment, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"server_url has no host: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"server_url port is not a number in 1..65535: {url!r}") from None
    if port == 0:
        raise ValueError(f"server_url port is not a number in 1..65535: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    ssl = _flag(options.pop("ssl", None), "ssl", url, default=True)
    keep_alive = _flag(options.pop("keep_alive", None), "keep_alive", url, default=True)
    paths = {name: options.pop(name, None) for name in _TLS_PATHS}
    times = {name: options.pop(name, None) for name in _KEEPALIVE_TIMES}
    if options:
        raise ValueError(f"server_url has unknown options {sorted(options)} in {url!r}")
    if not ssl and (given := [n for n, v in paths.items() if v is not None]):
        raise ValueError(f"server_url sets {given} but ssl is off: {url!r}")
    if not keep_alive and (given := [n for n, v in times.items() if v is not None]):
        raise ValueError(f"server_url sets {given} but keep_alive is off: {url!r}")
    interval, timeout = (times[name] for name in _KEEPALIVE_TIMES)
    roots, key, chain = (paths[name] for name in _TLS_PATHS)
    return ServerUrl(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        ssl=ssl,
        ssl_root_certificates_path=Path(roots) if roots else None,
        ssl_private_key_path=Path(key) if key else None,
        ssl_certificate_chain_path=Path(chain) if chain else None,
        keep_alive=keep_alive,
        keep_alive_interval_s=_seconds(interval, "keep_alive_interval_s", url, 60.0),
        keep_alive_timeout_s=_seconds(timeout, "keep_alive_timeout_s", url, 20.0),
    )


def _flag(value: str | None, name: str, url: str, *, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"server_url option {name} must be true or false, got {value!r} in {url!r}")


def _seconds(value: str | None, name: str, url: str, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"server_url option {name} must be seconds > 0, got {value!r} in {url!r}")
    return seconds
