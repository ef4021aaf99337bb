"""Wire compatibility of the generated betterproto2 bindings with the official protobuf classes.

Every case is a pair (our betterproto2 message, official ``dispatch_pb2`` message) built
independently from the same concrete values. Each case is checked in both directions:

* bytes of our message parse with the official class into a message equal to the official one;
* bytes of the official message parse with our class into a message equal to ours.

A coverage test makes sure the cases together set every field of every message of the
dispatch API (and of the common types it uses) at least once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import betterproto2
import pytest
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as off_ec,
)
from frequenz.api.common.v1alpha8.pagination import pagination_info_pb2, pagination_params_pb2
from frequenz.api.common.v1alpha8.streaming import event_pb2
from frequenz.api.common.v1alpha8.types import interval_pb2
from frequenz.api.dispatch.v1 import dispatch_pb2 as off
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as OfficialMessage

from trio_dispatch._proto.frequenz.api.common.v1alpha8 import pagination as our_pagination
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import streaming as our_streaming
from trio_dispatch._proto.frequenz.api.common.v1alpha8 import types as our_types
from trio_dispatch._proto.frequenz.api.common.v1alpha8.microgrid import (
    electrical_components as our_ec,
)
from trio_dispatch._proto.frequenz.api.dispatch import v1 as ours
from trio_dispatch._proto.google import protobuf as our_wkt

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Distinct instants, all with microseconds.
T_CREATE = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T_UPDATE = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
T_END = datetime(2027, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
T_START = datetime(2026, 4, 5, 6, 7, 8, 901234, tzinfo=UTC)
T_UNTIL = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
T_FROM = datetime(2025, 5, 6, 7, 8, 9, 12345, tzinfo=UTC)
T_TO = datetime(2025, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)

# uint64 identifiers beyond the 32-bit range, up to the uint64 maximum.
MICROGRID_ID = 2**40 + 17
DISPATCH_ID = 2**63 + 5
UINT64_MAX = 2**64 - 1

PAYLOAD: dict[str, Any] = {
    "power_w": 1500.25,
    "zero": 0.0,
    "negative": -0.125,
    "enabled": True,
    "disabled": False,
    "nothing": None,
    "name": "peak shaving",
    "empty_string": "",
    "unicode": "Grüße ⚡ 電力",
    "tags": ["a", 2.5, False, None, {"k": "v"}, [], [1.0, [2.0]]],
    "nested": {"deep": {"x": 1e300, "list": [{"y": True}, {}]}, "empty": {}},
    "empty_list": [],
}


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    """Official Timestamp, computed by hand (not through protobuf's datetime helpers)."""
    delta = dt - EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta // timedelta(seconds=1), nanos=delta.microseconds * 1000
    )


def _official_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


@dataclass(frozen=True)
class Case:
    ours: betterproto2.Message
    official: OfficialMessage


CASES: dict[str, Callable[[], Case]] = {}


def case(builder: Callable[[], Case]) -> Callable[[], Case]:
    CASES[builder.__name__.removeprefix("case_")] = builder
    return builder


# ---------------------------------------------------------------------------------------------
# Building blocks: each returns (ours, official) built from the same values.


def interval(
    start: datetime | None, end: datetime | None
) -> tuple[our_types.Interval, interval_pb2.Interval]:
    official = interval_pb2.Interval()
    if start is not None:
        official.start_time.CopyFrom(_ts(start))
    if end is not None:
        official.end_time.CopyFrom(_ts(end))
    return our_types.Interval(start_time=start, end_time=end), official


def target_ids() -> tuple[ours.TargetComponents, off.TargetComponents]:
    ids = [2**33 + 1, 5, UINT64_MAX]
    return (
        ours.TargetComponents(component_ids=ours.TargetComponentsIdSet(ids=ids)),
        off.TargetComponents(component_ids=off.TargetComponents.IdSet(ids=ids)),
    )


