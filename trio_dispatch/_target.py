"""Targets: which microgrid components a dispatch applies to.

A target is either a set of component ids (`TargetIds`) or a set of component
categories, each optionally narrowed to a subtype (`TargetCategories`). The enums carry
the protobuf numbers of `frequenz.api.common.v1alpha8.microgrid.electrical_components`.

A server may know categories or subtypes that this release does not. Such a value is
kept as an ``UNKNOWN_<n>`` member instead of failing, so it survives a round trip.

Example:
    >>> TargetIds.of(1, 2, 3)
    TargetIds(ids=frozenset({1, 2, 3}))
    >>> TargetCategories.of(
    ...     ComponentCategory.BATTERY, TargetCategory(category=ComponentCategory.INVERTER,
    ...                                               type=InverterType.PV)
    ... ).categories == frozenset({
    ...     TargetCategory(category=ComponentCategory.BATTERY),
    ...     TargetCategory(category=ComponentCategory.INVERTER, type=InverterType.PV),
    ... })
    True
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self, TypeAlias, final

__all__ = [
    "BatteryType",
    "ComponentCategory",
    "EvChargerType",
    "InverterType",
    "Target",
    "TargetCategories",
    "TargetCategory",
    "TargetIds",
]


class _OpenIntEnum(enum.IntEnum):
    """An IntEnum that represents numbers it does not know instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None

    @property
    def is_known(self) -> bool:
        """Whether this release knows the value (it is not an ``UNKNOWN_<n>``)."""
        return self._name_ in type(self).__members__


class ComponentCategory(_OpenIntEnum):
    """Kinds of electrical component."""

    UNSPECIFIED = 0
    GRID_CONNECTION_POINT = 1
    METER = 2
    INVERTER = 3
    CONVERTER = 4
    BATTERY = 5
    EV_CHARGER = 6
    BREAKER = 7
    PRECHARGER = 8
    CHP = 9
    ELECTROLYZER = 10
    POWER_TRANSFORMER = 11
    HVAC = 12
    PLC = 13
    CRYPTO_MINER = 14
    STATIC_TRANSFER_SWITCH = 15
    UNINTERRUPTIBLE_POWER_SUPPLY = 16
    CAPACITOR_BANK = 17
    WIND_TURBINE = 18
    STEAM_BOILER = 19


class BatteryType(_OpenIntEnum):
    """Subtypes of `ComponentCategory.BATTERY`."""

    UNSPECIFIED = 0
    LI_ION = 1
    NA_ION = 2


class InverterType(_OpenIntEnum):
    """Subtypes of `ComponentCategory.INVERTER`."""

    UNSPECIFIED = 0
    BATTERY = 1
    PV = 2
    HYBRID = 3


class EvChargerType(_OpenIntEnum):
    """Subtypes of `ComponentCategory.EV_CHARGER`."""

    UNSPECIFIED = 0
    AC = 1
    DC = 2
    HYBRID = 3


ComponentType: TypeAlias = BatteryType | InverterType | EvChargerType

_SUBTYPE_OF: dict[type[ComponentType], ComponentCategory] = {
    BatteryType: ComponentCategory.BATTERY,
    InverterType: ComponentCategory.INVERTER,
    EvChargerType: ComponentCategory.EV_CHARGER,
}


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class TargetCategory:
    """One category of components, optionally narrowed to one subtype.

    The subtype must belong to the category: a `BatteryType` with `BATTERY`, an
    `InverterType` with `INVERTER`, an `EvChargerType` with `EV_CHARGER`.
    """

    category: ComponentCategory
    type: ComponentType | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.category, ComponentCategory):
            raise TypeError(f"category must be a ComponentCategory, got {self.category!r}")
        if self.type is None:
            return
        owner = _SUBTYPE_OF.get(type(self.type))
        if owner is None:
            raise TypeError(
                f"type must be a BatteryType, InverterType or EvChargerType, got {self.type!r}"
            )
        if owner is not self.category:
            raise ValueError(
                f"type {self.type!r} belongs to category {owner.name}, not to {self.category.name}"
            )


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class TargetIds:
    """Target the components with these ids."""

    ids: frozenset[int]

    def __post_init__(self) -> None:
        ids = self.ids
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"ids must be a collection of ints, got {ids!r}")
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 2**64:
                raise ValueError(f"ids must be ints in 0..2**64-1, got {i!r}")
        object.__setattr__(self, "ids", frozenset(ids))

    @classmethod
    def of(cls, *ids: int) -> TargetIds:
        """Build from positional ids: ``TargetIds.of(1, 2)``."""
        return cls(ids=frozenset(ids))


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class TargetCategories:
    """Target every component of these categories (and subtypes)."""

    categories: frozenset[TargetCategory]

    def __post_init__(self) -> None:
        cats = self.categories
        if isinstance(cats, str | bytes) or not isinstance(cats, Iterable):
            raise TypeError(f"categories must be a collection of TargetCategory, got {cats!r}")
        for c in cats:
            if not isinstance(c, TargetCategory):
                raise TypeError(f"categories must contain TargetCategory items, got {c!r}")
        object.__setattr__(self, "categories", frozenset(cats))

    @classmethod
    def of(cls, *categories: ComponentCategory | TargetCategory) -> TargetCategories:
        """Build from categories, bare or with a subtype."""
        return cls(
            categories=frozenset(
                c if isinstance(c, TargetCategory) else TargetCategory(category=c)
                for c in categories
            )
        )


Target: TypeAlias = TargetIds | TargetCategories
"""What a dispatch applies to."""
