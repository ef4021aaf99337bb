"""The error hierarchy, sorted by whose fault it is.

* `DispatchApiError`: the server understood the request and said no (a gRPC status).
* `DispatchConnectionError`: the network or the stream failed; the original error is the
  ``__cause__``.
* `InvalidDispatchError`: the server sent a dispatch this library cannot represent.
* Bad arguments from the caller are plain `ValueError` / `TypeError`, raised before
  anything is sent.

Catch `DispatchError` to handle all of the first three at once.
"""

from __future__ import annotations

__all__ = ["DispatchApiError", "DispatchConnectionError", "DispatchError", "InvalidDispatchError"]


class DispatchError(Exception):
    """Base class of every error this library raises on its own account."""


class DispatchApiError(DispatchError):
    """The server refused a request.

    Attributes:
        status: the gRPC status name, e.g. ``"NOT_FOUND"``.
        message: the server's explanation.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class DispatchConnectionError(DispatchError):
    """The connection to the server failed or could not be made."""


class InvalidDispatchError(DispatchError):
    """A dispatch received from the server is not valid.

    The dispatcher skips such a dispatch with one warning and counts it; direct client
    calls raise it.

    Attributes:
        dispatch_id: the id the server gave the dispatch (0 if it had none).
        reason: what is wrong with it.
    """

    def __init__(self, dispatch_id: int, reason: str) -> None:
        super().__init__(f"invalid dispatch {dispatch_id} from server: {reason}")
        self.dispatch_id = dispatch_id
        self.reason = reason