def target_deprecated_categories() -> tuple[ours.TargetComponents, off.TargetComponents]:
    # tools/generate_proto.py drops the deprecation marks, so this builds without a warning
    # (with pytest's warnings-as-errors, a warning here would fail the test).
    category_set = ours.TargetComponentsCategorySet(
        categories=[
            our_ec.ElectricalComponentCategory.BATTERY,
            our_ec.ElectricalComponentCategory.EV_CHARGER,
            our_ec.ElectricalComponentCategory.STEAM_BOILER,
        ]
    )
    target = ours.TargetComponents(component_categories=category_set)
    official = off.TargetComponents(
        component_categories=off.TargetComponents.CategorySet(
            categories=[
                off_ec.ELECTRICAL_COMPONENT_CATEGORY_BATTERY,
                off_ec.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER,
                off_ec.ELECTRICAL_COMPONENT_CATEGORY_STEAM_BOILER,
            ]
        )
    )
    return target, official


def target_category_types() -> tuple[ours.TargetComponents, off.TargetComponents]:
    category = our_ec.ElectricalComponentCategory
    our_target = ours.TargetComponents(
        component_categories_types=ours.TargetComponentsCategoryTypeSet(
            categories=[
                ours.TargetComponentsCategoryAndType(
                    category=category.BATTERY, battery=our_ec.BatteryType.LI_ION
                ),
                ours.TargetComponentsCategoryAndType(
                    category=category.INVERTER, inverter=our_ec.InverterType.HYBRID
                ),
                ours.TargetComponentsCategoryAndType(
                    category=category.EV_CHARGER, ev_charger=our_ec.EvChargerType.DC
                ),
                # A subtype explicitly set to its zero value is still present on the wire.
                ours.TargetComponentsCategoryAndType(
                    category=category.INVERTER, inverter=our_ec.InverterType.UNSPECIFIED
                ),
                # Category only, no subtype.
                ours.TargetComponentsCategoryAndType(category=category.METER),
            ]
        )
    )
    and_type = off.TargetComponents.CategoryAndType
    official = off.TargetComponents(
        component_categories_types=off.TargetComponents.CategoryTypeSet(
            categories=[
                and_type(
                    category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_BATTERY,
                    battery=off_ec.BATTERY_TYPE_LI_ION,
                ),
                and_type(
                    category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER,
                    inverter=off_ec.INVERTER_TYPE_HYBRID,
                ),
                and_type(
                    category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER,
                    ev_charger=off_ec.EV_CHARGER_TYPE_DC,
                ),
                and_type(
                    category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER,
                    inverter=off_ec.INVERTER_TYPE_UNSPECIFIED,
                ),
                and_type(category=off_ec.ELECTRICAL_COMPONENT_CATEGORY_METER),
            ]
        )
    )
    return our_target, official


BY_RULES: dict[str, list[int]] = {
    "byminutes": [0, 15, 59],
    "byhours": [0, 7, 23],
    "bymonthdays": [-31, -1, 1, 15, 31],
    "bymonths": [1, 6, 12],
}
OUR_WEEKDAYS = [ours.RecurrenceRuleWeekday.MONDAY, ours.RecurrenceRuleWeekday.SUNDAY]
OFFICIAL_WEEKDAYS = [off.RecurrenceRule.WEEKDAY_MONDAY, off.RecurrenceRule.WEEKDAY_SUNDAY]


def rule_count() -> tuple[ours.RecurrenceRule, off.RecurrenceRule]:
    return (
        ours.RecurrenceRule(
            freq=ours.RecurrenceRuleFrequency.WEEKLY,
            interval=3,
            end_criteria=ours.RecurrenceRuleEndCriteria(count=4_000_000_000),
            byweekdays=OUR_WEEKDAYS,
            **BY_RULES,
        ),
        off.RecurrenceRule(
            freq=off.RecurrenceRule.FREQUENCY_WEEKLY,
            interval=3,
            end_criteria=off.RecurrenceRule.EndCriteria(count=4_000_000_000),
            byweekdays=OFFICIAL_WEEKDAYS,
            **BY_RULES,
        ),
    )


