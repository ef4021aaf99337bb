"""Trio-native client, dispatcher and embedded server for the Frequenz dispatch API.

Everything public is importable from here; the ``_modules`` behind it are private and
may move between releases.
"""

from ._broadcast import Receiver as Receiver
from ._broadcast import ReceiverStatistics as ReceiverStatistics
from ._client import DispatchClient as DispatchClient
from ._client import DispatchListing as DispatchListing
from ._client import DispatchPage as DispatchPage
from ._client import SortField as SortField
from ._client import SortOrder as SortOrder
from ._client import StreamEvent as StreamEvent
from ._client import StreamItem as StreamItem
from ._client import open_client as open_client
from ._dispatcher import Backoff as Backoff
from ._dispatcher import ConnectionState as ConnectionState
from ._dispatcher import Dispatcher as Dispatcher
from ._dispatcher import DispatcherStatistics as DispatcherStatistics
from ._dispatcher import LifecycleEvents as LifecycleEvents
from ._dispatcher import RunningStatusChanges as RunningStatusChanges
from ._dispatcher import open_dispatcher as open_dispatcher
from ._events import Created as Created
from ._events import Deleted as Deleted
from ._events import LifecycleEvent as LifecycleEvent
from ._events import RunningState as RunningState
from ._events import RunningStatus as RunningStatus
from ._events import Updated as Updated
from ._exceptions import DispatchApiError as DispatchApiError
from ._exceptions import DispatchConnectionError as DispatchConnectionError
from ._exceptions import DispatchError as DispatchError
from ._exceptions import InvalidDispatchError as InvalidDispatchError
from ._managed import ManagedInfo as ManagedInfo
from ._managed import ManagedStatistics as ManagedStatistics
from ._merge import Members as Members
from ._merge import MergeByType as MergeByType
from ._merge import MergeByTypeTarget as MergeByTypeTarget
from ._merge import MergedStatus as MergedStatus
from ._merge import MergeStrategy as MergeStrategy
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
    "Backoff",
    "BatteryType",
    "ComponentCategory",
    "ConnectionState",
    "Created",
    "Deleted",
    "Dispatch",
    "DispatchApiError",
    "DispatchClient",
    "DispatchConnectionError",
    "DispatchError",
    "DispatchListing",
    "DispatchPage",
    "Dispatcher",
    "DispatcherStatistics",
    "EndCriteria",
    "EvChargerType",
    "Frequency",
    "InvalidDispatchError",
    "InverterType",
    "LifecycleEvent",
    "LifecycleEvents",
    "ManagedInfo",
    "ManagedStatistics",
    "Members",
    "MergeByType",
    "MergeByTypeTarget",
    "MergeStrategy",
    "MergedStatus",
    "Receiver",
    "ReceiverStatistics",
    "RecurrenceRule",
    "Run",
    "RunningState",
    "RunningStatus",
    "RunningStatusChanges",
    "SortField",
    "SortOrder",
    "StreamEvent",
    "StreamItem",
    "Target",
    "TargetCategories",
    "TargetCategory",
    "TargetIds",
    "Updated",
    "Weekday",
    "open_client",
    "open_dispatcher",
]

# Show public names as trio_dispatch.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("trio_dispatch._"):
        _obj.__module__ = __name__
del _name, _obj
