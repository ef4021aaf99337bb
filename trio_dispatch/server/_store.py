"""Durable dispatch storage for the embedded server: SQLite on disk, an index in memory.

The embedded server must keep what it acknowledged, even through a crash or power loss,
and must answer list and stream requests quickly. So every dispatch lives twice:

* **On disk**, one SQLite row per dispatch holding the serialized wire message
  (`pb.Dispatch`, written with `_convert.dispatch_to_proto`). The database runs in WAL
  mode with ``synchronous=FULL``, and every mutating call commits before it returns:
  once a call has returned, its change survives ``SIGKILL`` and power loss. Dispatch ids
  come from an ``AUTOINCREMENT`` key, so they are unique across all microgrids and never
  reused, not even after the newest dispatch is deleted.
* **In memory**, a dict per microgrid mapping id to the model `Dispatch`, loaded once at
  open and updated after each commit. All reads are served from it. The in-memory value
  is always the one decoded from the stored bytes, so what a client sees before a restart
  is exactly what it sees after one.

Calls are synchronous: SQLite runs on the caller's thread and a commit with its fsync
takes a few milliseconds. That is deliberate: the server calls the store from its event
loop, and tests drive server and dispatcher under one fake clock, which needs everything
in one thread. (A worker thread would buy nothing at this scale and break that.)

One process owns a database file: a file store takes SQLite's exclusive lock for as long
as it is open, because a second store on the same file would serve a stale index. A
second open fails at once with `StoreError`.

Schema: ``PRAGMA user_version`` holds the schema version (`SCHEMA_VERSION`). Opening a
database runs the migrations from its version up to ours in one transaction, and refuses
a database written by a newer release. Rows that cannot be decoded any more are skipped
with a warning (and counted in `DispatchStore.skipped_rows`) instead of making the whole
store unusable.

``now`` arguments must be timezone-aware datetimes (they are converted to UTC); the
model keeps times to the microsecond.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Final, Self

from frequenz.api.dispatch.v1 import dispatch_pb2 as pb2

from .. import _validate
from .._convert import (
    dispatch_from_pb2,
    dispatch_to_proto,
    payload_from_proto,
    rule_from_proto,
    target_from_proto,
)
from .._model import Dispatch
from .._proto.frequenz.api.dispatch import v1 as pb
from ._errors import ApiError
from ._query import Page, page, query_from_proto
from ._update import apply_update, end_time_of

__all__ = ["SCHEMA_VERSION", "DispatchStore", "StoreError"]

_logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""The schema version this release writes (kept in ``PRAGMA user_version``)."""

_LOCK_TIMEOUT_S: Final = 0.25
_UINT64: Final = 2**64


class StoreError(Exception):
    """The database cannot be used: written by a newer release, or open elsewhere."""


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE dispatches ("
        " dispatch_id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " microgrid_id INTEGER NOT NULL,"  # uint64 stored as its signed 64-bit twin
        " body BLOB NOT NULL"  # a serialized frequenz.api.dispatch.v1.Dispatch
        ")"
    )
    conn.execute("CREATE INDEX dispatches_by_microgrid ON dispatches (microgrid_id)")


_MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_create_v1,)
"""``_MIGRATIONS[v]`` takes a database from schema version v to v + 1."""


def _to_sql(microgrid_id: int) -> int:
    """Fit a uint64 into SQLite's signed 64-bit integers (two's complement)."""
    return microgrid_id - _UINT64 if microgrid_id >= 2**63 else microgrid_id


def _from_sql(value: int) -> int:
    return value + _UINT64 if value < 0 else value


def _decode(dispatch_id: int, body: bytes) -> Dispatch:
    """The model dispatch of a stored row; the row's id is authoritative."""
    msg = pb2.Dispatch.FromString(body)
    if msg.HasField("metadata"):
        msg.metadata.dispatch_id = dispatch_id
    return dispatch_from_pb2(msg)


