"""The demo's documents: a signed data sheet per model (what the EU passport needs that the
tag cannot hold), the check that every birth record's sheet is in the registry, and one retired
cell's EU passport and label."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from passport._fileio import write_atomic
from passport.datasheet import DataSheet, read_datasheet, sign_datasheet
from passport.demo.figures import DESIGNS
from passport.demo.fleet import Cell
from passport.errors import PassportError
from passport.export import FORMATS, Tier, export_cell
from passport.label import human_readable, passport_uri, render_label
from passport.records import Birth
from passport.registry import Registry
from passport.trust.bundle import TrustBundle


def eu_passport(
    out: Path, registry: Registry, bundle: TrustBundle, fleet: list[Cell], taken: set[int]
) -> dict[str, Any]:
    """One retired cell's EU passport from the registry (its whole history, the intake entry
    included), in both formats and the three tiers, and its QR label, in DIR/eu-passport/
    (a cell in none of the planted cases, `taken`)."""
    cell = next(c for c in fleet if c.index not in taken and "abused" not in c.roles)
    birth = cell.image.birth.body
    assert isinstance(birth, Birth)
    folder = out / "eu-passport"
    written = []
    verified = True
    for fmt in FORMATS:
        for tier in Tier:
            result = export_cell(registry, str(birth.passport_id), bundle, fmt=fmt, tier=tier)
            verified &= result.verified
            name = f"{cell.stem}.{fmt}.{tier.label}.json"
            text = json.dumps(result.document, indent=2, ensure_ascii=False) + "\n"
            write_atomic(folder / name, text.encode())
            written.append(name)
    uri = passport_uri(birth.battery_id, birth.passport_id)
    write_atomic(folder / f"{cell.stem}.label.svg",
                 render_label(uri, human_readable(birth.battery_id), "svg"))  # fmt: skip
    written.append(f"{cell.stem}.label.svg")
    return {
        "expected": "a retired cell's EU passport (2 formats x 3 tiers) and QR label",
        "ok": verified and len(written) == 2 * len(Tier) + 1,
        "got": {"folder": str(folder), "files": written},
    }


def datasheets(out: Path, key: Any, cert: Any, start: int) -> dict[str, bytes]:
    """One signed data sheet per model (demo values, in the units the field names say), in
    DIR/datasheets/<model>.cose."""
    sheets: dict[str, bytes] = {}
    issued = dt.datetime.fromtimestamp(start, dt.UTC).date()
    for d in DESIGNS:
        real = d.real
        lfp = real.chemistry == "LFP"
        energy_wh = real.rated_ah * float(d.nominal_v)
        sheet = DataSheet(
            model=d.model, manufacturer="ACME Cells", revision="3", issued=issued,
            fields={
                "category": "ev",
                "chemistry": real.chemistry,
                "part_number": f"{d.model}-CELL-R3",
                "rated_capacity_ah": real.rated_ah,
                "weight_kg": round(energy_wh / (160.0 if lfp else 220.0), 3),
                "warranty_years": 8,
                "economic_operator_bpnl": "BPNL000000000ACM",
                "facility_bpna": "BPNA000000000BER",
                "facilities": {"DE-BER1": "BPNA000000000BER"},
                "carbon_footprint_kg_co2e_per_kwh": 54.3 if lfp else 73.9,
                "recycled_content_pct": {"cobalt": 0 if lfp else 16, "lithium": 6,
                                         "nickel": 0 if lfp else 6, "lead": 0},
                "critical_raw_materials": ["lithium", "graphite"]
                + ([] if lfp else ["cobalt", "nickel", "manganese"]),
                "active_material_location": "cathode",
                "hazardous_substances": [],
                "composition": [
                    {"name": "graphite", "cas": "7782-42-5", "concentration_pct": 18.0,
                     "location": "anode"},
                    {"name": "lithium iron phosphate" if lfp else "lithium nickel manganese "
                     "cobalt oxide", "cas": "15365-14-7" if lfp else "346417-97-8",
                     "concentration_pct": 38.0 if lfp else 34.0, "location": "cathode"},
                ],
                "temperature_range_c": {"lower": -20.0, "upper": 60.0},
                "extinguishing_agent": {"media": "water", "fire_class": "A"},
                "documents": {
                    name: f"https://acme.example/{d.model}/{name.replace('_', '-')}.pdf"
                    for name in ("carbon_footprint", "separate_collection", "waste_prevention",
                                 "recycled_content", "composition",
                                 "declaration_of_conformity", "due_diligence", "test_report",
                                 "labels", "safety_measures", "dismantling")
                },
                "manufacturer_contact": {
                    "name": "ACME Cells GmbH", "identifier": "BPNL000000000ACM",
                    "street_address": "Zellenweg 1", "postal_code": "12489", "country": "DE",
                    "web": "https://acme.example", "email": "passport@acme.example",
                },
                "operator_contact": {
                    "name": "ACME Cells Europe B.V.", "identifier": "BPNL000000000ACE",
                    "street_address": "Accuplein 2", "postal_code": "1011 AB", "country": "NL",
                    "web": "https://eu.acme.example", "email": "operator@acme.example",
                },
                "facility_addresses": {"DE-BER1": {"street_address": "Werkstrasse 5",
                                                   "postal_code": "12489", "country": "DE"}},
                "rated_energy_wh": round(energy_wh, 2),
                "rated_max_power_w": round(energy_wh * (3.0 if lfp else 2.0), 1),
                "power_capability_w": [
                    {"soc_pct": 80, "power_w": round(energy_wh * (3.0 if lfp else 2.0), 1)},
                    {"soc_pct": 20, "power_w": round(energy_wh * (2.2 if lfp else 1.4), 1)},
                ],
                "round_trip_efficiency_pct": {"initial": 96.0 if lfp else 94.5,
                                              "at_50pct_cycle_life": 94.0 if lfp else 92.0},
                "expected_lifetime_years": 15 if lfp else 10,
                "lifetime_reference_test_url":
                    f"https://acme.example/{d.model}/cycle-life-test.pdf",
                "cycle_life_test_c_rate": 0.5,
                "recycled_content_shares_pct": {
                    "cobalt": {"pre_consumer": 0 if lfp else 10, "post_consumer": 0 if lfp else 6},
                    "lithium": {"pre_consumer": 4, "post_consumer": 2},
                    "nickel": {"pre_consumer": 0 if lfp else 4, "post_consumer": 0 if lfp else 2},
                    "lead": {"pre_consumer": 0, "post_consumer": 0},
                },
                "renewable_content_pct": 2.5,
                "spare_part_sources": [{
                    "name": "ACME Cells Service", "street_address": "Zellenweg 3",
                    "postal_code": "12489", "country": "DE", "email": "spares@acme.example",
                    "web": "https://acme.example/spares",
                    "components": [{"name": "cell", "part_number": f"{d.model}-CELL-R3"},
                                   {"name": "cell holder", "part_number": f"{d.model}-HLD-1"}],
                }],
                "dismantling_documents": [
                    {"type": "dismantling_manual", "mime_type": "application/pdf",
                     "url": f"https://acme.example/{d.model}/dismantling-manual.pdf"},
                    {"type": "drawing", "mime_type": "application/pdf",
                     "url": f"https://acme.example/{d.model}/exploded-view.pdf"},
                ],
                "collection_information_url": "https://acme.example/take-back",
                "demo": "illustrative values, not a real product",
            },
        )  # fmt: skip
        raw = sign_datasheet(sheet, key, cert)
        write_atomic(out / "datasheets" / f"{d.model}.cose", raw)
        sheets[d.model] = raw
    return sheets


def check_sheets(registry: Registry, bundle: TrustBundle, fleet: list[Cell]) -> dict[str, Any]:
    """Every birth record's data sheet is in the registry and is the OEM-signed one it names."""
    bad: dict[str, str] = {}
    for c in fleet:
        birth = c.image.birth.body
        assert isinstance(birth, Birth)
        raw = registry.datasheet(birth.datasheet_sha256)
        if raw is None:
            bad[c.path.name] = "not in the registry"
            continue
        try:
            read_datasheet(raw, bundle, source="registry", expect_sha256=birth.datasheet_sha256)
        except PassportError as exc:
            bad[c.path.name] = str(exc)
    return {
        "expected": "every birth record's data sheet stored and verified",
        "ok": not bad,
        "got": bad or {"all": f"{len(fleet)} cells"},
    }
