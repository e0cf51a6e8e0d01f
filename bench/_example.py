"""The example cell both benchmarks sign: an NMC 21700 with realistic end-of-line data."""

from __future__ import annotations

import datetime as dt
import uuid

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from passport.records import Birth, CapacityTest, Chemistry, ResistanceTest


def example_birth(cell: ed25519.Ed25519PrivateKey, battery_id: str, issued_at: int) -> Birth:
    return Birth(
        passport_id=uuid.uuid4(),
        battery_id=battery_id,
        manufacturer="ACME",
        issued_at=issued_at,
        model="ACME-21700-50E",
        chemistry=Chemistry.NMC,
        rated_capacity_mah=5000,
        nominal_voltage_mv=3630,
        min_voltage_mv=2500,
        max_voltage_mv=4200,
        initial_capacity_mah=5021,
        capacity_test=CapacityTest(250, 20),
        initial_resistance_uohm=14200,
        resistance_test=ResistanceTest(250, 50, 10),
        manufacture_date=dt.datetime.fromtimestamp(issued_at, dt.UTC).date(),
        site="DE-BER1",
        expected_cycle_life=1500,
        exhaustion_threshold_cpct=6000,
        datasheet_sha256=bytes(range(32)),
        cell_public_key=cell.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    )
