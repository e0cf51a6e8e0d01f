"""Format benchmark: record sizes, tag capacity and signing/verification speed. Prints JSON.

    python bench/format.py [--rounds N] [--per-round N]

verify_per_s times the full path a verifier takes for one record (strict decode of the exact
bytes, every format check, SHA-256 identity, signature); raw_verify_per_s times a bare
cryptography Ed25519 verify of the same signature in the same run. Rounds alternate between
the two and the best round of each is kept, so background load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

from _example import example_birth
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passport import cose
from passport.errors import CapacityError
from passport.image import PROFILES, Image
from passport.records import (
    Birth,
    Checkpoint,
    Entry,
    Kind,
    SignedRecord,
    SohMethod,
    Values,
)
from passport.trust.keys import self_signed_certificate
from passport.trust.store import thumbprint

GS1_ID = "https://id.gs1.org/01/09506000134352/21/7F3K9A"
ISO_ID = "LIACME0000123456"


def birth_body(cell: ed25519.Ed25519PrivateKey, battery_id: str) -> Birth:
    return example_birth(cell, battery_id, int(time.time()))


def typical_values(i: int) -> Values:
    """What a BMS reports each period: cycles, throughputs, capacity SoH with its method."""
    return Values(
        fec_deci=4123 + 10 * i,
        ah_deci=412_300 + 1000 * i,
        wh=149_000 + 360 * i,
        soh_capacity_cpct=9412 - i,
        soh_method=SohMethod.BMS_ESTIMATE,
    )


def best_rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=4000)
    args = parser.parse_args()

    oem = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(oem, "ACME OEM")
    x5t = thumbprint(cert)
    cell = ed25519.Ed25519PrivateKey.generate()
    birth = SignedRecord.sign(birth_body(cell, GS1_ID), oem, x5t=x5t)
    birth_iso = SignedRecord.sign(birth_body(cell, ISO_ID), oem, x5t=x5t)
    entry = SignedRecord.sign(
        Entry(Kind.TELEMETRY, 1, birth.digest, int(time.time()), typical_values(0)), cell
    )
    checkpoint = SignedRecord.sign(
        Checkpoint(
            count=40,
            head=entry.digest,
            time=int(time.time()),
            birth=birth.digest,
            values=typical_values(40)._replace(minutes_hot=95, deep_discharges=1),
        ),
        cell,
    )

    # Entries that fit beside the birth record before anything must be evicted, per profile.
    capacity = {}
    for name in PROFILES:
        image = Image.create(birth, name)
        n = 0
        while True:
            seq, prev = image.next_link()
            rec = SignedRecord.sign(
                Entry(Kind.TELEMETRY, seq, prev, 1_800_000_000 + n, typical_values(n)), cell
            )
            try:
                image, evicted = image.append(rec, cell_key=cell)
            except CapacityError:  # too small for a checkpoint beside the birth record
                break
            if evicted:
                break
            n += 1
        capacity[name] = n

    public = cell.public_key()
    tbs = cose.sig_structure(entry.protected_bytes, b"", entry.payload_bytes)
    raw = entry.raw
    signature = entry.signature

    def full() -> None:
        SignedRecord.from_bytes(raw).verify(public)

    def bare() -> None:
        public.verify(signature, tbs)

    full_rates, bare_rates = [], []
    for _ in range(args.rounds):
        bare_rates.append(best_rate(bare, args.per_round))
        full_rates.append(best_rate(full, args.per_round))
    entry_body = Entry(Kind.TELEMETRY, 1, birth.digest, int(time.time()), typical_values(0))
    sign_rate = max(best_rate(lambda: SignedRecord.sign(entry_body, cell), 1000) for _ in range(3))
    birth_b = birth_body(cell, GS1_ID)
    birth_rate = max(
        best_rate(lambda: SignedRecord.sign(birth_b, oem, x5t=x5t), 500) for _ in range(3)
    )
    image_bytes = Image.create(birth, "st25dv16k").to_bytes()
    decode_rate = max(best_rate(lambda: Image.from_bytes(image_bytes), 2000) for _ in range(3))

    verify_per_s = max(full_rates)
    raw_verify_per_s = max(bare_rates)
    print(
        json.dumps(
            {
                "birth_bytes": len(birth.raw),
                "birth_bytes_iso15459_id": len(birth_iso.raw),
                "entry_bytes": len(entry.raw),
                "checkpoint_bytes": len(checkpoint.raw),
                "entries_in_2k": capacity["st25dv16k"],
                "entries_before_eviction": capacity,
                "sign_per_s": round(sign_rate),
                "birth_sign_per_s": round(birth_rate),
                "verify_per_s": round(verify_per_s),
                "raw_verify_per_s": round(raw_verify_per_s),
                "verify_ratio": round(verify_per_s / raw_verify_per_s, 3),
                "image_decode_per_s": round(decode_rate),
                "battery_id": GS1_ID,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
