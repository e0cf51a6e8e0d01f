"""Who may read what in the EU battery passport (Regulation 2023/1542, Art. 77(2) and
Annex XIII).

Annex XIII sorts the information into four points, and Art. 77(2) says who reads which:

- point 1 (general information, materials, carbon footprint, rated performance...): everyone;
- point 2 (detailed composition, part numbers, dismantling, safety measures): persons with a
  legitimate interest, and notified bodies, market surveillance authorities and the Commission;
- point 3 (test reports proving compliance): notified bodies, market surveillance authorities
  and the Commission only;
- point 4 (the battery's own state of health, history, negative events and status): persons
  with a legitimate interest only.

So the tiers are not nested: an authority export holds points 1-3, a legitimate-interest
export points 1, 2 and 4.
"""

from __future__ import annotations

from enum import IntEnum

from passport.errors import InputError


class Access(IntEnum):
    """The Annex XIII point an attribute belongs to."""

    POINT_1 = 1
    POINT_2 = 2
    POINT_3 = 3
    POINT_4 = 4

    @property
    def label(self) -> str:
        """Who reads it, as the mapping document writes it."""
        return _READERS[self]


class Tier(IntEnum):
    """Who reads an export."""

    PUBLIC = 1
    LEGITIMATE_INTEREST = 2
    AUTHORITY = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    def sees(self, access: Access) -> bool:
        return access in _SEES[self]

    @classmethod
    def parse(cls, text: str) -> Tier:
        for tier in cls:
            if tier.label == text.strip().lower():
                return tier
        raise InputError(f"unknown tier {text!r}: use one of {', '.join(t.label for t in cls)}")


_SEES = {
    Tier.PUBLIC: frozenset({Access.POINT_1}),
    Tier.LEGITIMATE_INTEREST: frozenset({Access.POINT_1, Access.POINT_2, Access.POINT_4}),
    Tier.AUTHORITY: frozenset({Access.POINT_1, Access.POINT_2, Access.POINT_3}),
}
_READERS = {
    Access.POINT_1: "public",
    Access.POINT_2: "legitimate-interest+authority",
    Access.POINT_3: "authority",
    Access.POINT_4: "legitimate-interest",
}