def rule_until() -> tuple[ours.RecurrenceRule, off.RecurrenceRule]:
    return (
        ours.RecurrenceRule(
            freq=ours.RecurrenceRuleFrequency.MINUTELY,
            interval=90,
            end_criteria=ours.RecurrenceRuleEndCriteria(until_time=T_UNTIL),
            byweekdays=[ours.RecurrenceRuleWeekday.WEDNESDAY],
            bymonthdays=[-2],
        ),
        off.RecurrenceRule(
            freq=off.RecurrenceRule.FREQUENCY_MINUTELY,
            interval=90,
            end_criteria=off.RecurrenceRule.EndCriteria(until_time=_ts(T_UNTIL)),
            byweekdays=[off.RecurrenceRule.WEEKDAY_WEDNESDAY],
            bymonthdays=[-2],
        ),
    )


def dispatch(
    dispatch_id: int = DISPATCH_ID,
    target: tuple[ours.TargetComponents, off.TargetComponents] | None = None,
    recurrence: tuple[ours.RecurrenceRule, off.RecurrenceRule] | None = None,
) -> tuple[ours.Dispatch, off.Dispatch]:
    our_target, official_target = target if target is not None else target_ids()
    our_rule, official_rule = recurrence if recurrence is not None else rule_count()
    our_dispatch = ours.Dispatch(
        metadata=ours.DispatchMetadata(
            dispatch_id=dispatch_id,
            create_time=T_CREATE,
            update_time=T_UPDATE,
            end_time=T_END,
        ),
        data=ours.DispatchData(
            type="BATTERY_PEAK_SHAVING",
            start_time=T_START,
            duration=86_400 * 3 + 1,
            target=our_target,
            is_active=True,
            is_dry_run=True,
            payload=our_wkt.Struct.from_dict(PAYLOAD),
            recurrence=our_rule,
        ),
    )
    official_dispatch = off.Dispatch(
        metadata=off.DispatchMetadata(
            dispatch_id=dispatch_id,
            create_time=_ts(T_CREATE),
            update_time=_ts(T_UPDATE),
            end_time=_ts(T_END),
        ),
        data=off.DispatchData(
            type="BATTERY_PEAK_SHAVING",
            start_time=_ts(T_START),
            duration=86_400 * 3 + 1,
            target=official_target,
            is_active=True,
            is_dry_run=True,
            payload=_official_struct(PAYLOAD),
            recurrence=official_rule,
        ),
    )
    return our_dispatch, official_dispatch


def dispatch_filter(
    recurring: bool,
) -> tuple[ours.DispatchFilter, off.DispatchFilter]:
    """A filter with every field set; `recurring` picks the branch of the `recurrence` oneof."""
    our_ids, official_ids = target_ids()
    our_types_target, official_types_target = target_category_types()
    our_start, official_start = interval(T_FROM, T_TO)
    our_end, official_end = interval(T_TO, None)
    our_update, official_update = interval(None, T_FROM)
    common: dict[str, Any] = {
        "is_active": False,  # explicitly false: present on the wire
        "is_dry_run": True,
        "dispatch_ids": [DISPATCH_ID, 1, UINT64_MAX],
        "queries": ["peak", "#42", "ümlaut"],
    }
    if recurring:
        # is_recurring=False is a set branch of the oneof, not "unset".
        our_branch: dict[str, Any] = {"is_recurring": False}
        official_branch: dict[str, Any] = {"is_recurring": False}
    else:
        our_branch = {"filter": ours.DispatchFilterRecurrenceFilter()}
        official_branch = {"filter": off.DispatchFilter.RecurrenceFilter()}
    return (
        ours.DispatchFilter(
            targets=[our_ids, our_types_target],
            start_time_interval=our_start,
            end_time_interval=our_end,
            update_time_interval=our_update,
            **common,
            **our_branch,
        ),
        off.DispatchFilter(
            targets=[official_ids, official_types_target],
            start_time_interval=official_start,
            end_time_interval=official_end,
            update_time_interval=official_update,
            **common,
            **official_branch,
        ),
    )


