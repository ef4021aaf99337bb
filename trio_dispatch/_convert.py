"""Conversion between the model and the generated protobuf messages.

This is the only module above the transport that knows the generated code. Rules:

* Model to protobuf is lossless for every valid model value, and protobuf to model
  gives back an equal model value (payload numbers aside: see `_payload`).
* Targets by category are written with the ``component_categories_types`` branch; the
  deprecated ``component_categories`` branch is read (as categories without subtype)
  but never written.
* A recurrence rule whose interval is 0 on the wire means the protobuf default, i.e. 1.
* Data from a server that the model cannot represent (a missing start time, an unknown
  frequency, an impossible target) raises `InvalidDispatchError` naming the dispatch id
  and the reason. Unknown component categories and subtypes are kept, not refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import betterproto2
from frequenz.api.dispatch.v1 import dispatch_pb2 as pb2
from google.protobuf import struct_pb2, timestamp_pb2

from ._exceptions import InvalidDispatchError
from ._model import Dispatch
from ._payload import Payload
from ._proto.frequenz.api.common.v1alpha8.microgrid import electrical_components as pb_ec
from ._proto.frequenz.api.dispatch import v1 as pb
from ._proto.google import protobuf as pb_wkt
from ._rule import EndCriteria, Frequency, RecurrenceRule, Weekday
from ._target import (
    BatteryType,
    ComponentCategory,
    EvChargerType,
    InverterType,
    Target,
    TargetCategories,
    TargetCategory,
    TargetIds,
)

__all__ = [
    "dispatch_data_to_proto",
    "dispatch_from_pb2",
    "dispatch_to_proto",
    "payload_from_proto",
    "payload_to_proto",
    "rule_from_proto",
    "rule_to_proto",
    "target_from_proto",
    "target_to_proto",
]


# -- dispatch ----------------------------------------------------------------------------


def dispatch_data_to_proto(dispatch: Dispatch) -> pb.DispatchData:
    """The `DispatchData` part of a dispatch (everything but id and server times)."""
    return pb.DispatchData(
        type=dispatch.type,
        start_time=dispatch.start_time,
        duration=None if dispatch.duration is None else int(dispatch.duration.total_seconds()),
        target=target_to_proto(dispatch.target),
        is_active=dispatch.active,
        is_dry_run=dispatch.dry_run,
        payload=payload_to_proto(dispatch.payload),
        recurrence=rule_to_proto(dispatch.recurrence),
    )


def dispatch_to_proto(dispatch: Dispatch) -> pb.Dispatch:
    """The whole wire message of a dispatch, metadata included."""
    return pb.Dispatch(
        metadata=pb.DispatchMetadata(
            dispatch_id=dispatch.id,
            create_time=dispatch.create_time,
            update_time=dispatch.update_time,
            end_time=dispatch.end_time,
        ),
        data=dispatch_data_to_proto(dispatch),
    )


# -- target ------------------------------------------------------------------------------


def target_to_proto(target: Target) -> pb.TargetComponents:
    """Encode a target; categories always use the non-deprecated branch."""
    if isinstance(target, TargetIds):
        return pb.TargetComponents(component_ids=pb.TargetComponentsIdSet(ids=sorted(target.ids)))
    items = sorted(target.categories, key=lambda c: (c.category, -1 if c.type is None else c.type))
    return pb.TargetComponents(
        component_categories_types=pb.TargetComponentsCategoryTypeSet(
            categories=[_category_to_proto(c) for c in items]
        )
    )


def _category_to_proto(item: TargetCategory) -> pb.TargetComponentsCategoryAndType:
    category = pb_ec.ElectricalComponentCategory(int(item.category))
    subtype = item.type
    if isinstance(subtype, BatteryType):
        return pb.TargetComponentsCategoryAndType(
            category=category, battery=pb_ec.BatteryType(int(subtype))
        )
    if isinstance(subtype, InverterType):
        return pb.TargetComponentsCategoryAndType(
            category=category, inverter=pb_ec.InverterType(int(subtype))
        )
    if isinstance(subtype, EvChargerType):
        return pb.TargetComponentsCategoryAndType(
            category=category, ev_charger=pb_ec.EvChargerType(int(subtype))
        )
    return pb.TargetComponentsCategoryAndType(category=category)


def target_from_proto(msg: pb.TargetComponents | None) -> Target:
    """Decode a target; a missing target means no component ids."""
    if msg is None:
        return TargetIds(ids=frozenset())
    if msg.component_ids is not None:
        return TargetIds(ids=frozenset(msg.component_ids.ids))
    if msg.component_categories_types is not None:
        return TargetCategories(
            categories=frozenset(
                _category_from_proto(c) for c in msg.component_categories_types.categories
            )
        )
    if msg.component_categories is not None:
        return TargetCategories(
            categories=frozenset(
                TargetCategory(category=ComponentCategory(int(c)))
                for c in msg.component_categories.categories
            )
        )
    return TargetIds(ids=frozenset())


def _category_from_proto(msg: pb.TargetComponentsCategoryAndType) -> TargetCategory:
    category = ComponentCategory(int(msg.category))
    subtype: BatteryType | InverterType | EvChargerType | None = None
    if msg.battery is not None:
        subtype = BatteryType(int(msg.battery))
    elif msg.inverter is not None:
        subtype = InverterType(int(msg.inverter))
    elif msg.ev_charger is not None:
        subtype = EvChargerType(int(msg.ev_charger))
    return TargetCategory(category=category, type=subtype)


# -- recurrence --------------------------------------------------------------------------


def rule_to_proto(rule: RecurrenceRule | None) -> pb.RecurrenceRule | None:
    """Encode a recurrence rule (`None` stays unset)."""
    if rule is None:
        return None
    return pb.RecurrenceRule(
        freq=pb.RecurrenceRuleFrequency(int(rule.frequency)),
        interval=rule.interval,
        end_criteria=end_criteria_to_proto(rule.end_criteria),
        byminutes=list(rule.byminutes),
        byhours=list(rule.byhours),
        byweekdays=[pb.RecurrenceRuleWeekday(int(d)) for d in rule.byweekdays],
        bymonthdays=list(rule.bymonthdays),
        bymonths=list(rule.bymonths),
    )


def end_criteria_to_proto(end: EndCriteria | None) -> pb.RecurrenceRuleEndCriteria | None:
    """Encode end criteria (`None` stays unset)."""
    if end is None:
        return None
    if end.count is not None:
        return pb.RecurrenceRuleEndCriteria(count=end.count)
    return pb.RecurrenceRuleEndCriteria(until_time=end.until)


def rule_from_proto(msg: pb.RecurrenceRule | None) -> RecurrenceRule | None:
    """Decode a recurrence rule; raises `ValueError` for values the model refuses."""
    if msg is None:
        return None
    freq = int(msg.freq)
    if freq not in Frequency._value2member_map_:
        raise ValueError(f"recurrence.freq {freq} is not a known frequency")
    for day in msg.byweekdays:
        if int(day) not in Weekday._value2member_map_:
            raise ValueError(f"recurrence.byweekdays {int(day)} is not a known weekday")
    interval = msg.interval
    if interval == 0 and freq != Frequency.UNSPECIFIED:
        interval = 1
    return RecurrenceRule(
        frequency=Frequency(freq),
        interval=interval,
        end_criteria=end_criteria_from_proto(msg.end_criteria),
        byminutes=tuple(msg.byminutes),
        byhours=tuple(msg.byhours),
        byweekdays=tuple(Weekday(int(d)) for d in msg.byweekdays),
        bymonthdays=tuple(msg.bymonthdays),
        bymonths=tuple(msg.bymonths),
    )


def end_criteria_from_proto(msg: pb.RecurrenceRuleEndCriteria | None) -> EndCriteria | None:
    """Decode end criteria; an empty message means no end."""
    if msg is None:
        return None
    if msg.count is not None:
        return EndCriteria(count=msg.count)
    if msg.until_time is not None:
        return EndCriteria(until=msg.until_time)
    return None


# -- payload -----------------------------------------------------------------------------


def payload_to_proto(payload: Payload) -> pb_wkt.Struct:
    """Encode a (validated) payload as a `Struct`."""
    return pb_wkt.Struct(fields={k: _value_to_proto(v) for k, v in payload.items()})


def _value_to_proto(value: Any) -> pb_wkt.Value:
    if value is None:
        return pb_wkt.Value(null_value=pb_wkt.NullValue.NULL_VALUE)
    if isinstance(value, bool):
        return pb_wkt.Value(bool_value=value)
    if isinstance(value, int | float):
        return pb_wkt.Value(number_value=float(value))
    if isinstance(value, str):
        return pb_wkt.Value(string_value=value)
    if isinstance(value, list):
        return pb_wkt.Value(list_value=pb_wkt.ListValue(values=[_value_to_proto(v) for v in value]))
    return pb_wkt.Value(struct_value=payload_to_proto(value))


def payload_from_proto(msg: pb_wkt.Struct | None) -> Payload:
    """Decode a `Struct` into plain JSON-like Python values (numbers become floats)."""
    if msg is None:
        return {}
    return {k: _value_from_proto(v) for k, v in msg.fields.items()}


def _value_from_proto(msg: pb_wkt.Value) -> Any:
    which, value = betterproto2.which_one_of(msg, "kind")
    if which == "struct_value":
        return payload_from_proto(value)
    if which == "list_value":
        return [_value_from_proto(v) for v in value.values] if value is not None else []
    if which in ("number_value", "string_value", "bool_value"):
        return value
    return None


# -- decoding dispatches with the official classes ----------------------------------------
#
# betterproto2 parses in pure Python (about 250 us for a realistic Dispatch); the
# official upb parser of the pinned frequenz-api-dispatch package takes under 1 us.
# Everything that decodes whole dispatches (listings, streams, replies, the server's
# store) therefore parses with the official classes and converts here, by the same rules
# as above; a property test checks that both paths agree.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _pb2_time(ts: timestamp_pb2.Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def dispatch_from_pb2(msg: pb2.Dispatch) -> Dispatch:
    """Build a model `Dispatch` from an official message, or raise `InvalidDispatchError`."""
    has_meta = msg.HasField("metadata")
    meta = msg.metadata
    dispatch_id = meta.dispatch_id
    if not has_meta:
        raise InvalidDispatchError(0, "metadata is missing")
    if not msg.HasField("data"):
        raise InvalidDispatchError(dispatch_id, "data is missing")
    data = msg.data
    if not data.HasField("start_time"):
        raise InvalidDispatchError(dispatch_id, "start_time is missing")
    try:
        return Dispatch(
            id=dispatch_id,
            type=data.type,
            start_time=_pb2_time(data.start_time),
            duration=timedelta(seconds=data.duration) if data.HasField("duration") else None,
            target=_pb2_target(data.target)
            if data.HasField("target")
            else TargetIds(ids=frozenset()),
            active=data.is_active,
            dry_run=data.is_dry_run,
            payload=_pb2_struct(data.payload) if data.HasField("payload") else {},
            recurrence=_pb2_rule(data.recurrence) if data.HasField("recurrence") else None,
            create_time=_pb2_time(meta.create_time) if meta.HasField("create_time") else None,
            update_time=_pb2_time(meta.update_time) if meta.HasField("update_time") else None,
            end_time=_pb2_time(meta.end_time) if meta.HasField("end_time") else None,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidDispatchError(dispatch_id, str(exc)) from exc


def _pb2_target(msg: pb2.TargetComponents) -> Target:
    which = msg.WhichOneof("components")
    if which == "component_ids":
        return TargetIds(ids=frozenset(msg.component_ids.ids))
    if which == "component_categories_types":
        return TargetCategories(
            categories=frozenset(
                _pb2_category(c) for c in msg.component_categories_types.categories
            )
        )
    if which == "component_categories":
        return TargetCategories(
            categories=frozenset(
                TargetCategory(category=ComponentCategory(c))
                for c in msg.component_categories.categories
            )
        )
    return TargetIds(ids=frozenset())


def _pb2_category(msg: pb2.TargetComponents.CategoryAndType) -> TargetCategory:
    which = msg.WhichOneof("type")
    subtype: BatteryType | InverterType | EvChargerType | None = None
    if which == "battery":
        subtype = BatteryType(msg.battery)
    elif which == "inverter":
        subtype = InverterType(msg.inverter)
    elif which == "ev_charger":
        subtype = EvChargerType(msg.ev_charger)
    return TargetCategory(category=ComponentCategory(msg.category), type=subtype)


def _pb2_rule(msg: pb2.RecurrenceRule) -> RecurrenceRule:
    freq = msg.freq
    if freq not in Frequency._value2member_map_:
        raise ValueError(f"recurrence.freq {freq} is not a known frequency")
    for day in msg.byweekdays:
        if day not in Weekday._value2member_map_:
            raise ValueError(f"recurrence.byweekdays {day} is not a known weekday")
    interval = msg.interval
    if interval == 0 and freq != 0:  # 0 is the protobuf default: unset
        interval = 1
    end = None
    if msg.HasField("end_criteria"):
        which = msg.end_criteria.WhichOneof("count_or_until")
        if which == "count":
            end = EndCriteria(count=msg.end_criteria.count)
        elif which == "until_time":
            end = EndCriteria(until=_pb2_time(msg.end_criteria.until_time))
    return RecurrenceRule(
        frequency=Frequency(freq),
        interval=interval,
        end_criteria=end,
        byminutes=tuple(msg.byminutes),
        byhours=tuple(msg.byhours),
        byweekdays=tuple(Weekday(d) for d in msg.byweekdays),
        bymonthdays=tuple(msg.bymonthdays),
        bymonths=tuple(msg.bymonths),
    )


def _pb2_struct(msg: struct_pb2.Struct) -> Payload:
    return {k: _pb2_value(v) for k, v in msg.fields.items()}


def _pb2_value(msg: struct_pb2.Value) -> Any:
    which = msg.WhichOneof("kind")
    if which == "number_value":
        return msg.number_value
    if which == "string_value":
        return msg.string_value
    if which == "bool_value":
        return msg.bool_value
    if which == "struct_value":
        return _pb2_struct(msg.struct_value)
    if which == "list_value":
        return [_pb2_value(v) for v in msg.list_value.values]
    return None
