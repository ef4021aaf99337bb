"""The one error the storage and query layers raise for a bad request.

Everything below the gRPC layer is plain Python, so it cannot abort an RPC itself. It
raises `ApiError` instead, carrying the gRPC status name and a message that names the
offending field; the gRPC layer translates it in one place. Programming errors (a naive
``now``, a closed store) stay ordinary Python exceptions.
"""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A request the server refuses, with the gRPC status to answer it with.

    Example:
        >>> raise ApiError("NOT_FOUND", "dispatch 7 not found in microgrid 3")
        Traceback (most recent call last):
        ...
        trio_dispatch.server._errors.ApiError: NOT_FOUND: dispatch 7 not found in microgrid 3

    Attributes:
        status: the gRPC status name, e.g. ``"INVALID_ARGUMENT"`` or ``"NOT_FOUND"``.
        message: what is wrong, naming the field and the value.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.status!r}, {self.message!r})"