# ---------------------------------------------------------------------------------------------
# The cases.


@case
def case_list_request_is_recurring() -> Case:
    our_filter, official_filter = dispatch_filter(recurring=True)
    return Case(
        ours.ListMicrogridDispatchesRequest(
            microgrid_id=MICROGRID_ID,
            filter=our_filter,
            sort_options=ours.SortOptions(
                sort_field=ours.SortField.LAST_UPDATE_TIME,
                sort_order=ours.SortOrder.DESCENDING,
            ),
            pagination_params=our_pagination.PaginationParams(page_size=250),
        ),
        off.ListMicrogridDispatchesRequest(
            microgrid_id=MICROGRID_ID,
            filter=official_filter,
            sort_options=off.SortOptions(
                sort_field=off.SORT_FIELD_LAST_UPDATE_TIME,
                sort_order=off.SORT_ORDER_DESCENDING,
            ),
            pagination_params=pagination_params_pb2.PaginationParams(page_size=250),
        ),
    )


@case
def case_list_request_recurrence_filter() -> Case:
    our_filter, official_filter = dispatch_filter(recurring=False)
    return Case(
        ours.ListMicrogridDispatchesRequest(
            microgrid_id=1,
            filter=our_filter,
            sort_options=ours.SortOptions(
                sort_field=ours.SortField.START_TIME, sort_order=ours.SortOrder.ASCENDING
            ),
            pagination_params=our_pagination.PaginationParams(page_token="opaque-token/2=="),
        ),
        off.ListMicrogridDispatchesRequest(
            microgrid_id=1,
            filter=official_filter,
            sort_options=off.SortOptions(
                sort_field=off.SORT_FIELD_START_TIME, sort_order=off.SORT_ORDER_ASCENDING
            ),
            pagination_params=pagination_params_pb2.PaginationParams(page_token="opaque-token/2=="),
        ),
    )


@case
def case_list_request_empty_filter() -> Case:
    return Case(
        ours.ListMicrogridDispatchesRequest(
            microgrid_id=MICROGRID_ID,
            filter=ours.DispatchFilter(),
            sort_options=ours.SortOptions(sort_field=ours.SortField.CREATE_TIME),
        ),
        off.ListMicrogridDispatchesRequest(
            microgrid_id=MICROGRID_ID,
            filter=off.DispatchFilter(),
            sort_options=off.SortOptions(sort_field=off.SORT_FIELD_CREATE_TIME),
        ),
    )


@case
def case_list_response() -> Case:
    first_ours, first_official = dispatch(DISPATCH_ID)
    second_ours, second_official = dispatch(7, target_category_types(), rule_until())
    return Case(
        ours.ListMicrogridDispatchesResponse(
            dispatches=[first_ours, second_ours],
            pagination_info=our_pagination.PaginationInfo(
                total_items=4_000_000_001, next_page_token="next/page"
            ),
        ),
        off.ListMicrogridDispatchesResponse(
            dispatches=[first_official, second_official],
            pagination_info=pagination_info_pb2.PaginationInfo(
                total_items=4_000_000_001, next_page_token="next/page"
            ),
        ),
    )


@case
def case_list_response_last_page() -> Case:
    return Case(
        ours.ListMicrogridDispatchesResponse(
            dispatches=[],
            pagination_info=our_pagination.PaginationInfo(total_items=0),
        ),
        off.ListMicrogridDispatchesResponse(
            pagination_info=pagination_info_pb2.PaginationInfo(total_items=0),
        ),
    )


@case
def case_stream_request() -> Case:
    return Case(
        ours.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID),
        off.StreamMicrogridDispatchesRequest(microgrid_id=MICROGRID_ID),
    )


