"""What ListMicrogridDispatches returns: filters, sort order and pagination.

The semantics live here, apart from storage and gRPC, so they can be tested exactly and
so the embedded server behaves like a real one (the reference library's fake did exact
matches only and no pagination, which hid client bugs).

Filters
-------

A dispatch is listed if it passes **every** filter that is set (AND across filters);
a filter holding a list passes if **any** item matches (OR within a filter):

* ``targets``: for some filter target, either the filter is a `TargetIds` and the
  dispatch's target is a `TargetIds` sharing at least one id with it, or the filter is a
  `TargetCategories` and the dispatch's target is a `TargetCategories` where some
  dispatch category matches some filter category. A filter category without subtype
  matches that category with any subtype (or none); one with a subtype matches exactly
  that category and subtype. Ids never match categories.
* ``active`` / ``dry_run``: equality with the dispatch's flag.
* ``recurring``: a dispatch is recurring if it has a rule whose frequency is not
  ``UNSPECIFIED``.
* ``start_time_interval``, ``end_time_interval``, ``update_time_interval``: half-open
  ``[from, to)``; a ``None`` bound is unbounded. The end time is the one the store
  computed (`Dispatch.end_time`); a dispatch without one runs without end and therefore
  lies in an interval only if the interval has no upper bound. A dispatch without an
  update time lies in no update-time interval.
* ``ids``: the dispatch id is one of them.
* ``queries``: a query of the form ``#<digits>`` matches the dispatch with that id; any
  other query matches if it is a case-insensitive substring of the dispatch type (so
  ``#abc`` looks for ``#abc`` in the type).

Order and pages
---------------

Items are sorted by the sort field (start, create or update time), then by id, both in
the sort order; ids are unique, so the order is total. Pages use *keyset* pagination:
the page token records the sort key and id of the last item returned, and the next page
holds the items strictly after that position. Inserting or deleting other dispatches
between pages therefore never skips or repeats an item that existed throughout. (An
item whose own sort key changes between pages, e.g. an update under update-time order,
moves and may be seen twice or not at all; no cursor can avoid that without snapshots.)

A token (see `_page_token`) also records the sort order, a digest of the filter and the
page size: using it with another filter or order is an ``INVALID_ARGUMENT``, and a
follow-up request that carries only the token (page size and token are a ``oneof`` in
the API) gets pages of the size the first request asked for.

Cost: each call filters and sorts the microgrid's dispatches, O(n log n): a few ms for
thousands, plenty for an embedded server.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias, final

import betterproto2

from .._convert import target_from_proto
from .._model import Dispatch
from .._proto.frequenz.api.common.v1alpha8 import types as pb_types
from .._proto.frequenz.api.dispatch import v1 as pb
from .._target import Target, TargetCategories, TargetCategory, TargetIds
from ._errors import ApiError
from ._page_token import Cursor, decode_token, encode_token

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Interval",
    "ListQuery",
    "Page",
    "SortField",
    "SortOrder",
    "matches",
    "page",
    "query_from_proto",
]

DEFAULT_PAGE_SIZE: Final = 100
"""Page size used when a request asks for none (page size 0)."""

MAX_PAGE_SIZE: Final = 1000
"""Largest page size a request may ask for."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_NO_TIME: Final = -(2**63)  # sorts before every real time (year 1 is about -6.2e16 µs)
_ID_QUERY: Final = re.compile(r"#([0-9]+)")

Interval: TypeAlias = tuple[datetime | None, datetime | None]
"""A half-open time interval ``[from, to)``; a ``None`` bound is unbounded."""


class SortField(enum.Enum):
    """Which time the listed dispatches are ordered by (the value is the model field)."""

    START_TIME = "start_time"
    CREATE_TIME = "create_time"
    UPDATE_TIME = "update_time"


class SortOrder(enum.Enum):
    """Whether the listed dispatches come oldest or newest first."""

    ASCENDING = "ASCENDING"
    DESCENDING = "DESCENDING"


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class ListQuery:
    """The filters and order of one list request; see the module notes for semantics.

    Unset filters (``None``, empty) let every dispatch through.

    Example:
        >>> q = ListQuery(active=True, queries=("peak",), sort_order=SortOrder.ASCENDING)
        >>> q.sort_field
        <SortField.CREATE_TIME: 'create_time'>
    """

    targets: tuple[Target, ...] = ()
    active: bool | None = None
    dry_run: bool | None = None
    recurring: bool | None = None
    start_time_interval: Interval | None = None
    end_time_interval: Interval | None = None
    update_time_interval: Interval | None = None
    ids: frozenset[int] = field(default_factory=frozenset)
    queries: tuple[str, ...] = ()
    sort_field: SortField = SortField.CREATE_TIME
    sort_order: SortOrder = SortOrder.DESCENDING


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """One page of a list answer.

    Attributes:
        items: the dispatches of this page, in sort order.
        next_page_token: pass it to get the next page; ``None`` on the last page.
        total_items: how many dispatches match the whole query (all pages).
    """

    items: list[Dispatch]
    next_page_token: str | None
    total_items: int


