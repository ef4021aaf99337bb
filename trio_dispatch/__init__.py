"""Trio-native client, dispatcher and embedded server for the Frequenz dispatch API.

Everything public is importable from here; the ``_modules`` behind it are private and
may move between releases.
"""

from ._exceptions import DispatchApiError as DispatchApiError
from ._exceptions import DispatchConnectionError as DispatchConnectionError
from ._exceptions import DispatchError as DispatchError
from ._exceptions import InvalidDispatchError as InvalidDispatchError
from ._model import Dispatch as Dispatch
from ._payload import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES
from ._payload import MAX_PAYLOAD_DEPTH as MAX_PAYLOAD_DEPTH
from ._recurrence import Run as Run
from ._rule import EndCriteria as EndCriteria
from ._rule import Frequency as Frequency
from ._rule import RecurrenceRule as RecurrenceRule
from ._rule import Weekday as Weekday
from ._target import BatteryType as BatteryType
from ._target import ComponentCategory as ComponentCategory
from ._target import EvChargerType as EvChargerType
from ._target import InverterType as InverterType
from ._target import Target as Target
from ._target import TargetCategories as TargetCategories
from ._target import TargetCategory as TargetCategory
from ._target import TargetIds as TargetIds

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_DEPTH",
    "BatteryType",
    "ComponentCategory",
    "Dispatch",
    "DispatchApiError",
    "DispatchConnectionError",
    "DispatchError",
    "EndCriteria",
    "EvChargerType",
    "Frequency",
    "InvalidDispatchError",
    "InverterType",
    "RecurrenceRule",
    "Run",
    "Target",
    "TargetCategories",
    "TargetCategory",
    "TargetIds",
    "Weekday",
]

# Show public names as trio_dispatch.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("trio_dispatch._"):
        _obj.__module__ = __name__
del _name, _obj