def _stream_response_case(our_event: our_streaming.Event, official_event: int) -> Case:
    our_dispatch, official_dispatch = dispatch(dispatch_id=2**32)
    return Case(
        ours.StreamMicrogridDispatchesResponse(dispatch=our_dispatch, event=our_event),
        off.StreamMicrogridDispatchesResponse(dispatch=official_dispatch, event=official_event),
    )


@case
def case_stream_response_created() -> Case:
    return _stream_response_case(our_streaming.Event.CREATED, event_pb2.EVENT_CREATED)


@case
def case_stream_response_updated() -> Case:
    return _stream_response_case(our_streaming.Event.UPDATED, event_pb2.EVENT_UPDATED)


@case
def case_stream_response_deleted() -> Case:
    return _stream_response_case(our_streaming.Event.DELETED, event_pb2.EVENT_DELETED)


@case
def case_create_request() -> Case:
    our_dispatch, official_dispatch = dispatch(target=target_category_types())
    assert our_dispatch.data is not None
    return Case(
        ours.CreateMicrogridDispatchRequest(
            microgrid_id=MICROGRID_ID,
            dispatch_data=our_dispatch.data,
            start_immediately=True,
        ),
        off.CreateMicrogridDispatchRequest(
            microgrid_id=MICROGRID_ID,
            dispatch_data=official_dispatch.data,
            start_immediately=True,
        ),
    )


@case
def case_create_request_start_immediately_false() -> Case:
    # What the upstream client sends: start_immediately explicitly False (present on the wire).
    return Case(
        ours.CreateMicrogridDispatchRequest(
            microgrid_id=3,
            dispatch_data=ours.DispatchData(type="DEMO", start_time=T_START, duration=900),
            start_immediately=False,
        ),
        off.CreateMicrogridDispatchRequest(
            microgrid_id=3,
            dispatch_data=off.DispatchData(type="DEMO", start_time=_ts(T_START), duration=900),
            start_immediately=False,
        ),
    )


@case
def case_create_response() -> Case:
    our_dispatch, official_dispatch = dispatch(recurrence=rule_until())
    return Case(
        ours.CreateMicrogridDispatchResponse(dispatch=our_dispatch),
        off.CreateMicrogridDispatchResponse(dispatch=official_dispatch),
    )


@case
def case_update_request() -> Case:
    our_target, official_target = target_category_types()
    paths = [
        "start_time",
        "duration",
        "target",
        "is_active",
        "payload",
        "recurrence.freq",
        "recurrence.interval",
        "recurrence.end_criteria.until_time",
        "recurrence.byminutes",
        "recurrence.byhours",
        "recurrence.byweekdays",
        "recurrence.bymonthdays",
        "recurrence.bymonths",
    ]
    return Case(
        ours.UpdateMicrogridDispatchRequest(
            microgrid_id=MICROGRID_ID,
            dispatch_id=DISPATCH_ID,
            update_mask=our_wkt.FieldMask(paths=paths),
            update=ours.UpdateMicrogridDispatchRequestDispatchUpdate(
                start_time=T_UPDATE,
                duration=0,
                target=our_target,
                is_active=False,
                payload=our_wkt.Struct.from_dict({"mode": "eco", "limits": [1.5, -2.5]}),
                recurrence=ours.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate(
                    freq=ours.RecurrenceRuleFrequency.YEARLY,
                    interval=0,
                    end_criteria=ours.RecurrenceRuleEndCriteria(until_time=T_UNTIL),
                    byweekdays=OUR_WEEKDAYS,
                    **BY_RULES,
                ),
            ),
        ),
        off.UpdateMicrogridDispatchRequest(
            microgrid_id=MICROGRID_ID,
            dispatch_id=DISPATCH_ID,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
            update=off.UpdateMicrogridDispatchRequest.DispatchUpdate(
                start_time=_ts(T_UPDATE),
                duration=0,
                target=official_target,
                is_active=False,
                payload=_official_struct({"mode": "eco", "limits": [1.5, -2.5]}),
                recurrence=off.UpdateMicrogridDispatchRequest.DispatchUpdate.RecurrenceRuleUpdate(
                    freq=off.RecurrenceRule.FREQUENCY_YEARLY,
                    interval=0,
                    end_criteria=off.RecurrenceRule.EndCriteria(until_time=_ts(T_UNTIL)),
                    byweekdays=OFFICIAL_WEEKDAYS,
                    **BY_RULES,
                ),
            ),
        ),
    )


