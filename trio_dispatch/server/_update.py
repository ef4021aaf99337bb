"""How UpdateMicrogridDispatch changes a dispatch: field mask paths and their meaning.

An update names the fields it changes in a `FieldMask` and carries their new values in a
`DispatchUpdate` message. Keeping this pure (dispatch in, dispatch out) lets the store
stay about storage and lets every path be tested without a database.

Accepted paths, exactly those the upstream Python client (frequenz-client-dispatch
1.1) sends, plus the whole ``recurrence``:

* ``start_time``: must be set, and not before ``now``.
* ``duration``: unset means "until changed" (no duration).
* ``target``: unset means no components (an empty id set), as on the wire.
* ``is_active``: must be set (clearing a flag means nothing).
* ``payload``: unset means the empty payload.
* ``recurrence``: the whole rule; unset removes the rule.
* ``recurrence.freq``, ``recurrence.interval``, ``recurrence.end_criteria``,
  ``recurrence.byminutes``, ``recurrence.byhours``, ``recurrence.byweekdays``,
  ``recurrence.bymonthdays``, ``recurrence.bymonths``: one field of the rule (a
  dispatch without a rule gets a default one first). Unset means the field's default:
  frequency ``UNSPECIFIED`` (the rule no longer repeats), interval 1, no end criteria,
  an empty list.

``type`` and ``is_dry_run`` cannot be changed (the API has no field for them). Paths are
applied in mask order, so ``["recurrence", "recurrence.freq"]`` replaces the rule and
then its frequency; repeating a path changes nothing. An interval of 0 means the default
1, as in `_convert`.

The result is stamped with ``update_time = now`` and a freshly computed ``end_time``
(`end_time_of`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from .. import _validate
from .._convert import payload_from_proto, rule_from_proto, rule_to_proto, target_from_proto
from .._model import Dispatch
from .._proto.frequenz.api.dispatch import v1 as pb
from ._errors import ApiError

__all__ = ["PATHS", "apply_update", "end_time_of"]

_RULE_LISTS: Final = ("byminutes", "byhours", "byweekdays", "bymonthdays", "bymonths")

PATHS: Final = frozenset(
    {
        "start_time",
        "duration",
        "target",
        "is_active",
        "payload",
        "recurrence",
        "recurrence.freq",
        "recurrence.interval",
        "recurrence.end_criteria",
        *(f"recurrence.{name}" for name in _RULE_LISTS),
    }
)
"""Every field mask path an update may name."""


def apply_update(
    dispatch: Dispatch, request: pb.UpdateMicrogridDispatchRequest, *, now: datetime
) -> Dispatch:
    """Return `dispatch` changed as `request` says, stamped at `now`.

    Args:
        dispatch: the current state.
        request: the update; only its mask and update message are read.
        now: the server time (timezone-aware); the new ``update_time``.

    Raises:
        ApiError: ``INVALID_ARGUMENT`` for an empty mask, an unknown path, a missing
            required value, a start time in the past, or a result the model refuses
            (with the model's message, which names the field).

    Example:
        >>> from datetime import datetime, UTC
        >>> from trio_dispatch._proto.google.protobuf import FieldMask
        >>> old = Dispatch(id=1, type="T", start_time=datetime(2030, 1, 1, tzinfo=UTC))
        >>> req = pb.UpdateMicrogridDispatchRequest(
        ...     update_mask=FieldMask(paths=["duration"]),
        ...     update=pb.UpdateMicrogridDispatchRequestDispatchUpdate(duration=60),
        ... )
        >>> apply_update(old, req, now=datetime(2029, 1, 1, tzinfo=UTC)).end_time
        datetime.datetime(2030, 1, 1, 0, 1, tzinfo=datetime.timezone.utc)
    """
    now = _validate.utc_datetime("now", now)
    paths = list(request.update_mask.paths) if request.update_mask is not None else []
    if not paths:
        raise ApiError("INVALID_ARGUMENT", "update_mask must name at least one field to update")
    for path in paths:
        if path not in PATHS:
            raise ApiError("INVALID_ARGUMENT", f"update_mask has unknown path {path!r}")
    update = request.update or pb.UpdateMicrogridDispatchRequestDispatchUpdate()

    changes: dict[str, Any] = {}
    rule = rule_to_proto(dispatch.recurrence)
    rule_changed = False
    for path in paths:
        if path.startswith("recurrence"):
            rule = _apply_rule_path(rule, path, update.recurrence)
            rule_changed = True
        else:
            changes[_MODEL_FIELD[path]] = _value(path, update, now)

    try:
        if rule_changed:
            changes["recurrence"] = rule_from_proto(rule)
        updated = replace(dispatch, **changes, update_time=now, end_time=None)
    except (ValueError, TypeError) as exc:
        raise ApiError("INVALID_ARGUMENT", str(exc)) from exc
    return replace(updated, end_time=end_time_of(updated))


_MODEL_FIELD: Final = {
    "start_time": "start_time",
    "duration": "duration",
    "target": "target",
    "is_active": "active",
    "payload": "payload",
}


def _value(
    path: str, update: pb.UpdateMicrogridDispatchRequestDispatchUpdate, now: datetime
) -> Any:
    """The new model value of a top-level (non-recurrence) path."""
    if path == "start_time":
        start = update.start_time
        if start is None:
            raise ApiError("INVALID_ARGUMENT", "start_time must be set when update_mask names it")
        if start < now:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"start_time {start.isoformat()} is in the past (now is {now.isoformat()})",
            )
        return start
    if path == "duration":
        return None if update.duration is None else timedelta(seconds=update.duration)
    if path == "target":
        try:
            return target_from_proto(update.target)
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_ARGUMENT", f"target: {exc}") from exc
    if path == "is_active":
        if update.is_active is None:
            raise ApiError("INVALID_ARGUMENT", "is_active must be set when update_mask names it")
        return update.is_active
    return payload_from_proto(update.payload)


def _apply_rule_path(
    rule: pb.RecurrenceRule | None,
    path: str,
    update: pb.UpdateMicrogridDispatchRequestDispatchUpdateRecurrenceRuleUpdate | None,
) -> pb.RecurrenceRule | None:
    """Apply one ``recurrence`` or ``recurrence.<field>`` path to a wire rule."""
    if path == "recurrence":
        if update is None:
            return None
        return pb.RecurrenceRule(
            freq=update.freq or pb.RecurrenceRuleFrequency.UNSPECIFIED,
            interval=update.interval or 0,
            end_criteria=update.end_criteria,
            **{name: list(getattr(update, name)) for name in _RULE_LISTS},
        )
    name = path.removeprefix("recurrence.")
    new = pb.RecurrenceRule() if rule is None else _copy_rule(rule)
    if name == "freq":
        new.freq = (update.freq if update else None) or pb.RecurrenceRuleFrequency.UNSPECIFIED
    elif name == "interval":
        new.interval = (update.interval if update else None) or 0
    elif name == "end_criteria":
        new.end_criteria = update.end_criteria if update else None
    else:
        setattr(new, name, list(getattr(update, name)) if update else [])
    return new


def _copy_rule(rule: pb.RecurrenceRule) -> pb.RecurrenceRule:
    return pb.RecurrenceRule(
        freq=rule.freq,
        interval=rule.interval,
        end_criteria=rule.end_criteria,
        **{name: list(getattr(rule, name)) for name in _RULE_LISTS},
    )


def end_time_of(dispatch: Dispatch) -> datetime | None:
    """When the dispatch's last run ends, as the server reports it in ``end_time``.

    ``None`` means the runs never end: no duration, or a rule without end criteria. The
    end describes the schedule, so it does not depend on ``active`` (pausing a dispatch
    must not make it look endless). A bounded dispatch whose rule has no occurrence at
    all (e.g. ``until`` before the first match) ends at its start time.

    Example:
        >>> from datetime import datetime, timedelta, UTC
        >>> end_time_of(Dispatch(id=1, type="T", start_time=datetime(2030, 1, 1, tzinfo=UTC),
        ...                      duration=timedelta(hours=2)))
        datetime.datetime(2030, 1, 1, 2, 0, tzinfo=datetime.timezone.utc)
    """
    probe = dispatch if dispatch.active else replace(dispatch, active=True)
    end = probe.last_run_end()
    if end is not None or probe.duration is None:
        return end
    rule = probe.recurrence
    if rule is None or not rule.is_recurring or rule.end_criteria is None:
        return end
    # Bounded, yet no last run: the rule never fires. rrule drops the microseconds of the
    # start, so the first occurrence can be up to a second before it.
    if probe.next_run_after(probe.start_time - timedelta(seconds=1)) is None:
        return probe.start_time
    return end