# -- filtering ----------------------------------------------------------------------------


def matches(query: ListQuery, dispatch: Dispatch) -> bool:
    """Whether `dispatch` passes every filter of `query` (the sort options are ignored).

    Example:
        >>> from datetime import datetime, UTC
        >>> d = Dispatch(id=4, type="EV_CHARGING", start_time=datetime(2030, 1, 1, tzinfo=UTC))
        >>> matches(ListQuery(queries=("charg", "#9")), d)
        True
        >>> matches(ListQuery(ids=frozenset({9})), d)
        False
    """
    if query.targets and not any(_target_matches(t, dispatch.target) for t in query.targets):
        return False
    if query.active is not None and dispatch.active != query.active:
        return False
    if query.dry_run is not None and dispatch.dry_run != query.dry_run:
        return False
    if query.recurring is not None:
        rule = dispatch.recurrence
        if (rule is not None and rule.is_recurring) != query.recurring:
            return False
    if query.ids and dispatch.id not in query.ids:
        return False
    if query.queries and not any(_text_matches(q, dispatch) for q in query.queries):
        return False
    if query.start_time_interval is not None and not _in_interval(
        dispatch.start_time, query.start_time_interval
    ):
        return False
    if query.end_time_interval is not None:
        if dispatch.end_time is None:
            if query.end_time_interval[1] is not None:
                return False
        elif not _in_interval(dispatch.end_time, query.end_time_interval):
            return False
    return query.update_time_interval is None or (
        dispatch.update_time is not None
        and _in_interval(dispatch.update_time, query.update_time_interval)
    )


def _in_interval(t: datetime, interval: Interval) -> bool:
    lo, hi = interval
    return (lo is None or lo <= t) and (hi is None or t < hi)


def _target_matches(wanted: Target, target: Target) -> bool:
    if isinstance(wanted, TargetIds):
        return isinstance(target, TargetIds) and not wanted.ids.isdisjoint(target.ids)
    return isinstance(target, TargetCategories) and any(
        _category_matches(w, c) for w in wanted.categories for c in target.categories
    )


def _category_matches(wanted: TargetCategory, have: TargetCategory) -> bool:
    if wanted.category != have.category:
        return False
    return wanted.type is None or (
        type(wanted.type) is type(have.type) and wanted.type == have.type
    )


def _text_matches(query: str, dispatch: Dispatch) -> bool:
    id_query = _ID_QUERY.fullmatch(query)
    if id_query is not None:
        return dispatch.id == int(id_query.group(1))
    return query.casefold() in dispatch.type.casefold()


# -- sorting and pagination ---------------------------------------------------------------


def page(
    query: ListQuery,
    dispatches: Iterable[Dispatch],
    *,
    page_size: int,
    page_token: str | None,
) -> Page:
    """Filter, sort and cut out one page, as ListMicrogridDispatches answers it.

    Args:
        query: the filters and the order.
        dispatches: all dispatches of the microgrid, in any order.
        page_size: items per page; 0 means the size recorded in `page_token`, or
            `DEFAULT_PAGE_SIZE` for a first page.
        page_token: ``None`` for the first page, else the previous page's token.

    Raises:
        ApiError: ``INVALID_ARGUMENT`` for a page size over `MAX_PAGE_SIZE`, or a token
            that is malformed or was made for another filter or order.

    Example:
        >>> p = page(ListQuery(), [], page_size=0, page_token=None)
        >>> p.items, p.next_page_token, p.total_items
        ([], None, 0)
    """
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise ApiError(
            "INVALID_ARGUMENT",
            f"pagination_params.page_size must be at most {MAX_PAGE_SIZE}, got {page_size}"
            if page_size > 0
            else f"pagination_params.page_size must not be negative, got {page_size}",
        )
    digest = _digest(query)
    order = f"{query.sort_field.value}/{query.sort_order.value}"
    after: tuple[int, int] | None = None
    if page_token is not None:
        cursor = decode_token(page_token, order=order, digest=digest, max_page_size=MAX_PAGE_SIZE)
        after = (cursor.key, cursor.last_id)
        page_size = page_size or cursor.page_size
    size = page_size or DEFAULT_PAGE_SIZE

    attr = query.sort_field.value
    rows = sorted(
        ((_micros(getattr(d, attr)), d.id, d) for d in dispatches if matches(query, d)),
        key=lambda row: row[:2],
    )
    keys = [(k, i) for k, i, _ in rows]
    if query.sort_order is SortOrder.ASCENDING:
        start = 0 if after is None else bisect_right(keys, after)
        chosen = rows[start : start + size]
        remaining = len(rows) - start - len(chosen)
    else:
        stop = len(rows) if after is None else bisect_left(keys, after)
        chosen = rows[max(0, stop - size) : stop][::-1]
        remaining = stop - len(chosen)

    token = None
    if remaining > 0:
        last_key, last_id, _ = chosen[-1]
        cursor = Cursor(order=order, digest=digest, key=last_key, last_id=last_id, page_size=size)
        token = encode_token(cursor)
    return Page(items=[d for _, _, d in chosen], next_page_token=token, total_items=len(rows))