@case
def case_update_request_partial() -> Case:
    # Only some fields present; the count branch of EndCriteria, count=0 explicitly.
    rule_update = ours.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate
    official_rule_update = off.UpdateMicrogridDispatchRequest.DispatchUpdate.RecurrenceRuleUpdate
    return Case(
        ours.UpdateMicrogridDispatchRequest(
            microgrid_id=2,
            dispatch_id=3,
            update_mask=our_wkt.FieldMask(paths=["recurrence.end_criteria.count"]),
            update=ours.UpdateMicrogridDispatchRequestDispatchUpdate(
                recurrence=rule_update(end_criteria=ours.RecurrenceRuleEndCriteria(count=0)),
            ),
        ),
        off.UpdateMicrogridDispatchRequest(
            microgrid_id=2,
            dispatch_id=3,
            update_mask=field_mask_pb2.FieldMask(paths=["recurrence.end_criteria.count"]),
            update=off.UpdateMicrogridDispatchRequest.DispatchUpdate(
                recurrence=official_rule_update(
                    end_criteria=off.RecurrenceRule.EndCriteria(count=0)
                ),
            ),
        ),
    )


@case
def case_update_response() -> Case:
    our_dispatch, official_dispatch = dispatch(dispatch_id=UINT64_MAX)
    return Case(
        ours.UpdateMicrogridDispatchResponse(dispatch=our_dispatch),
        off.UpdateMicrogridDispatchResponse(dispatch=official_dispatch),
    )


@case
def case_get_request() -> Case:
    return Case(
        ours.GetMicrogridDispatchRequest(microgrid_id=MICROGRID_ID, dispatch_id=DISPATCH_ID),
        off.GetMicrogridDispatchRequest(microgrid_id=MICROGRID_ID, dispatch_id=DISPATCH_ID),
    )


@case
def case_get_response() -> Case:
    our_dispatch, official_dispatch = dispatch(target=target_ids(), recurrence=rule_until())
    return Case(
        ours.GetMicrogridDispatchResponse(microgrid_id=MICROGRID_ID, dispatch=our_dispatch),
        off.GetMicrogridDispatchResponse(microgrid_id=MICROGRID_ID, dispatch=official_dispatch),
    )


@case
def case_delete_request() -> Case:
    return Case(
        ours.DeleteMicrogridDispatchRequest(microgrid_id=UINT64_MAX, dispatch_id=2**32 + 1),
        off.DeleteMicrogridDispatchRequest(microgrid_id=UINT64_MAX, dispatch_id=2**32 + 1),
    )


@case
def case_delete_response() -> Case:
    return Case(
        ours.DeleteMicrogridDispatchResponse(microgrid_id=MICROGRID_ID, dispatch_id=DISPATCH_ID),
        off.DeleteMicrogridDispatchResponse(microgrid_id=MICROGRID_ID, dispatch_id=DISPATCH_ID),
    )


@case
def case_dispatch_component_ids() -> Case:
    return Case(*dispatch(target=target_ids()))


@case
def case_dispatch_deprecated_component_categories() -> Case:
    return Case(*dispatch(target=target_deprecated_categories()))


@case
def case_dispatch_component_categories_types() -> Case:
    return Case(*dispatch(target=target_category_types()))


@case
def case_dispatch_recurrence_count() -> Case:
    return Case(*dispatch(recurrence=rule_count()))


@case
def case_dispatch_recurrence_until_time() -> Case:
    return Case(*dispatch(recurrence=rule_until()))