class DispatchStore:
    """The dispatches of every microgrid, stored durably and indexed in memory.

    Open one with `DispatchStore.open`; every method runs synchronously on the calling
    thread (see the module notes for why), and every mutating method has committed to
    disk when it returns.

    Example:
        >>> from datetime import datetime, UTC
        >>> now = datetime(2030, 1, 1, tzinfo=UTC)
        >>> with DispatchStore.open(":memory:") as store:
        ...     data = pb.DispatchData(type="PEAK_SHAVING", start_time=now, is_active=True)
        ...     created = store.create(3, data, start_immediately=False, now=now)
        ...     store.get(3, created.id) == created
        True
    """

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        """Wrap an opened, migrated connection; use `open` instead."""
        self._conn: sqlite3.Connection | None = conn
        self._name = name
        self._by_microgrid: dict[int, dict[int, Dispatch]] = {}
        self._bodies: dict[int, bytes] = {}  # dispatch id -> serialized pb.Dispatch
        self._skipped = 0
        self._load()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DispatchStore:
        """Open (creating or migrating as needed) the store at `path`.

        Args:
            path: the database file, or ``":memory:"`` for a throwaway store.

        Raises:
            StoreError: the database was written by a newer release, or another store
                has it open.
            sqlite3.DatabaseError: the file is not a SQLite database.
        """
        name = os.fspath(path)
        conn = sqlite3.connect(name, timeout=_LOCK_TIMEOUT_S, isolation_level=None)
        try:
            if name not in {":memory:", ""}:
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if mode != "wal":  # e.g. a file system without the locks WAL needs
                    _logger.warning(
                        "dispatch store %r runs in %s journal mode, not WAL", name, mode
                    )
            conn.execute("PRAGMA synchronous=FULL")
            cls._migrate(conn, name)
            return cls(conn, name)
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc):
                raise StoreError(f"dispatch store {name!r} is open in another store") from exc
            raise
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _migrate(conn: sqlite3.Connection, name: str) -> None:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"dispatch store {name!r} has schema version {version}, newer than the "
                    f"version {SCHEMA_VERSION} this release understands; upgrade trio-dispatch"
                )
            for step in _MIGRATIONS[version:SCHEMA_VERSION]:
                step(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _load(self) -> None:
        rows = self._db().execute(
            "SELECT microgrid_id, dispatch_id, body FROM dispatches ORDER BY dispatch_id"
        )
        for microgrid_sql, dispatch_id, body in rows:
            microgrid_id = _from_sql(microgrid_sql)
            try:
                dispatch = _decode(dispatch_id, body)
            except Exception as exc:  # any garbage: skip the row, keep the store usable
                self._skipped += 1
                _logger.warning(
                    "skipping dispatch %d of microgrid %d in %r: cannot decode it: %s",
                    dispatch_id,
                    microgrid_id,
                    self._name,
                    exc,
                )
                continue
            self._by_microgrid.setdefault(microgrid_id, {})[dispatch_id] = dispatch
            self._bodies[dispatch_id] = body

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (idempotent); every later call raises `RuntimeError`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def skipped_rows(self) -> int:
        """How many stored rows could not be decoded at open and were skipped."""
        return self._skipped

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the dispatch store is closed")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block in a write transaction that has committed when the block ends."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reads --------------------------------------------------------------------------------

    def get(self, microgrid_id: int, dispatch_id: int) -> Dispatch:
        """The dispatch `dispatch_id` of microgrid `microgrid_id`.

        Raises:
            ApiError: ``NOT_FOUND``, also when the id belongs to another microgrid.
        """
        self._db()
        found = self._by_microgrid.get(microgrid_id, {}).get(dispatch_id)
        if found is None:
            raise ApiError(
                "NOT_FOUND", f"dispatch {dispatch_id} not found in microgrid {microgrid_id}"
            )
        return found

    def encoded(self, dispatch_id: int) -> bytes:
        """The stored wire form (a serialized ``Dispatch`` message) of a held dispatch.

        Serving these bytes as they are spares re-encoding every dispatch of every
        listing and of every stream message (betterproto2 encodes in pure Python).
        """
        return self._bodies[dispatch_id]

    def dispatches(self, microgrid_id: int) -> Mapping[int, Dispatch]:
        """A read-only snapshot of a microgrid's dispatches, by id (empty if none)."""
        self._db()
        return MappingProxyType(dict(self._by_microgrid.get(microgrid_id, {})))

    def list(self, microgrid_id: int, request: pb.ListMicrogridDispatchesRequest) -> Page:
        """One page of a microgrid's dispatches, as ListMicrogridDispatches answers.

        The request's own ``microgrid_id`` is ignored in favour of the argument.

        Raises:
            ApiError: ``INVALID_ARGUMENT`` for a bad filter, page size or page token.
        """
        self._db()
        query, page_size, page_token = query_from_proto(request)
        dispatches = self._by_microgrid.get(microgrid_id, {}).values()
        return page(query, dispatches, page_size=page_size, page_token=page_token)

    # -- writes -------------------------------------------------------------------------------

    def create(
        self,
        microgrid_id: int,
        data: pb.DispatchData | None,
        *,
        start_immediately: bool,
        now: datetime,
    ) -> Dispatch:
        """Validate, store and return a new dispatch with a fresh id.

        Args:
            microgrid_id: the microgrid it belongs to.
            data: what the client asked for.
            start_immediately: start at `now`, ignoring ``data.start_time``.
            now: the server time; the create and update time of the new dispatch.

        Raises:
            ApiError: ``INVALID_ARGUMENT`` naming the field: missing data or start time,
                a start time before `now`, or anything the model refuses.
        """
        _validate.integer("microgrid_id", microgrid_id, 0, _UINT64 - 1)
        now = _validate.utc_datetime("now", now)
        candidate = self._new_dispatch(data, start_immediately=start_immediately, now=now)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO dispatches (microgrid_id, body) VALUES (?, x'')",
                (_to_sql(microgrid_id),),
            )
            dispatch_id = cursor.lastrowid
            assert dispatch_id is not None
            body = bytes(dispatch_to_proto(replace(candidate, id=dispatch_id)))
            conn.execute(
                "UPDATE dispatches SET body = ? WHERE dispatch_id = ?", (body, dispatch_id)
            )
            stored = _decode(dispatch_id, body)
        self._by_microgrid.setdefault(microgrid_id, {})[dispatch_id] = stored
        self._bodies[dispatch_id] = body
        return stored

    @staticmethod
    def _new_dispatch(
        data: pb.DispatchData | None, *, start_immediately: bool, now: datetime
    ) -> Dispatch:
        if data is None:
            raise ApiError("INVALID_ARGUMENT", "dispatch_data is required")
        if start_immediately:
            start = now
        elif data.start_time is None:
            raise ApiError(
                "INVALID_ARGUMENT", "start_time is required unless start_immediately is set"
            )
        elif data.start_time < now:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"start_time {data.start_time.isoformat()} is in the past "
                f"(now is {now.isoformat()})",
            )
        else:
            start = data.start_time
        try:
            dispatch = Dispatch(
                id=0,
                type=data.type,
                start_time=start,
                duration=None if data.duration is None else timedelta(seconds=data.duration),
                target=target_from_proto(data.target),
                active=data.is_active,
                dry_run=data.is_dry_run,
                payload=payload_from_proto(data.payload),
                recurrence=rule_from_proto(data.recurrence),
                create_time=now,
                update_time=now,
            )
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_ARGUMENT", str(exc)) from exc
        return replace(dispatch, end_time=end_time_of(dispatch))

    def update(
        self, microgrid_id: int, request: pb.UpdateMicrogridDispatchRequest, *, now: datetime
    ) -> Dispatch:
        """Apply an update (see `_update` for the field mask paths) and return the result.

        The dispatch is ``request.dispatch_id`` in the microgrid given as argument.

        Raises:
            ApiError: ``NOT_FOUND`` for an unknown dispatch; ``INVALID_ARGUMENT`` for a
                bad mask or value.
        """
        now = _validate.utc_datetime("now", now)
        current = self.get(microgrid_id, request.dispatch_id)
        updated = apply_update(current, request, now=now)
        with self._transaction() as conn:
            body = bytes(dispatch_to_proto(updated))
            conn.execute("UPDATE dispatches SET body = ? WHERE dispatch_id = ?", (body, updated.id))
            stored = _decode(updated.id, body)
        self._by_microgrid[microgrid_id][updated.id] = stored
        self._bodies[updated.id] = body
        return stored

    def delete(self, microgrid_id: int, dispatch_id: int) -> Dispatch:
        """Delete a dispatch and return it as it was.

        Raises:
            ApiError: ``NOT_FOUND``, also when the id belongs to another microgrid.
        """
        deleted = self.get(microgrid_id, dispatch_id)
        with self._transaction() as conn:
            conn.execute("DELETE FROM dispatches WHERE dispatch_id = ?", (dispatch_id,))
        grid = self._by_microgrid[microgrid_id]
        del grid[dispatch_id]
        del self._bodies[dispatch_id]
        if not grid:
            del self._by_microgrid[microgrid_id]
        return deleted