def _micros(t: datetime | None) -> int:
    return _NO_TIME if t is None else (t - _EPOCH) // _US


def _digest(query: ListQuery) -> str:
    """A short digest of the filters, equal for filters that mean the same."""

    def interval(value: Interval | None) -> list[int | None] | None:
        if value is None:
            return None
        return [None if t is None else _micros(t) for t in value]

    def target(t: Target) -> str:
        if isinstance(t, TargetIds):
            return json.dumps(["ids", sorted(t.ids)])
        cats = sorted(
            (int(c.category), -1 if c.type is None else int(c.type)) for c in t.categories
        )
        return json.dumps(["categories", cats])

    canonical = [
        sorted({target(t) for t in query.targets}),
        query.active,
        query.dry_run,
        query.recurring,
        interval(query.start_time_interval),
        interval(query.end_time_interval),
        interval(query.update_time_interval),
        sorted(query.ids),
        sorted(set(query.queries)),
    ]
    text = json.dumps(canonical, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# -- from the wire ------------------------------------------------------------------------

_SORT_FIELDS: Final = {
    int(pb.SortField.UNSPECIFIED): SortField.CREATE_TIME,
    int(pb.SortField.START_TIME): SortField.START_TIME,
    int(pb.SortField.CREATE_TIME): SortField.CREATE_TIME,
    int(pb.SortField.LAST_UPDATE_TIME): SortField.UPDATE_TIME,
}
_SORT_ORDERS: Final = {
    int(pb.SortOrder.UNSPECIFIED): SortOrder.DESCENDING,
    int(pb.SortOrder.ASCENDING): SortOrder.ASCENDING,
    int(pb.SortOrder.DESCENDING): SortOrder.DESCENDING,
}


def query_from_proto(msg: pb.ListMicrogridDispatchesRequest) -> tuple[ListQuery, int, str | None]:
    """Read a list request: ``(query, page size, page token)``.

    The page size is 0 when the request sets none; an empty token counts as none.

    Raises:
        ApiError: ``INVALID_ARGUMENT`` naming the field, for an interval whose start is
            after its end, an impossible target, or an unknown sort field or order.

    Example:
        >>> query_from_proto(pb.ListMicrogridDispatchesRequest(microgrid_id=1))[1:]
        (0, None)
    """
    filters = msg.filter or pb.DispatchFilter()
    targets = []
    for i, item in enumerate(filters.targets):
        try:
            targets.append(target_from_proto(item))
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_ARGUMENT", f"filter.targets[{i}]: {exc}") from exc
    which, value = betterproto2.which_one_of(filters, "recurrence")
    options = msg.sort_options or pb.SortOptions()
    field_no, order_no = int(options.sort_field), int(options.sort_order)
    if (sort_field := _SORT_FIELDS.get(field_no)) is None:
        raise ApiError("INVALID_ARGUMENT", f"sort_options.sort_field {field_no} is unknown")
    if (sort_order := _SORT_ORDERS.get(order_no)) is None:
        raise ApiError("INVALID_ARGUMENT", f"sort_options.sort_order {order_no} is unknown")
    query = ListQuery(
        targets=tuple(targets),
        active=filters.is_active,
        dry_run=filters.is_dry_run,
        recurring=value if which == "is_recurring" else None,
        start_time_interval=_interval("filter.start_time_interval", filters.start_time_interval),
        end_time_interval=_interval("filter.end_time_interval", filters.end_time_interval),
        update_time_interval=_interval("filter.update_time_interval", filters.update_time_interval),
        ids=frozenset(filters.dispatch_ids),
        queries=tuple(filters.queries),
        sort_field=sort_field,
        sort_order=sort_order,
    )
    params = msg.pagination_params
    page_size = (params.page_size if params is not None else None) or 0
    page_token = (params.page_token if params is not None else None) or None
    return query, page_size, page_token


def _interval(name: str, msg: pb_types.Interval | None) -> Interval | None:
    if msg is None:
        return None
    lo, hi = msg.start_time, msg.end_time
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(
            "INVALID_ARGUMENT",
            f"{name}.start_time {lo.isoformat()} is after end_time {hi.isoformat()}",
        )
    return (lo, hi)