@case
def case_dispatch_minimal() -> Case:
    # Only the required-in-practice fields; everything optional left unset.
    return Case(
        ours.Dispatch(
            metadata=ours.DispatchMetadata(dispatch_id=1, create_time=T_CREATE),
            data=ours.DispatchData(type="X", start_time=T_START),
        ),
        off.Dispatch(
            metadata=off.DispatchMetadata(dispatch_id=1, create_time=_ts(T_CREATE)),
            data=off.DispatchData(type="X", start_time=_ts(T_START)),
        ),
    )


@case
def case_interval_both() -> Case:
    return Case(*interval(T_FROM, T_TO))


@case
def case_interval_start_only() -> Case:
    return Case(*interval(T_FROM, None))


@case
def case_interval_end_only() -> Case:
    return Case(*interval(None, T_TO))


@case
def case_pagination_params_size() -> Case:
    return Case(
        our_pagination.PaginationParams(page_size=0),
        pagination_params_pb2.PaginationParams(page_size=0),
    )


@case
def case_pagination_info() -> Case:
    return Case(
        our_pagination.PaginationInfo(total_items=12, next_page_token=""),
        pagination_info_pb2.PaginationInfo(total_items=12, next_page_token=""),
    )


@case
def case_payload_struct() -> Case:
    return Case(our_wkt.Struct.from_dict(PAYLOAD), _official_struct(PAYLOAD))


# ---------------------------------------------------------------------------------------------
# The tests.


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_ours_to_official(build: Callable[[], Case]) -> None:
    c = build()
    parsed = type(c.official).FromString(bytes(c.ours))
    assert parsed == c.official
    assert parsed.SerializeToString(deterministic=True) == c.official.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_official_to_ours(build: Callable[[], Case]) -> None:
    c = build()
    parsed = type(c.ours).parse(c.official.SerializeToString())
    assert parsed == c.ours


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_ours_round_trip(build: Callable[[], Case]) -> None:
    c = build()
    parsed = type(c.ours).parse(bytes(c.ours))
    assert parsed == c.ours


def _walk(message: OfficialMessage) -> Iterator[tuple[str, str]]:
    """Yield (message full name, field name) for every field set anywhere in `message`.

    Each message reached is also yielded with an empty field name, so that an empty message
    (DispatchFilter.RecurrenceFilter) counts as covered.
    """
    yield message.DESCRIPTOR.full_name, ""
    for field, value in message.ListFields():
        yield message.DESCRIPTOR.full_name, field.name
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        for item in value if field.is_repeated else [value]:
            yield from _walk(item)


def _all_messages(descriptors: list[Descriptor]) -> Iterator[Descriptor]:
    for descriptor in descriptors:
        if descriptor.GetOptions().map_entry:
            continue
        yield descriptor
        yield from _all_messages(list(descriptor.nested_types))


def test_cases_cover_every_field() -> None:
    covered: set[tuple[str, str]] = set()
    for build in CASES.values():
        covered.update(_walk(build().official))
    covered_messages = {name for name, _ in covered}
    files = [
        off.DESCRIPTOR,
        interval_pb2.DESCRIPTOR,
        pagination_params_pb2.DESCRIPTOR,
        pagination_info_pb2.DESCRIPTOR,
    ]
    missing: list[str] = []
    for file in files:
        for descriptor in _all_messages(list(file.message_types_by_name.values())):
            if descriptor.full_name not in covered_messages:
                missing.append(descriptor.full_name)
            missing.extend(
                f"{descriptor.full_name}.{field.name}"
                for field in descriptor.fields
                if (descriptor.full_name, field.name) not in covered
            )
    assert missing == []


# ---------------------------------------------------------------------------------------------
# Presence of optional fields across the wire.


def _data_pair(
    duration: int | None, end_time: datetime | None
) -> tuple[ours.Dispatch, off.Dispatch]:
    official = off.Dispatch(
        metadata=off.DispatchMetadata(dispatch_id=9),
        data=off.DispatchData(type="T"),
    )
    if duration is not None:
        official.data.duration = duration
    if end_time is not None:
        official.metadata.end_time.CopyFrom(_ts(end_time))
    our_dispatch = ours.Dispatch(
        metadata=ours.DispatchMetadata(dispatch_id=9, end_time=end_time),
        data=ours.DispatchData(type="T", duration=duration),
    )
    return our_dispatch, official


