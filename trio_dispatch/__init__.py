"""Trio-native client, dispatcher and embedded server for the Frequenz dispatch API."""

from ._rule import EndCriteria as EndCriteria
from ._rule import Frequency as Frequency
from ._rule import RecurrenceRule as RecurrenceRule
from ._rule import Weekday as Weekday

__all__ = ["EndCriteria", "Frequency", "RecurrenceRule", "Weekday"]
