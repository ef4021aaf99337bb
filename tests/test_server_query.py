"""ListMicrogridDispatches semantics: every filter, the sort orders and keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    Frequency,
    InverterType,
    RecurrenceRule,
    Target,
    TargetCategories,
    TargetCategory,
    TargetIds,
)
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import pagination as pb_page
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import types as pb_types
from trio_dispatch._proto.frequenz.api.common.v1alpha8.microgrid import (
    electrical_components as pb_ec,
)
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch.server._errors import ApiError
from trio_dispatch.server._query import (
    ListQuery,
    SortField,
    SortOrder,
    matches,
    page,
    query_from_proto,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def mk(
    dispatch_id: int,
    *,
    type: str = "T",
    start: datetime = T0,
    created: datetime = T0,
    updated: datetime | None = T0,
    end: datetime | None = None,
    target: Target | None = None,
    active: bool = True,
    dry_run: bool = False,
    recurrence: RecurrenceRule | None = None,
) -> Dispatch:
    return Dispatch(
        id=dispatch_id,
        type=type,
        start_time=start,
        target=TargetIds(ids=frozenset()) if target is None else target,
        active=active,
        dry_run=dry_run,
        recurrence=recurrence,
        create_time=created,
        update_time=updated,
        end_time=end,
    )


def matching(query: ListQuery, dispatches: Iterable[Dispatch]) -> set[int]:
    return {d.id for d in dispatches if matches(query, d)}


def listed(query: ListQuery, dispatches: Iterable[Dispatch]) -> list[int]:
    return [d.id for d in page(query, dispatches, page_size=1000, page_token=None).items]


def cat(
    category: ComponentCategory, subtype: BatteryType | InverterType | None = None
) -> TargetCategory:
    return TargetCategory(category=category, type=subtype)


# -- filters ------------------------------------------------------------------------------

TARGETED = [
    mk(1, target=TargetIds.of(1, 2)),
    mk(2, target=TargetIds.of(3)),
    mk(3, target=TargetCategories.of(cat(ComponentCategory.BATTERY, BatteryType.LI_ION))),
    mk(4, target=TargetCategories.of(ComponentCategory.BATTERY)),
    mk(5, target=TargetCategories.of(cat(ComponentCategory.BATTERY, BatteryType.NA_ION))),
    mk(6, target=TargetCategories.of(ComponentCategory.INVERTER, ComponentCategory.METER)),
    mk(7, target=TargetIds(ids=frozenset())),
]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ((TargetIds.of(2, 9),), {1}),
        ((TargetIds.of(9),), set()),
        ((TargetIds(ids=frozenset()),), set()),
        ((TargetCategories.of(ComponentCategory.BATTERY),), {3, 4, 5}),
        ((TargetCategories.of(cat(ComponentCategory.BATTERY, BatteryType.LI_ION)),), {3}),
        ((TargetCategories.of(ComponentCategory.METER),), {6}),
        ((TargetCategories.of(cat(ComponentCategory.INVERTER, InverterType.PV)),), set()),
        ((TargetIds.of(3), TargetCategories.of(ComponentCategory.INVERTER)), {2, 6}),
        ((TargetCategories.of(ComponentCategory.EV_CHARGER, ComponentCategory.METER),), {6}),
        ((), {1, 2, 3, 4, 5, 6, 7}),
    ],
)
def test_target_filter(targets: tuple[Target, ...], expected: set[int]) -> None:
    assert matching(ListQuery(targets=targets), TARGETED) == expected


def test_ids_never_match_categories() -> None:
    # Component id 5 and category 5 (BATTERY) are different things.
    ds = [mk(1, target=TargetCategories.of(ComponentCategory.BATTERY))]
    assert matching(ListQuery(targets=(TargetIds.of(5),)), ds) == set()


FLAGS = [
    mk(1, active=True, dry_run=False),
    mk(2, active=False, dry_run=False),
    mk(3, active=True, dry_run=True),
    mk(4, active=False, dry_run=True),
]


def test_active_filter() -> None:
    assert matching(ListQuery(active=True), FLAGS) == {1, 3}
    assert matching(ListQuery(active=False), FLAGS) == {2, 4}


def test_dry_run_filter() -> None:
    assert matching(ListQuery(dry_run=True), FLAGS) == {3, 4}
    assert matching(ListQuery(dry_run=False), FLAGS) == {1, 2}


def test_active_and_dry_run_combine_with_and() -> None:
    assert matching(ListQuery(active=False, dry_run=True), FLAGS) == {4}


def test_recurring_filter() -> None:
    ds = [
        mk(1),
        mk(2, recurrence=RecurrenceRule()),
        mk(3, recurrence=RecurrenceRule(frequency=Frequency.DAILY)),
        mk(4, recurrence=RecurrenceRule(frequency=Frequency.MINUTELY, interval=5)),
    ]
    assert matching(ListQuery(recurring=True), ds) == {3, 4}
    assert matching(ListQuery(recurring=False), ds) == {1, 2}


STARTS = [mk(i, start=T0 + i * MIN) for i in range(1, 6)]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ((T0 + 2 * MIN, T0 + 4 * MIN), {2, 3}),  # from is inclusive, to exclusive
        ((T0 + 2 * MIN, T0 + 2 * MIN), set()),  # empty interval
        ((T0 + 2 * MIN, T0 + 2 * MIN + timedelta(microseconds=1)), {2}),
        ((T0 + 2 * MIN - timedelta(microseconds=1), T0 + 2 * MIN), set()),
        ((None, T0 + 3 * MIN), {1, 2}),
        ((T0 + 4 * MIN, None), {4, 5}),
        ((None, None), {1, 2, 3, 4, 5}),
    ],
)
def test_start_time_interval(
    interval: tuple[datetime | None, datetime | None], expected: set[int]
) -> None:
    assert matching(ListQuery(start_time_interval=interval), STARTS) == expected


ENDS = [mk(i, end=T0 + i * MIN) for i in range(1, 4)] + [mk(9, end=None)]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ((T0 + 1 * MIN, T0 + 3 * MIN), {1, 2}),
        ((T0 + 3 * MIN, None), {3, 9}),  # no end: in every interval without upper bound
        ((None, None), {1, 2, 3, 9}),
        ((None, T0 + 2 * MIN), {1}),
        ((None, datetime(9999, 1, 1, tzinfo=UTC)), {1, 2, 3}),
    ],
)
def test_end_time_interval(
    interval: tuple[datetime | None, datetime | None], expected: set[int]
) -> None:
    assert matching(ListQuery(end_time_interval=interval), ENDS) == expected


def test_update_time_interval() -> None:
    ds = [mk(i, updated=T0 + i * MIN) for i in range(1, 4)] + [mk(9, updated=None)]
    query = ListQuery(update_time_interval=(T0 + 2 * MIN, T0 + 3 * MIN))
    assert matching(query, ds) == {2}
    assert matching(ListQuery(update_time_interval=(None, None)), ds) == {1, 2, 3}


def test_ids_filter() -> None:
    ds = [mk(i) for i in range(1, 6)]
    assert matching(ListQuery(ids=frozenset({2, 4, 99})), ds) == {2, 4}


TYPED = [
    mk(1, type="BATTERY_PEAK_SHAVING"),
    mk(2, type="EV_CHARGING"),
    mk(4, type="peak#4"),
    mk(24, type="SOLAR"),
    mk(42, type="Peak"),
]


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        (("#4",), {4}),
        (("#04",), {4}),
        (("#24",), {24}),
        (("#7",), set()),
        (("peak",), {1, 4, 42}),  # case-insensitive substring
        (("PEAK_SHAV",), {1}),
        (("#4x",), set()),  # not an id query: a substring nobody's type contains
        (("k#4",), {4}),
        (("#",), {4}),
        (("#2", "charg"), {2}),
        (("#24", "#42", "ev_"), {2, 24, 42}),
        (("",), {1, 2, 4, 24, 42}),
    ],
)
def test_queries(queries: tuple[str, ...], expected: set[int]) -> None:
    assert matching(ListQuery(queries=queries), TYPED) == expected


def test_filters_combine_with_and() -> None:
    ds = [
        mk(1, type="PEAK", active=True, start=T0),
        mk(2, type="PEAK", active=False, start=T0),
        mk(3, type="PEAK", active=True, start=T0 + 10 * MIN),
        mk(4, type="OTHER", active=True, start=T0),
        mk(5, type="PEAK", active=True, start=T0, target=TargetIds.of(8)),
    ]
    query = ListQuery(
        queries=("peak", "#4"),
        active=True,
        start_time_interval=(None, T0 + MIN),
        ids=frozenset({1, 2, 3, 4}),
        targets=(TargetIds(ids=frozenset()), TargetIds.of(7)),
    )
    assert matching(query, ds) == set()
    assert matching(ListQuery(queries=("peak", "#4"), active=True), ds) == {1, 3, 4, 5}
    assert matching(
        ListQuery(queries=("peak", "#4"), active=True, start_time_interval=(None, T0 + MIN)), ds
    ) == {1, 4, 5}
    assert matching(
        ListQuery(
            queries=("peak", "#4"),
            active=True,
            start_time_interval=(None, T0 + MIN),
            ids=frozenset({1, 2, 3, 5}),
        ),
        ds,
    ) == {1, 5}


# -- sorting ------------------------------------------------------------------------------

# (id, start, create, update) in minutes after T0; ties in every field.
SORTABLE = [
    mk(1, start=T0 + 3 * MIN, created=T0 + 1 * MIN, updated=T0 + 5 * MIN),
    mk(2, start=T0 + 1 * MIN, created=T0 + 1 * MIN, updated=T0 + 2 * MIN),
    mk(3, start=T0 + 3 * MIN, created=T0 + 0 * MIN, updated=T0 + 2 * MIN),
    mk(4, start=T0 + 2 * MIN, created=T0 + 2 * MIN, updated=T0 + 9 * MIN),
    mk(5, start=T0 + 1 * MIN, created=T0 + 2 * MIN, updated=T0 + 2 * MIN),
]


@pytest.mark.parametrize(
    ("sort_field", "sort_order", "expected"),
    [
        (SortField.START_TIME, SortOrder.ASCENDING, [2, 5, 4, 1, 3]),
        (SortField.START_TIME, SortOrder.DESCENDING, [3, 1, 4, 5, 2]),
        (SortField.CREATE_TIME, SortOrder.ASCENDING, [3, 1, 2, 4, 5]),
        (SortField.CREATE_TIME, SortOrder.DESCENDING, [5, 4, 2, 1, 3]),
        (SortField.UPDATE_TIME, SortOrder.ASCENDING, [2, 3, 5, 1, 4]),
        (SortField.UPDATE_TIME, SortOrder.DESCENDING, [4, 1, 5, 3, 2]),
    ],
)
def test_sort_orders_break_ties_by_id(
    sort_field: SortField, sort_order: SortOrder, expected: list[int]
) -> None:
    query = ListQuery(sort_field=sort_field, sort_order=sort_order)
    assert listed(query, SORTABLE) == expected
    # Paging one item at a time gives the same order.
    ids, token = [], None
    for _ in range(len(SORTABLE)):
        p = page(query, SORTABLE, page_size=1, page_token=token)
        ids += [d.id for d in p.items]
        token = p.next_page_token
    assert (ids, token) == (expected, None)


def test_default_order_is_newest_created_first() -> None:
    assert listed(ListQuery(), SORTABLE) == [5, 4, 2, 1, 3]


# -- pagination ---------------------------------------------------------------------------

MANY = [mk(i, created=T0 + (i // 3) * MIN) for i in range(1, 2501)]  # 3-way ties on key


def test_pages_of_1000_over_2500_dispatches() -> None:
    query = ListQuery(sort_order=SortOrder.ASCENDING)
    first = page(query, MANY, page_size=1000, page_token=None)
    assert [d.id for d in first.items] == list(range(1, 1001))
    assert first.total_items == 2500
    assert first.next_page_token is not None
    second = page(query, MANY, page_size=0, page_token=first.next_page_token)
    assert [d.id for d in second.items] == list(range(1001, 2001))
    assert second.total_items == 2500
    assert second.next_page_token is not None
    third = page(query, MANY, page_size=0, page_token=second.next_page_token)
    assert [d.id for d in third.items] == list(range(2001, 2501))
    assert (third.total_items, third.next_page_token) == (2500, None)


def test_total_items_counts_matches_of_the_whole_query() -> None:
    query = ListQuery(ids=frozenset(range(1, 251)), sort_order=SortOrder.DESCENDING)
    p = page(query, MANY, page_size=100, page_token=None)
    assert [d.id for d in p.items] == list(range(250, 150, -1))
    assert p.total_items == 250


def test_default_page_size_is_100_and_last_full_page_has_no_token() -> None:
    ds = MANY[:200]
    first = page(ListQuery(), ds, page_size=0, page_token=None)
    assert len(first.items) == 100
    assert first.next_page_token is not None
    second = page(ListQuery(), ds, page_size=0, page_token=first.next_page_token)
    assert len(second.items) == 100
    assert second.next_page_token is None


def test_explicit_page_size_overrides_the_token() -> None:
    query = ListQuery(sort_order=SortOrder.ASCENDING)
    first = page(query, MANY, page_size=10, page_token=None)
    second = page(query, MANY, page_size=3, page_token=first.next_page_token)
    assert [d.id for d in second.items] == [11, 12, 13]
    third = page(query, MANY, page_size=0, page_token=second.next_page_token)
    assert [d.id for d in third.items] == list(range(14, 17))


def test_empty_result() -> None:
    p = page(ListQuery(ids=frozenset({9999})), MANY, page_size=0, page_token=None)
    assert (p.items, p.next_page_token, p.total_items) == ([], None, 0)


def test_pages_are_stable_under_inserts_and_deletes() -> None:
    live = {i: mk(i, created=T0 + i * MIN) for i in range(1, 31)}
    query = ListQuery()  # newest created first
    first = page(query, live.values(), page_size=10, page_token=None)
    assert [d.id for d in first.items] == list(range(30, 20, -1))
    del live[25]  # already seen
    del live[15]  # not seen yet
    live[31] = mk(31, created=T0 + 40 * MIN)  # before the cursor: not shown
    live[32] = mk(32, created=T0 + 18 * MIN)  # ties with 18, after the cursor: shown
    live[33] = mk(33, created=T0 + 21 * MIN)  # ties with the cursor item, sorts before it
    second = page(query, live.values(), page_size=0, page_token=first.next_page_token)
    assert [d.id for d in second.items] == [20, 19, 32, 18, 17, 16, 14, 13, 12, 11]
    assert second.total_items == 31
    third = page(query, live.values(), page_size=0, page_token=second.next_page_token)
    assert [d.id for d in third.items] == list(range(10, 0, -1))
    assert third.next_page_token is None
    seen = [d.id for p in (first, second, third) for d in p.items]
    assert len(seen) == len(set(seen))
    assert set(range(1, 31)) - {15} == set(seen) - {32}


def test_token_for_the_last_item_gives_an_empty_page_if_it_was_deleted() -> None:
    live = {i: mk(i, created=T0 + i * MIN) for i in range(1, 4)}
    query = ListQuery(sort_order=SortOrder.ASCENDING)
    first = page(query, live.values(), page_size=2, page_token=None)
    del live[3]
    second = page(query, live.values(), page_size=0, page_token=first.next_page_token)
    assert (second.items, second.next_page_token, second.total_items) == ([], None, 2)


@pytest.mark.parametrize(
    ("other", "reason"),
    [
        (ListQuery(active=True), "it was issued for another filter"),
        (ListQuery(queries=("x",)), "it was issued for another filter"),
        (ListQuery(targets=(TargetIds.of(1),)), "it was issued for another filter"),
        (ListQuery(end_time_interval=(None, T0)), "it was issued for another filter"),
        (ListQuery(sort_order=SortOrder.ASCENDING), "it was issued for another sort order"),
        (ListQuery(sort_field=SortField.START_TIME), "it was issued for another sort order"),
    ],
)
def test_token_reuse_with_another_query_is_rejected(other: ListQuery, reason: str) -> None:
    token = page(ListQuery(), MANY, page_size=10, page_token=None).next_page_token
    with pytest.raises(ApiError) as info:
        page(other, MANY, page_size=0, page_token=token)
    assert (info.value.status, info.value.message) == (
        "INVALID_ARGUMENT",
        f"pagination_params.page_token is not valid: {reason}",
    )


def test_token_is_reusable_with_an_equivalent_filter() -> None:
    query = ListQuery(queries=("a", "b"), targets=(TargetIds.of(1, 2), TargetIds.of(3)))
    same = ListQuery(queries=("b", "a", "a"), targets=(TargetIds.of(3), TargetIds.of(2, 1)))
    ds = [mk(i, type="ab", target=TargetIds.of(1)) for i in range(1, 6)]
    token = page(query, ds, page_size=2, page_token=None).next_page_token
    assert [d.id for d in page(same, ds, page_size=0, page_token=token).items] == [3, 2]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _token(**fields: object) -> str:
    body: dict[str, object] = {
        "v": 1,
        "order": "create_time/DESCENDING",
        "filter": "x",
        "key": 0,
        "id": 1,
        "size": 10,
    }
    body.update(fields)
    return _b64(json.dumps(body).encode())


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "a",
        _b64(b"\xff\xfe"),
        _b64(b"[1, 2]"),
        _b64(b"{}"),
        _token(v=2),
        _token(key=True),
        _token(id="1"),
        _token(size=0),
        _token(size=1001),
    ],
)
def test_bad_tokens_are_rejected(token: str) -> None:
    with pytest.raises(ApiError) as info:
        page(ListQuery(), MANY, page_size=0, page_token=token)
    assert (info.value.status, info.value.message) == (
        "INVALID_ARGUMENT",
        "pagination_params.page_token is not valid: it is not a token this server issued",
    )


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (1001, "pagination_params.page_size must be at most 1000, got 1001"),
        (-1, "pagination_params.page_size must not be negative, got -1"),
    ],
)
def test_page_size_limits(size: int, message: str) -> None:
    with pytest.raises(ApiError) as info:
        page(ListQuery(), MANY, page_size=size, page_token=None)
    assert (info.value.status, info.value.message) == ("INVALID_ARGUMENT", message)


# -- from the wire ------------------------------------------------------------------------


def test_query_from_an_empty_request_has_defaults() -> None:
    assert query_from_proto(pb.ListMicrogridDispatchesRequest(microgrid_id=1)) == (
        ListQuery(),
        0,
        None,
    )


def test_query_from_a_full_request() -> None:
    request = pb.ListMicrogridDispatchesRequest(
        microgrid_id=1,
        filter=pb.DispatchFilter(
            targets=[
                pb.TargetComponents(component_ids=pb.TargetComponentsIdSet(ids=[4, 5])),
                pb.TargetComponents(
                    component_categories_types=pb.TargetComponentsCategoryTypeSet(
                        categories=[
                            pb.TargetComponentsCategoryAndType(
                                category=pb_ec.ElectricalComponentCategory.BATTERY,
                                battery=pb_ec.BatteryType.LI_ION,
                            )
                        ]
                    )
                ),
            ],
            is_active=True,
            is_dry_run=False,
            is_recurring=False,
            start_time_interval=pb_types.Interval(start_time=T0, end_time=T0 + MIN),
            end_time_interval=pb_types.Interval(end_time=T0),
            update_time_interval=pb_types.Interval(start_time=T0),
            dispatch_ids=[7, 8],
            queries=["#7", "peak"],
        ),
        sort_options=pb.SortOptions(
            sort_field=pb.SortField.LAST_UPDATE_TIME, sort_order=pb.SortOrder.ASCENDING
        ),
        pagination_params=pb_page.PaginationParams(page_size=250),
    )
    assert query_from_proto(request) == (
        ListQuery(
            targets=(
                TargetIds.of(4, 5),
                TargetCategories.of(cat(ComponentCategory.BATTERY, BatteryType.LI_ION)),
            ),
            active=True,
            dry_run=False,
            recurring=False,
            start_time_interval=(T0, T0 + MIN),
            end_time_interval=(None, T0),
            update_time_interval=(T0, None),
            ids=frozenset({7, 8}),
            queries=("#7", "peak"),
            sort_field=SortField.UPDATE_TIME,
            sort_order=SortOrder.ASCENDING,
        ),
        250,
        None,
    )


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        ({}, None),
        ({"is_recurring": True}, True),
        ({"is_recurring": False}, False),
        ({"filter": pb.DispatchFilterRecurrenceFilter()}, None),
    ],
)
def test_recurrence_filter_oneof(recurrence: dict[str, object], expected: bool | None) -> None:
    request = pb.ListMicrogridDispatchesRequest(filter=pb.DispatchFilter(**recurrence))  # type: ignore[arg-type]
    assert query_from_proto(request)[0].recurring is expected


@pytest.mark.parametrize(
    ("field", "order", "expected"),
    [
        (
            pb.SortField.UNSPECIFIED,
            pb.SortOrder.UNSPECIFIED,
            (SortField.CREATE_TIME, SortOrder.DESCENDING),
        ),
        (
            pb.SortField.START_TIME,
            pb.SortOrder.DESCENDING,
            (SortField.START_TIME, SortOrder.DESCENDING),
        ),
        (
            pb.SortField.CREATE_TIME,
            pb.SortOrder.ASCENDING,
            (SortField.CREATE_TIME, SortOrder.ASCENDING),
        ),
        (
            pb.SortField.LAST_UPDATE_TIME,
            pb.SortOrder.UNSPECIFIED,
            (SortField.UPDATE_TIME, SortOrder.DESCENDING),
        ),
    ],
)
def test_sort_options(
    field: pb.SortField, order: pb.SortOrder, expected: tuple[SortField, SortOrder]
) -> None:
    request = pb.ListMicrogridDispatchesRequest(
        sort_options=pb.SortOptions(sort_field=field, sort_order=order)
    )
    query = query_from_proto(request)[0]
    assert (query.sort_field, query.sort_order) == expected


def test_unknown_sort_field_is_rejected() -> None:
    request = pb.ListMicrogridDispatchesRequest(sort_options=pb.SortOptions.parse(bytes([8, 9])))
    with pytest.raises(ApiError) as info:
        query_from_proto(request)
    assert (info.value.status, info.value.message) == (
        "INVALID_ARGUMENT",
        "sort_options.sort_field 9 is unknown",
    )


def test_page_token_from_request() -> None:
    for token, expected in (("abc", "abc"), ("", None)):
        request = pb.ListMicrogridDispatchesRequest(
            pagination_params=pb_page.PaginationParams(page_token=token)
        )
        assert query_from_proto(request)[1:] == (0, expected)


@pytest.mark.parametrize(
    "name", ["start_time_interval", "end_time_interval", "update_time_interval"]
)
def test_backwards_interval_is_rejected(name: str) -> None:
    interval = pb_types.Interval(start_time=T0 + MIN, end_time=T0)
    request = pb.ListMicrogridDispatchesRequest(filter=pb.DispatchFilter(**{name: interval}))  # type: ignore[arg-type]
    with pytest.raises(ApiError) as info:
        query_from_proto(request)
    assert (info.value.status, info.value.message) == (
        "INVALID_ARGUMENT",
        f"filter.{name}.start_time 2030-01-01T00:01:00+00:00 is after end_time "
        "2030-01-01T00:00:00+00:00",
    )


def test_impossible_filter_target_is_rejected() -> None:
    target = pb.TargetComponents(
        component_categories_types=pb.TargetComponentsCategoryTypeSet(
            categories=[
                pb.TargetComponentsCategoryAndType(
                    category=pb_ec.ElectricalComponentCategory.BATTERY,
                    inverter=pb_ec.InverterType.PV,
                )
            ]
        )
    )
    request = pb.ListMicrogridDispatchesRequest(filter=pb.DispatchFilter(targets=[target]))
    with pytest.raises(ApiError) as info:
        query_from_proto(request)
    assert (info.value.status, info.value.message) == (
        "INVALID_ARGUMENT",
        "filter.targets[0]: type <InverterType.PV: 2> belongs to category INVERTER, not to BATTERY",
    )
