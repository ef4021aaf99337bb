"""Page tokens: where the next page of a list answer starts, as an opaque string.

Keyset pagination needs the position of the last item a client saw, not an offset, so
that inserts and deletes between pages shift nothing. The token carries that position
and enough context to refuse it when it is replayed against another question.

Format: URL-safe base64 (without padding) of a compact JSON object with a format
version, the sort order it was made for (``"<FIELD>/<ORDER>"``), a digest of the
filter, the last item's sort key (integer microseconds) and id, and the page size. The
page size travels along because the API makes page size and token alternatives (a
``oneof``): follow-up requests carry only the token and should get pages of the size
the first request asked for. Tokens are not signed: a forged one can only point the
reader at another position of a list it may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Final, TypeGuard, final

from ._errors import ApiError

__all__ = ["Cursor", "decode_token", "encode_token"]

_VERSION: Final = 1


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class Cursor:
    """The content of a page token.

    Attributes:
        order: the sort order it was made for, e.g. ``"CREATE_TIME/DESCENDING"``.
        digest: a digest of the filter it was made for.
        key: the sort key of the last item returned, in microseconds.
        last_id: the id of the last item returned.
        page_size: the page size in force.
    """

    order: str
    digest: str
    key: int
    last_id: int
    page_size: int


def encode_token(cursor: Cursor) -> str:
    """Turn a cursor into an opaque token string.

    Example:
        >>> c = Cursor(order="START_TIME/ASCENDING", digest="ab", key=5, last_id=7, page_size=9)
        >>> decode_token(encode_token(c), order=c.order, digest="ab", max_page_size=10) == c
        True
    """
    body = {
        "v": _VERSION,
        "order": cursor.order,
        "filter": cursor.digest,
        "key": cursor.key,
        "id": cursor.last_id,
        "size": cursor.page_size,
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *, order: str, digest: str, max_page_size: int) -> Cursor:
    """Read a token, checking that it was made for this sort order and filter.

    Raises:
        ApiError: ``INVALID_ARGUMENT`` naming ``pagination_params.page_token``, for a
            token that is malformed or was made for another order or filter.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _invalid("it is not a token this server issued") from None
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise _invalid("it is not a token this server issued")
    key, last_id, size = body.get("key"), body.get("id"), body.get("size")
    if not (_is_int(key) and _is_int(last_id) and _is_int(size)) or not (0 < size <= max_page_size):
        raise _invalid("it is not a token this server issued")
    if body.get("order") != order:
        raise _invalid("it was issued for another sort order")
    if body.get("filter") != digest:
        raise _invalid("it was issued for another filter")
    return Cursor(order=order, digest=digest, key=key, last_id=last_id, page_size=size)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(reason: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", f"pagination_params.page_token is not valid: {reason}")