@pytest.mark.parametrize("duration", [None, 0, 1, 2**32 - 1])
@pytest.mark.parametrize("end_time", [None, EPOCH, T_END])
def test_optional_presence_ours_to_official(
    duration: int | None, end_time: datetime | None
) -> None:
    our_dispatch, _ = _data_pair(duration, end_time)
    parsed = off.Dispatch.FromString(bytes(our_dispatch))
    assert parsed.data.HasField("duration") is (duration is not None)
    assert parsed.metadata.HasField("end_time") is (end_time is not None)
    if duration is not None:
        assert parsed.data.duration == duration
    if end_time is not None:
        assert parsed.metadata.end_time == _ts(end_time)
    # Other optional fields never set stay unset as well.
    assert not parsed.data.HasField("start_time")
    assert not parsed.data.HasField("recurrence")
    assert not parsed.data.HasField("payload")
    assert not parsed.data.HasField("target")


@pytest.mark.parametrize("duration", [None, 0, 1, 2**32 - 1])
@pytest.mark.parametrize("end_time", [None, EPOCH, T_END])
def test_optional_presence_official_to_ours(
    duration: int | None, end_time: datetime | None
) -> None:
    _, official = _data_pair(duration, end_time)
    parsed = ours.Dispatch.parse(official.SerializeToString())
    assert parsed.data is not None
    assert parsed.metadata is not None
    assert parsed.data.duration == duration  # None when unset, 0 when zero
    assert parsed.metadata.end_time == end_time
    assert parsed.data.start_time is None
    assert parsed.data.recurrence is None
    assert parsed.data.payload is None
    assert parsed.data.target is None
    assert parsed.metadata.create_time is None


def test_zero_duration_differs_from_unset_on_the_wire() -> None:
    unset = bytes(ours.DispatchData(type="T"))
    zero = bytes(ours.DispatchData(type="T", duration=0))
    assert unset != zero
    assert off.DispatchData.FromString(unset) == off.DispatchData(type="T")
    assert off.DispatchData.FromString(zero) == off.DispatchData(type="T", duration=0)
    assert ours.DispatchData.parse(zero).duration == 0
    assert ours.DispatchData.parse(unset).duration is None


# ---------------------------------------------------------------------------------------------
# Oneofs and the payload Struct seen through our API.


def test_which_one_of_after_parse() -> None:
    _, official = target_category_types()
    parsed = ours.TargetComponents.parse(official.SerializeToString())
    name, value = betterproto2.which_one_of(parsed, "components")
    assert name == "component_categories_types"
    assert isinstance(value, ours.TargetComponentsCategoryTypeSet)
    branches = [betterproto2.which_one_of(c, "type") for c in value.categories]
    assert branches == [
        ("battery", our_ec.BatteryType.LI_ION),
        ("inverter", our_ec.InverterType.HYBRID),
        ("ev_charger", our_ec.EvChargerType.DC),
        ("inverter", our_ec.InverterType.UNSPECIFIED),
        ("", None),
    ]

    _, official_filter = dispatch_filter(recurring=True)
    parsed_filter = ours.DispatchFilter.parse(official_filter.SerializeToString())
    assert betterproto2.which_one_of(parsed_filter, "recurrence") == ("is_recurring", False)
    assert betterproto2.which_one_of(ours.DispatchFilter(), "recurrence") == ("", None)


def test_payload_struct_to_and_from_dict() -> None:
    parsed = our_wkt.Struct.parse(_official_struct(PAYLOAD).SerializeToString())
    assert parsed.to_dict() == PAYLOAD
    official = struct_pb2.Struct.FromString(bytes(our_wkt.Struct.from_dict(PAYLOAD)))
    assert MessageToDict(official) == PAYLOAD
