"""Domain values of the on-cell records, in the fixed-point units they are stored in.

Field names carry their unit (``_mah``, ``_mv``, ``_uohm``, ``_dc`` = 0.1 degC, ``_cpct`` =
0.01 %, ``_deci`` = 0.1 of the base unit) so that no float ever enters a signed record.
`schemas/passport.cddl` is the normative description of the wire format.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

FORMAT_VERSION = 1


class Kind(IntEnum):
    """Record kind (payload key 1). Entry kinds are what the write policy distinguishes."""

    BIRTH = 1
    CHECKPOINT = 2
    TELEMETRY = 3  # operating data written by the cell (BMS / on-cell chip)
    MEASUREMENT = 4  # a tester's measured state of health
    STATUS = 5  # status change, with lineage parents when repurposed
    INTAKE = 6  # a recycler's intake record
    REMANUFACTURE = 7  # the OEM's remanufacturing record

    @property
    def is_entry(self) -> bool:
        return self >= Kind.TELEMETRY


ENTRY_KINDS = frozenset(k for k in Kind if k.is_entry)


class Chemistry(IntEnum):
    OTHER = 0
    NMC = 1
    NCA = 2
    LFP = 3
    LMO = 4
    LCO = 5
    LTO = 6
    SODIUM_ION = 7
    LMFP = 8


class Status(IntEnum):
    """Battery status per EU 2023/1542 Annex XIII 4(c)."""

    ORIGINAL = 0
    REPURPOSED = 1
    REUSED = 2
    REMANUFACTURED = 3
    WASTE = 4


class SohMethod(IntEnum):
    BMS_ESTIMATE = 1  # model/coulomb counting inside the BMS
    CAPACITY_TEST = 2  # full charge/discharge capacity test
    PULSE_TEST = 3  # seconds-long current pulse, estimator
    EIS = 4  # electrochemical impedance spectroscopy


class Event(IntEnum):
    """Negative events (Annex VII: accidents and abuse)."""

    THERMAL_EVENT = 1
    ACCIDENT = 2  # mechanical damage, crash, drop
    EXTERNAL_SHORT = 3
    WATER_INGRESS = 4
    OVERCURRENT = 5
    FIRE_EXPOSURE = 6


@dataclass(frozen=True, slots=True)
class CapacityTest:
    """Conditions of the initial capacity measurement."""

    temperature_dc: int  # 0.1 degC
    c_rate_centi: int  # discharge rate in 0.01 C


@dataclass(frozen=True, slots=True)
class ResistanceTest:
    """Conditions of the initial internal resistance measurement."""

    temperature_dc: int  # 0.1 degC
    soc_pct: int  # state of charge, %
    pulse_ms: int  # pulse length, ms


@dataclass(frozen=True, slots=True)
class Birth:
    """What the OEM certifies at end of line. `battery_id`, `manufacturer` and `issued_at`
    travel in the CWT claims of the protected header (sub, iss, iat); the rest in the payload.
    """

    passport_id: uuid.UUID
    battery_id: str
    manufacturer: str
    issued_at: int  # epoch seconds
    model: str
    chemistry: Chemistry
    rated_capacity_mah: int
    nominal_voltage_mv: int
    min_voltage_mv: int
    max_voltage_mv: int
    initial_capacity_mah: int
    capacity_test: CapacityTest
    initial_resistance_uohm: int
    resistance_test: ResistanceTest
    manufacture_date: dt.date
    site: str
    expected_cycle_life: int
    exhaustion_threshold_cpct: int  # capacity SoH (0.01 %) at which the cell counts as exhausted
    datasheet_sha256: bytes
    cell_public_key: bytes  # raw Ed25519 public key, certified by this record

    kind = Kind.BIRTH


class Values(NamedTuple):
    """Annex VII values an entry reports (all optional) or a checkpoint carries forward.

    Counters are cumulative since birth, never deltas: a verifier checks they never decrease.
    An immutable NamedTuple rather than a frozen dataclass: it is built for every record a
    verifier reads, and tuple construction is four times cheaper.
    """

    fec_deci: int | None = None  # full equivalent cycles, 0.1 cycle
    ah_deci: int | None = None  # capacity throughput, 0.1 Ah
    wh: int | None = None  # energy throughput, Wh
    soh_capacity_cpct: int | None = None  # capacity SoH, 0.01 %
    soh_power_cpct: int | None = None  # power SoH, 0.01 %
    resistance_uohm: int | None = None  # internal resistance, micro-ohm
    soh_method: SohMethod | None = None
    soh_sigma_cpct: int | None = None  # 1 standard deviation of soh_capacity, 0.01 %
    minutes_hot: int | None = None  # time above the max operating temperature
    minutes_cold: int | None = None  # time below the min operating temperature
    minutes_charging_extreme: int | None = None  # charging while outside the charge window
    deep_discharges: int | None = None
    overcharges: int | None = None
    events: tuple[Event, ...] = ()  # negative events reported (entry) / ever reported (checkpoint)
    status: Status | None = None
    parents: tuple[uuid.UUID, ...] = ()  # lineage: passports this battery was made from

    def is_empty(self) -> bool:
        return self == _EMPTY_VALUES

    def then(self, later: Values) -> Values:
        """Carry forward: later values win where present; events accumulate. A capacity SoH
        travels with its method and uncertainty: a later SoH replaces all three, so an old
        sigma is never paired with a newer value."""
        changes: dict[str, Any] = {}
        if later.soh_capacity_cpct is not None:
            changes["soh_method"] = later.soh_method
            changes["soh_sigma_cpct"] = later.soh_sigma_cpct
        for name, new in zip(self._fields, later, strict=True):
            if name == "events":
                if new:
                    changes["events"] = tuple(sorted(set(self.events) | set(later.events)))
            elif name == "parents":
                if new:
                    changes["parents"] = new
            elif new is not None:
                changes[name] = new
        return self._replace(**changes) if changes else self


_EMPTY_VALUES = Values()

#: Values that are cumulative counters (must never decrease along a history).
COUNTER_FIELDS = (
    "fec_deci",
    "ah_deci",
    "wh",
    "minutes_hot",
    "minutes_cold",
    "minutes_charging_extreme",
    "deep_discharges",
    "overcharges",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """A history entry: hash-linked to the record before it by `prev` and `seq`."""

    kind: Kind
    seq: int  # 1 for the first entry after birth
    prev: bytes  # SHA-256 of the previous record's exact bytes
    time: int  # epoch seconds
    values: Values = field(default_factory=Values)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Written (cell key) when entries are evicted from memory: it vouches for what left.

    `count` entries (seq 1..count) were evicted; `head` is the SHA-256 of the last of them,
    which transitively commits to all of them through their `prev` links; `values` are the
    running values as of that entry.
    """

    count: int
    head: bytes
    time: int
    birth: bytes  # SHA-256 of the birth record, binding this checkpoint to one passport
    values: Values = field(default_factory=Values)

    kind = Kind.CHECKPOINT


Body = Birth | Entry | Checkpoint
