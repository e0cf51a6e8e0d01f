"""Who may read what in the EU battery passport (Regulation 2023/1542, Art. 77 and Annex XIII).

Annex XIII sorts the passport's information into what is public (point 1), what only persons
with a legitimate interest and the Commission may see (points 2 and 4: detailed composition,
dismantling, safety measures, the state of health and history of one battery), and what is
for notified bodies, market surveillance authorities and the Commission only (point 3: test
reports proving compliance). A reader of a tier sees its own tier and every lower one.
"""

from __future__ import annotations

from enum import IntEnum

from passport.errors import InputError


class Tier(IntEnum):
    PUBLIC = 1
    LEGITIMATE_INTEREST = 2
    AUTHORITY = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Tier:
        for tier in cls:
            if tier.label == text.strip().lower():
                return tier
        raise InputError(f"unknown tier {text!r}: use one of {', '.join(t.label for t in cls)}")
