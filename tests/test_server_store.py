"""The embedded server's storage: create/get/update/delete/list, durability, field masks."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    EndCriteria,
    Frequency,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)
from trio_dispatch._convert import (
    dispatch_data_to_proto,
    end_criteria_to_proto,
    payload_to_proto,
    target_to_proto,
)
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import pagination as pb_page
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch._proto.google.protobuf import FieldMask
from trio_dispatch.server._errors import ApiError
from trio_dispatch.server._store import SCHEMA_VERSION, DispatchStore, StoreError
from trio_dispatch.server._update import PATHS, apply_update

NOW = datetime(2029, 12, 31, tzinfo=UTC)
T0 = datetime(2030, 1, 1, 8, tzinfo=UTC)
HOUR = timedelta(hours=1)
REPO = Path(__file__).resolve().parent.parent

RuleUpdate = pb.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate


@pytest.fixture
def store() -> Iterator[DispatchStore]:
    with DispatchStore.open(":memory:") as s:
        yield s


def data(
    *,
    type: str = "PEAK_SHAVING",
    start: datetime | None = T0,
    duration: timedelta | None = HOUR,
    recurrence: RecurrenceRule | None = None,
    active: bool = True,
) -> pb.DispatchData:
    d = Dispatch(
        id=0,
        type="x",
        start_time=start or T0,
        duration=duration,
        recurrence=recurrence,
        active=active,
        target=TargetIds.of(1, 2),
        payload={"power": 5, "nested": {"on": True}},
    )
    msg = dispatch_data_to_proto(d)
    msg.type = type
    msg.start_time = start
    return msg


def api_error(exc: pytest.ExceptionInfo[ApiError]) -> tuple[str, str]:
    return (exc.value.status, exc.value.message)


# -- create -------------------------------------------------------------------------------


def test_create_returns_the_stored_dispatch(store: DispatchStore) -> None:
    created = store.create(3, data(), start_immediately=False, now=NOW)
    assert created == Dispatch(
        id=1,
        type="PEAK_SHAVING",
        start_time=T0,
        duration=HOUR,
        target=TargetIds.of(1, 2),
        payload={"power": 5.0, "nested": {"on": True}},
        create_time=NOW,
        update_time=NOW,
        end_time=T0 + HOUR,
    )
    assert store.get(3, 1) == created
    assert store.dispatches(3) == {1: created}


def test_ids_are_unique_across_microgrids_and_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DispatchStore.open(path) as store:
        ids = [store.create(m, data(), start_immediately=False, now=NOW).id for m in (1, 2, 1)]
        assert ids == [1, 2, 3]
        store.delete(1, 3)
        assert store.create(2, data(), start_immediately=False, now=NOW).id == 4
        store.delete(2, 4)
    with DispatchStore.open(path) as store:
        assert store.create(1, data(), start_immediately=False, now=NOW).id == 5


def test_start_immediately_starts_now(store: DispatchStore) -> None:
    created = store.create(1, data(start=None), start_immediately=True, now=NOW)
    assert (created.start_time, created.end_time) == (NOW, NOW + HOUR)


def test_start_at_now_is_not_in_the_past(store: DispatchStore) -> None:
    assert store.create(1, data(start=NOW), start_immediately=False, now=NOW).start_time == NOW


def test_huge_microgrid_ids_are_stored(tmp_path: Path) -> None:
    mid = 2**64 - 1
    with DispatchStore.open(tmp_path / "d.db") as store:
        created = store.create(mid, data(), start_immediately=False, now=NOW)
    with DispatchStore.open(tmp_path / "d.db") as store:
        assert store.dispatches(mid) == {created.id: created}


@pytest.mark.parametrize(
    ("msg", "start_immediately", "message"),
    [
        (None, False, "dispatch_data is required"),
        (data(start=None), False, "start_time is required unless start_immediately is set"),
        (
            data(start=NOW - timedelta(microseconds=1)),
            False,
            "start_time 2029-12-30T23:59:59.999999+00:00 is in the past "
            "(now is 2029-12-31T00:00:00+00:00)",
        ),
        (data(type=""), False, "type must not be empty, got ''"),
        (data(type="  "), True, "type must not be empty, got '  '"),
        (
            pb.DispatchData(type="X", start_time=T0, recurrence=pb.RecurrenceRule(bymonths=[13])),
            False,
            "bymonths values must be 1..12, got 13",
        ),
    ],
)
def test_create_rejects_bad_data(
    store: DispatchStore, msg: pb.DispatchData | None, start_immediately: bool, message: str
) -> None:
    with pytest.raises(ApiError) as info:
        store.create(1, msg, start_immediately=start_immediately, now=NOW)
    assert api_error(info) == ("INVALID_ARGUMENT", message)
    assert store.dispatches(1) == {}


def test_create_rejects_until_before_start(store: DispatchStore) -> None:
    msg = data(recurrence=RecurrenceRule(frequency=Frequency.DAILY))
    assert msg.recurrence is not None
    msg.recurrence.end_criteria = pb.RecurrenceRuleEndCriteria(until_time=T0)
    with pytest.raises(ApiError) as info:
        store.create(1, msg, start_immediately=False, now=NOW)
    assert api_error(info) == (
        "INVALID_ARGUMENT",
        "recurrence.end_criteria.until must be after start_time 2030-01-01T08:00:00+00:00, "
        "got 2030-01-01T08:00:00+00:00",
    )


def test_naive_now_is_a_programming_error(store: DispatchStore) -> None:
    with pytest.raises(ValueError, match=r"^now must be timezone-aware"):
        store.create(1, data(), start_immediately=False, now=datetime(2029, 1, 1))  # noqa: DTZ001


# -- end_time -----------------------------------------------------------------------------

DAILY = Frequency.DAILY


@pytest.mark.parametrize(
    ("duration", "rule", "active", "end"),
    [
        (HOUR, None, True, T0 + HOUR),  # one-off
        (timedelta(0), None, True, T0),
        (HOUR, None, False, T0 + HOUR),  # pausing does not make it endless
        (None, None, True, None),  # until changed
        (HOUR, RecurrenceRule(frequency=DAILY), True, None),  # no end criteria
        (HOUR, RecurrenceRule(frequency=DAILY, end_criteria=EndCriteria(count=3)), True,
         datetime(2030, 1, 3, 9, tzinfo=UTC)),
        (None, RecurrenceRule(frequency=DAILY, end_criteria=EndCriteria(count=3)), True, None),
        (HOUR, RecurrenceRule(frequency=DAILY, end_criteria=EndCriteria(
            until=datetime(2030, 1, 5, 8, tzinfo=UTC))), True,
         datetime(2030, 1, 4, 9, tzinfo=UTC)),  # until is exclusive
        (HOUR, RecurrenceRule(frequency=DAILY, end_criteria=EndCriteria(
            until=datetime(2030, 1, 5, 8, 0, 1, tzinfo=UTC))), True,
         datetime(2030, 1, 5, 9, tzinfo=UTC)),
        (HOUR, RecurrenceRule(frequency=DAILY, interval=2, byhours=(8, 20),
                              end_criteria=EndCriteria(count=4)), False,
         datetime(2030, 1, 3, 21, tzinfo=UTC)),
        (HOUR, RecurrenceRule(frequency=DAILY, byhours=(7,), end_criteria=EndCriteria(
            until=datetime(2030, 1, 2, 6, tzinfo=UTC))), True, T0),  # never fires
    ],
)  # fmt: skip
def test_end_time(
    store: DispatchStore,
    duration: timedelta | None,
    rule: RecurrenceRule | None,
    active: bool,
    end: datetime | None,
) -> None:
    msg = data(duration=duration, recurrence=rule, active=active)
    created = store.create(1, msg, start_immediately=False, now=NOW)
    assert created.end_time == end


# -- get / delete / dispatches ------------------------------------------------------------


def test_not_found_across_microgrids(store: DispatchStore) -> None:
    created = store.create(3, data(), start_immediately=False, now=NOW)
    calls: list[Callable[[], object]] = [
        lambda: store.get(4, created.id),
        lambda: store.delete(4, created.id),
        lambda: store.update(
            4, update_request(created.id, ["is_active"], is_active=False), now=NOW
        ),
    ]
    for call in calls:
        with pytest.raises(ApiError) as info:
            call()
        assert api_error(info) == ("NOT_FOUND", f"dispatch {created.id} not found in microgrid 4")
    assert store.get(3, created.id) == created


def test_delete_returns_the_deleted_dispatch(store: DispatchStore) -> None:
    first = store.create(1, data(), start_immediately=False, now=NOW)
    second = store.create(1, data(type="OTHER"), start_immediately=False, now=NOW)
    assert store.delete(1, first.id) == first
    assert store.dispatches(1) == {second.id: second}
    with pytest.raises(ApiError) as info:
        store.get(1, first.id)
    assert api_error(info) == ("NOT_FOUND", "dispatch 1 not found in microgrid 1")
    store.delete(1, second.id)
    assert store.dispatches(1) == {}


def test_dispatches_is_a_read_only_snapshot(store: DispatchStore) -> None:
    first = store.create(1, data(), start_immediately=False, now=NOW)
    snapshot = store.dispatches(1)
    store.create(1, data(), start_immediately=False, now=NOW)
    assert snapshot == {first.id: first}
    with pytest.raises(TypeError):
        snapshot[5] = first  # type: ignore[index]
    assert store.dispatches(2) == {}


def test_closed_store_refuses_calls() -> None:
    store = DispatchStore.open(":memory:")
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match=r"^the dispatch store is closed$"):
        store.get(1, 1)
    with pytest.raises(RuntimeError, match=r"^the dispatch store is closed$"):
        store.create(1, data(), start_immediately=False, now=NOW)


# -- list ---------------------------------------------------------------------------------


def list_request(
    *, size: int | None = None, token: str | None = None, **filters: object
) -> pb.ListMicrogridDispatchesRequest:
    params = None
    if size is not None:
        params = pb_page.PaginationParams(page_size=size)
    elif token is not None:
        params = pb_page.PaginationParams(page_token=token)
    return pb.ListMicrogridDispatchesRequest(
        filter=pb.DispatchFilter(**filters) if filters else None,  # type: ignore[arg-type]
        sort_options=pb.SortOptions(
            sort_field=pb.SortField.CREATE_TIME, sort_order=pb.SortOrder.ASCENDING
        ),
        pagination_params=params,
    )


def test_list_pages_per_microgrid_with_token_only_follow_ups(store: DispatchStore) -> None:
    for i in range(300):
        store.create(i % 2 + 1, data(), start_immediately=False, now=NOW + timedelta(seconds=i))
    pages = [store.list(2, list_request(size=100))]
    while (token := pages[-1].next_page_token) is not None:
        pages.append(store.list(2, list_request(token=token)))
    assert [(len(p.items), p.total_items) for p in pages] == [(100, 150), (50, 150)]
    assert [d.id for p in pages for d in p.items] == list(range(2, 301, 2))
    pages = [store.list(1, list_request(size=40))]
    while (token := pages[-1].next_page_token) is not None:
        pages.append(store.list(1, list_request(token=token)))
    assert [len(p.items) for p in pages] == [40, 40, 40, 30]
    assert [d.id for p in pages for d in p.items] == list(range(1, 300, 2))
    assert store.list(3, list_request()).total_items == 0


def test_list_3_pages_of_1000(store: DispatchStore) -> None:
    for i in range(2500):
        store.create(7, data(), start_immediately=False, now=NOW + timedelta(seconds=i // 10))
    pages = [store.list(7, list_request(size=1000))]
    while (token := pages[-1].next_page_token) is not None:
        pages.append(store.list(7, list_request(token=token)))
    assert [(len(p.items), p.total_items) for p in pages] == [
        (1000, 2500),
        (1000, 2500),
        (500, 2500),
    ]
    assert [d.id for p in pages for d in p.items] == list(range(1, 2501))


def test_list_is_stable_while_writing_between_pages(store: DispatchStore) -> None:
    for i in range(25):
        store.create(1, data(), start_immediately=False, now=NOW + timedelta(seconds=i))
    first = store.list(1, list_request(size=10))
    assert [d.id for d in first.items] == list(range(1, 11))
    store.delete(1, 5)
    store.delete(1, 12)
    later = NOW + timedelta(minutes=1)
    store.create(1, data(), start_immediately=False, now=later)
    store.create(2, data(), start_immediately=False, now=later)
    store.create(1, data(), start_immediately=False, now=later)
    second = store.list(1, list_request(token=first.next_page_token))
    assert [d.id for d in second.items] == [11, *range(13, 22)]
    assert second.total_items == 25
    third = store.list(1, list_request(token=second.next_page_token))
    assert [d.id for d in third.items] == [22, 23, 24, 25, 26, 28]
    assert third.next_page_token is None


def test_list_filters_and_rejects_foreign_tokens(store: DispatchStore) -> None:
    for i in range(5):
        store.create(1, data(active=i % 2 == 0), start_immediately=False, now=NOW)
    page = store.list(1, list_request(size=2, is_active=True))
    assert ([d.id for d in page.items], page.total_items) == ([1, 3], 3)
    with pytest.raises(ApiError) as info:
        store.list(1, list_request(token=page.next_page_token, is_active=False))
    assert api_error(info) == (
        "INVALID_ARGUMENT",
        "pagination_params.page_token is not valid: it was issued for another filter",
    )
    with pytest.raises(ApiError) as info:
        store.list(1, list_request(size=1001))
    assert api_error(info) == (
        "INVALID_ARGUMENT",
        "pagination_params.page_size must be at most 1000, got 1001",
    )


# -- update -------------------------------------------------------------------------------

RULE = RecurrenceRule(
    frequency=Frequency.DAILY,
    interval=2,
    end_criteria=EndCriteria(count=5),
    byminutes=(0, 30),
    byhours=(8, 20),
    byweekdays=(Weekday.MONDAY, Weekday.FRIDAY),
    bymonthdays=(1, 15),
    bymonths=(1, 6),
)
BASE = Dispatch(
    id=9,
    type="PEAK_SHAVING",
    start_time=T0,
    duration=HOUR,
    target=TargetIds.of(1, 2),
    payload={"a": 1.0},
    recurrence=RULE,
    create_time=NOW,
    update_time=NOW,
)
LATER = NOW + timedelta(hours=5)


def update_request(
    dispatch_id: int, paths: list[str], **update: object
) -> pb.UpdateMicrogridDispatchRequest:
    return pb.UpdateMicrogridDispatchRequest(
        microgrid_id=1,
        dispatch_id=dispatch_id,
        update_mask=FieldMask(paths=paths),
        update=pb.UpdateMicrogridDispatchRequestDispatchUpdate(**update),  # type: ignore[arg-type]
    )


def updated(paths: list[str], *, base: Dispatch = BASE, **update: object) -> Dispatch:
    return apply_update(base, update_request(base.id, paths, **update), now=LATER)


def expect(base: Dispatch = BASE, **changes: object) -> Dispatch:
    d = replace(base, update_time=LATER, end_time=None, **changes)  # type: ignore[arg-type]
    return d


def test_paths_are_those_the_upstream_client_sends_plus_whole_recurrence() -> None:
    assert set(PATHS) == {
        "start_time",
        "duration",
        "target",
        "is_active",
        "payload",
        "recurrence",
        "recurrence.freq",
        "recurrence.interval",
        "recurrence.end_criteria",
        "recurrence.byminutes",
        "recurrence.byhours",
        "recurrence.byweekdays",
        "recurrence.bymonthdays",
        "recurrence.bymonths",
    }


def test_update_start_time() -> None:
    one_off = replace(BASE, recurrence=None)
    new = updated(["start_time"], base=one_off, start_time=T0 + HOUR)
    assert new == replace(one_off, start_time=T0 + HOUR, update_time=LATER, end_time=T0 + 2 * HOUR)
    assert updated(["start_time"], base=one_off, start_time=LATER).start_time == LATER


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (
            LATER - timedelta(seconds=1),
            "start_time 2029-12-31T04:59:59+00:00 is in the past "
            "(now is 2029-12-31T05:00:00+00:00)",
        ),
        (None, "start_time must be set when update_mask names it"),
    ],
)
def test_update_start_time_errors(start: datetime | None, message: str) -> None:
    with pytest.raises(ApiError) as info:
        updated(["start_time"], start_time=start)
    assert api_error(info) == ("INVALID_ARGUMENT", message)


def test_update_and_clear_duration() -> None:
    one_off = replace(BASE, recurrence=None)
    assert updated(["duration"], base=one_off, duration=60) == replace(
        expect(one_off, duration=timedelta(minutes=1)), end_time=T0 + timedelta(minutes=1)
    )
    assert updated(["duration"], base=one_off) == expect(one_off, duration=None)


def test_update_and_clear_target() -> None:
    target = TargetCategories.of(TargetCategory(category=ComponentCategory.BATTERY,
                                                type=BatteryType.NA_ION))  # fmt: skip
    assert updated(["target"], target=target_to_proto(target)).target == target
    assert updated(["target"]).target == TargetIds(ids=frozenset())


def test_update_is_active() -> None:
    one_off = replace(BASE, recurrence=None)
    new = updated(["is_active"], base=one_off, is_active=False)
    assert new == replace(expect(one_off, active=False), end_time=T0 + HOUR)
    with pytest.raises(ApiError) as info:
        updated(["is_active"])
    assert api_error(info) == (
        "INVALID_ARGUMENT",
        "is_active must be set when update_mask names it",
    )


def test_update_and_clear_payload() -> None:
    new = updated(["payload"], payload=payload_to_proto({"b": [1, "x"]}))
    assert new.payload == {"b": [1.0, "x"]}
    assert updated(["payload"]).payload == {}


def test_update_whole_recurrence() -> None:
    rule = RuleUpdate(freq=pb.RecurrenceRuleFrequency.HOURLY, byminutes=[15])
    new = updated(["recurrence"], recurrence=rule)
    assert new.recurrence == RecurrenceRule(frequency=Frequency.HOURLY, byminutes=(15,))
    assert new.end_time is None
    cleared = updated(["recurrence"])
    assert cleared == replace(expect(recurrence=None), end_time=T0 + HOUR)


@pytest.mark.parametrize(
    ("field", "value", "rule_changes"),
    [
        ("freq", pb.RecurrenceRuleFrequency.WEEKLY, {"frequency": Frequency.WEEKLY}),
        ("interval", 7, {"interval": 7}),
        ("interval", 0, {"interval": 1}),
        ("end_criteria", end_criteria_to_proto(EndCriteria(count=2)),
         {"end_criteria": EndCriteria(count=2)}),
        ("byminutes", [45], {"byminutes": (45,)}),
        ("byhours", [3, 1], {"byhours": (1, 3)}),
        ("byweekdays", [pb.RecurrenceRuleWeekday.SUNDAY], {"byweekdays": (Weekday.SUNDAY,)}),
        ("bymonthdays", [-1], {"bymonthdays": (-1,)}),
        ("bymonths", [12], {"bymonths": (12,)}),
    ],
)  # fmt: skip
def test_update_recurrence_field(
    field: str, value: object, rule_changes: dict[str, object]
) -> None:
    new = updated([f"recurrence.{field}"], recurrence=RuleUpdate(**{field: value}))  # type: ignore[arg-type]
    assert new.recurrence == replace(RULE, **rule_changes)  # type: ignore[arg-type]
    assert (new.start_time, new.update_time, new.type) == (T0, LATER, BASE.type)


@pytest.mark.parametrize(
    ("field", "rule_changes"),
    [
        ("freq", {"frequency": Frequency.UNSPECIFIED}),
        ("interval", {"interval": 1}),
        ("end_criteria", {"end_criteria": None}),
        ("byminutes", {"byminutes": ()}),
        ("byhours", {"byhours": ()}),
        ("byweekdays", {"byweekdays": ()}),
        ("bymonthdays", {"bymonthdays": ()}),
        ("bymonths", {"bymonths": ()}),
    ],
)
def test_clear_recurrence_field(field: str, rule_changes: dict[str, object]) -> None:
    for update in ({}, {"recurrence": RuleUpdate()}):
        request = update_request(BASE.id, [f"recurrence.{field}"], **update)
        new = apply_update(BASE, request, now=LATER)
        assert new.recurrence == replace(RULE, **rule_changes)  # type: ignore[arg-type]


def test_recurrence_field_on_a_one_off_creates_a_rule() -> None:
    one_off = replace(BASE, recurrence=None)
    new = updated(
        ["recurrence.freq", "recurrence.end_criteria"],
        base=one_off,
        recurrence=RuleUpdate(
            freq=pb.RecurrenceRuleFrequency.DAILY,
            end_criteria=end_criteria_to_proto(EndCriteria(count=2)),
        ),
    )
    assert new == replace(
        expect(one_off),
        recurrence=RecurrenceRule(frequency=Frequency.DAILY, end_criteria=EndCriteria(count=2)),
        end_time=datetime(2030, 1, 2, 9, tzinfo=UTC),
    )


def test_paths_apply_in_order_and_repeats_are_harmless() -> None:
    rule = RuleUpdate(freq=pb.RecurrenceRuleFrequency.MINUTELY, interval=5)
    new = updated(
        ["recurrence", "recurrence.byhours", "duration", "duration", "recurrence.byhours"],
        recurrence=rule,
        duration=30,
    )
    assert new == expect(
        recurrence=RecurrenceRule(frequency=Frequency.MINUTELY, interval=5),
        duration=timedelta(seconds=30),
    )


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["foo"], "update_mask has unknown path 'foo'"),
        (["duration", "type"], "update_mask has unknown path 'type'"),
        (["is_dry_run"], "update_mask has unknown path 'is_dry_run'"),
        (["active"], "update_mask has unknown path 'active'"),
        (["recurrence.frequency"], "update_mask has unknown path 'recurrence.frequency'"),
        (["recurrence.end_criteria.count"],
         "update_mask has unknown path 'recurrence.end_criteria.count'"),
        ([], "update_mask must name at least one field to update"),
    ],
)  # fmt: skip
def test_bad_masks(paths: list[str], message: str) -> None:
    with pytest.raises(ApiError) as info:
        updated(paths, duration=5)
    assert api_error(info) == ("INVALID_ARGUMENT", message)


def test_missing_mask_is_rejected() -> None:
    request = pb.UpdateMicrogridDispatchRequest(microgrid_id=1, dispatch_id=BASE.id)
    with pytest.raises(ApiError) as info:
        apply_update(BASE, request, now=LATER)
    assert api_error(info) == (
        "INVALID_ARGUMENT",
        "update_mask must name at least one field to update",
    )


@pytest.mark.parametrize(
    ("paths", "update", "message"),
    [
        (["recurrence.bymonths"], {"recurrence": RuleUpdate(bymonths=[0])},
         "bymonths values must be 1..12, got 0"),
        (["recurrence.end_criteria"], {"recurrence": RuleUpdate(
            end_criteria=end_criteria_to_proto(EndCriteria(until=T0)))},
         "recurrence.end_criteria.until must be after start_time 2030-01-01T08:00:00+00:00, "
         "got 2030-01-01T08:00:00+00:00"),
        (["recurrence.end_criteria"], {"recurrence": RuleUpdate(
            end_criteria=pb.RecurrenceRuleEndCriteria(count=0))},
         "end_criteria.count must be in 1..4096, got 0"),
        (["payload"], {"payload": payload_to_proto({"x": {"a": {"b": {"c": {"d": {}}}}}})},
         "payload.x.a.b.c.d nests deeper than 5 levels"),
    ],
)  # fmt: skip
def test_model_errors_become_invalid_argument(
    paths: list[str], update: dict[str, object], message: str
) -> None:
    with pytest.raises(ApiError) as info:
        apply_update(BASE, update_request(BASE.id, paths, **update), now=LATER)
    assert api_error(info) == ("INVALID_ARGUMENT", message)


def test_store_update_persists(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DispatchStore.open(path) as store:
        created = store.create(1, data(), start_immediately=False, now=NOW)
        request = update_request(created.id, ["duration", "is_active"], is_active=False)
        new = store.update(1, request, now=LATER)
        assert new == replace(created, duration=None, active=False, update_time=LATER,
                              end_time=None)  # fmt: skip
        assert store.get(1, created.id) == new
    with DispatchStore.open(path) as store:
        assert store.dispatches(1) == {created.id: new}


def test_failed_update_changes_nothing(store: DispatchStore) -> None:
    created = store.create(1, data(), start_immediately=False, now=NOW)
    with pytest.raises(ApiError):
        store.update(1, update_request(created.id, ["duration", "bogus"], duration=1), now=LATER)
    assert store.get(1, created.id) == created


# -- durability ---------------------------------------------------------------------------


def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    rule = RecurrenceRule(frequency=Frequency.WEEKLY, byweekdays=(Weekday.TUESDAY,),
                          end_criteria=EndCriteria(until=datetime(2030, 3, 1, tzinfo=UTC)))  # fmt: skip
    with DispatchStore.open(path) as store:
        store.create(1, data(recurrence=rule), start_immediately=False, now=NOW)
        msg = data(duration=None, active=False)
        msg.target = target_to_proto(TargetCategories.of(ComponentCategory.INVERTER))
        msg.is_dry_run = True
        store.create(2, msg, start_immediately=True, now=NOW)
        doomed = store.create(1, data(), start_immediately=False, now=NOW)
        store.update(1, update_request(1, ["recurrence.interval"],
                                       recurrence=RuleUpdate(interval=3)), now=LATER)  # fmt: skip
        store.delete(1, doomed.id)
        before = {m: dict(store.dispatches(m)) for m in (1, 2)}
    assert [len(v) for v in before.values()] == [1, 1]
    with DispatchStore.open(path) as store:
        assert {m: dict(store.dispatches(m)) for m in (1, 2)} == before
        assert store.skipped_rows == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_schema_version_is_1() -> None:
    assert SCHEMA_VERSION == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    DispatchStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(StoreError) as info:
        DispatchStore.open(path)
    assert str(info.value) == (
        f"dispatch store {str(path)!r} has schema version 2, newer than the version 1 this "
        "release understands; upgrade trio-dispatch"
    )


def test_a_store_file_has_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DispatchStore.open(path):
        with pytest.raises(StoreError) as info:
            DispatchStore.open(path)
        assert str(info.value) == f"dispatch store {str(path)!r} is open in another store"
    DispatchStore.open(path).close()


def test_undecodable_rows_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.db"
    with DispatchStore.open(path) as store:
        kept = store.create(1, data(), start_immediately=False, now=NOW)
        store.create(1, data(), start_immediately=False, now=NOW)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE dispatches SET body = x'0a00' WHERE dispatch_id = 2")
    conn.close()
    with caplog.at_level(logging.WARNING), DispatchStore.open(path) as store:
        assert store.dispatches(1) == {1: kept}
        assert store.skipped_rows == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping dispatch 2 of microgrid 1 in {str(path)!r}: cannot decode it: "
        "invalid dispatch 2 from server: data is missing"
    ]


def test_acknowledged_create_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    code = f"""
import os, signal
from datetime import datetime, UTC
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch.server._store import DispatchStore

store = DispatchStore.open({str(path)!r})
data = pb.DispatchData(type="CRASH", start_time=datetime(2030, 1, 1, tzinfo=UTC),
                       duration=60, is_active=True)
d = store.create(5, data, start_immediately=False, now=datetime(2029, 12, 31, tzinfo=UTC))
print(d.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (-signal.SIGKILL, "")
    dispatch_id = int(proc.stdout)
    with DispatchStore.open(path) as store:
        assert store.get(5, dispatch_id) == Dispatch(
            id=dispatch_id,
            type="CRASH",
            start_time=datetime(2030, 1, 1, tzinfo=UTC),
            duration=timedelta(seconds=60),
            create_time=NOW,
            update_time=NOW,
            end_time=datetime(2030, 1, 1, 0, 1, tzinfo=UTC),
        )
