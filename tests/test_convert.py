"""Model <-> protobuf conversion: lossless for valid data, clear errors for bad data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from frequenz.api.dispatch.v1 import dispatch_pb2 as pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dispatch import (
    BatteryType,
    ComponentCategory,
    Dispatch,
    EndCriteria,
    EvChargerType,
    Frequency,
    InvalidDispatchError,
    InverterType,
    RecurrenceRule,
    TargetCategories,
    TargetCategory,
    TargetIds,
    Weekday,
)
from trio_dispatch._convert import (
    dispatch_from_pb2,
    dispatch_to_proto,
    payload_from_proto,
    payload_to_proto,
    rule_from_proto,
    rule_to_proto,
    target_from_proto,
    target_to_proto,
)
from trio_dispatch._proto.frequenz.api.dispatch import v1 as pb
from trio_dispatch._proto.google import protobuf as pb_wkt

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def decode(wire: bytes) -> Dispatch:
    """What a client or the server's store does with a dispatch's bytes."""
    return dispatch_from_pb2(pb2.Dispatch.FromString(wire))


utc_times = st.integers(0, 60 * 365 * 86400 * 10**6).map(
    lambda us: EPOCH + timedelta(microseconds=us)
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
subtypes = {
    ComponentCategory.BATTERY: st.sampled_from(BatteryType),
    ComponentCategory.INVERTER: st.sampled_from(InverterType),
    ComponentCategory.EV_CHARGER: st.sampled_from(EvChargerType),
}


@st.composite
def target_categories(draw: st.DrawFn) -> TargetCategory:
    category = draw(
        st.sampled_from(ComponentCategory) | st.integers(20, 200).map(ComponentCategory)
    )
    subtype = draw(st.none() | subtypes[category]) if category in subtypes else None
    return TargetCategory(category=category, type=subtype)


targets = st.builds(
    TargetIds, ids=st.frozensets(st.integers(0, 2**64 - 1), max_size=5)
) | st.builds(TargetCategories, categories=st.frozensets(target_categories(), max_size=4))


@st.composite
def rules(draw: st.DrawFn, start: datetime) -> RecurrenceRule:
    frequency = draw(st.sampled_from(Frequency))
    end = draw(
        st.none()
        | st.builds(EndCriteria, count=st.integers(1, 4096))
        | st.builds(
            EndCriteria,
            until=st.integers(1, 10**12).map(lambda us: start + timedelta(microseconds=us)),
        )
    )
    return RecurrenceRule(
        frequency=frequency,
        interval=draw(st.integers(1 if frequency else 0, 2**32 - 1)),
        end_criteria=end,
        byminutes=draw(st.lists(st.integers(0, 59), max_size=3)),
        byhours=draw(st.lists(st.integers(0, 23), max_size=3)),
        byweekdays=draw(st.lists(st.sampled_from(list(Weekday)[1:]), max_size=3)),
        bymonthdays=draw(st.lists(st.integers(-31, 31).filter(bool), max_size=3)),
        bymonths=draw(st.lists(st.integers(1, 12), max_size=3)),
    )


@st.composite
def dispatches(draw: st.DrawFn) -> Dispatch:
    start = draw(utc_times)
    return Dispatch(
        id=draw(st.integers(0, 2**64 - 1)),
        type=draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        start_time=start,
        duration=draw(st.none() | st.integers(0, 2**32 - 1).map(lambda s: timedelta(seconds=s))),
        target=draw(targets),
        active=draw(st.booleans()),
        dry_run=draw(st.booleans()),
        payload=draw(st.dictionaries(st.text(max_size=5), json_values, max_size=4)),
        recurrence=draw(st.none() | rules(start)),
        create_time=draw(st.none() | utc_times),
        update_time=draw(st.none() | utc_times),
        end_time=draw(st.none() | utc_times),
    )


@settings(max_examples=300, deadline=None)
@given(dispatches())
def test_round_trip_through_the_wire_is_lossless(dispatch: Dispatch) -> None:
    wire = bytes(dispatch_to_proto(dispatch))
    back = decode(wire)
    assert back == dispatch
    assert back.target == dispatch.target
    assert back.recurrence == dispatch.recurrence


@settings(max_examples=200, deadline=None)
@given(dispatches())
def test_the_server_side_decoders_agree(dispatch: Dispatch) -> None:
    # The server reads targets, rules and payloads of requests with the betterproto2
    # decoders; they must agree with the official-class decoder used for whole dispatches.
    target = target_from_proto(pb.TargetComponents.parse(bytes(target_to_proto(dispatch.target))))
    assert target == dispatch.target
    rule = rule_to_proto(dispatch.recurrence)
    assert rule_from_proto(None if rule is None else pb.RecurrenceRule.parse(bytes(rule))) == (
        dispatch.recurrence
    )
    payload = pb_wkt.Struct.parse(bytes(payload_to_proto(dispatch.payload)))
    assert payload_from_proto(payload) == decode(bytes(dispatch_to_proto(dispatch))).payload


def test_payload_numbers_come_back_as_floats() -> None:
    d = Dispatch(id=1, type="T", start_time=EPOCH, payload={"n": 3, "l": [1, 2.5]})
    back = decode(bytes(dispatch_to_proto(d)))
    assert back.payload == {"n": 3.0, "l": [1.0, 2.5]}
    assert type(back.payload["n"]) is float


def test_deprecated_category_set_is_read_as_categories_without_subtype() -> None:
    # Built on the wire by hand: field 4 (target) holding field 2 (component_categories)
    # with packed categories BATTERY (5) and METER (2).
    data = pb.DispatchData(type="T", start_time=EPOCH)
    raw = bytes(pb.Dispatch(metadata=pb.DispatchMetadata(dispatch_id=9), data=data))
    category_set = bytes([0x0A, 2, 5, 2])
    target = bytes([0x12, len(category_set), *category_set])
    raw = _append_to_data(raw, bytes([0x22, len(target), *target]))
    dispatch = decode(raw)
    assert dispatch.target == TargetCategories.of(
        ComponentCategory.BATTERY, ComponentCategory.METER
    )


def _append_to_data(raw_dispatch: bytes, extra: bytes) -> bytes:
    msg = pb.Dispatch.parse(raw_dispatch)
    meta = bytes(msg.metadata)  # type: ignore[arg-type]
    data = bytes(msg.data) + extra  # type: ignore[arg-type]
    return bytes([0x0A, len(meta), *meta, 0x12, len(data), *data])


def test_unknown_component_categories_are_kept() -> None:
    d = Dispatch(
        id=1, type="T", start_time=EPOCH, target=TargetCategories.of(ComponentCategory(42))
    )
    back = decode(bytes(dispatch_to_proto(d)))
    assert back.target == TargetCategories.of(ComponentCategory(42))


def test_zero_interval_on_the_wire_means_one() -> None:
    msg = dispatch_to_proto(
        Dispatch(
            id=1, type="T", start_time=EPOCH, recurrence=RecurrenceRule(frequency=Frequency.DAILY)
        )
    )
    msg.data.recurrence.interval = 0  # type: ignore[union-attr]
    assert decode(bytes(msg)).recurrence == RecurrenceRule(frequency=Frequency.DAILY, interval=1)


def _bad(mutate: object) -> bytes:
    msg = dispatch_to_proto(
        Dispatch(
            id=12, type="T", start_time=EPOCH, recurrence=RecurrenceRule(frequency=Frequency.DAILY)
        )
    )
    mutate(msg)  # type: ignore[operator]
    return bytes(msg)


@pytest.mark.parametrize(
    ("mutate", "dispatch_id", "reason"),
    [
        (lambda m: setattr(m, "data", None), 12, "data is missing"),
        (lambda m: setattr(m, "metadata", None), 0, "metadata is missing"),
        (lambda m: setattr(m.data, "start_time", None), 12, "start_time is missing"),
        (lambda m: setattr(m.data, "type", ""), 12, "type must not be empty, got ''"),
        (
            lambda m: setattr(m.data.recurrence, "freq", pb.RecurrenceRuleFrequency(9)),
            12,
            "recurrence.freq 9 is not a known frequency",
        ),
        (
            lambda m: setattr(m.data.recurrence, "byweekdays", [pb.RecurrenceRuleWeekday(8)]),
            12,
            "recurrence.byweekdays 8 is not a known weekday",
        ),
        (
            lambda m: setattr(m.data.recurrence, "byhours", [24]),
            12,
            "byhours values must be 0..23, got 24",
        ),
        (
            lambda m: setattr(
                m.data.recurrence, "end_criteria", pb.RecurrenceRuleEndCriteria(count=0)
            ),
            12,
            "end_criteria.count must be in 1..4096, got 0",
        ),
    ],
)
def test_invalid_data_from_a_server(mutate: object, dispatch_id: int, reason: str) -> None:
    with pytest.raises(InvalidDispatchError) as info:
        decode(_bad(mutate))
    assert info.value.dispatch_id == dispatch_id
    assert info.value.reason == reason
    assert str(info.value) == f"invalid dispatch {dispatch_id} from server: {reason}"


def test_impossible_category_subtype_is_invalid() -> None:
    msg = dispatch_to_proto(Dispatch(id=5, type="T", start_time=EPOCH))
    msg.data.target = pb.TargetComponents(  # type: ignore[union-attr]
        component_categories_types=pb.TargetComponentsCategoryTypeSet(
            categories=[pb.TargetComponentsCategoryAndType(category=3, battery=1)]  # type: ignore[arg-type]
        )
    )
    with pytest.raises(
        InvalidDispatchError, match=re.escape("belongs to category BATTERY, not to INVERTER")
    ):
        decode(bytes(msg))
