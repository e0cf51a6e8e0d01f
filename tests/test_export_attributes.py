"""One test per exported Catena-X attribute: known stored values in, the schema's value and
unit out. Every row of `catenax.ATTRIBUTES` must have a case here (a test checks)."""

from __future__ import annotations

from typing import Any

import pytest
from factories import T0, birth_body, cell_key

from passport.export import catenax as cx
from passport.export.context import Context, Stamped
from passport.export.table import Attribute
from passport.export.tiers import Tier
from passport.records import Chemistry, Event

T1 = T0 + 86_400  # a day after birth
T1_TEXT = "2026-09-22T14:13:20Z"
SHEET: dict[str, Any] = {
    "category": "ev",
    "part_number": "PN-7",
    "economic_operator_bpnl": "BPNL000000000ACM",
    "facility_bpna": "BPNA000000000BER",
    "facilities": {"DE-BER1": "BPNA000000000BER"},
    "weight_kg": 0.07,
    "warranty_years": 8,
    "carbon_footprint_kg_co2e_per_kwh": 73.9,
    "recycled_content_pct": {"cobalt": 16, "lithium": 6, "nickel": 6.5},
    "critical_raw_materials": ["cobalt", "lithium", "graphite"],
    "active_material_location": "cathode",
    "composition": [{"name": "graphite", "cas": "7782-42-5", "concentration_pct": 18,
                     "location": "anode"}],
    "temperature_range_c": {"lower": -20, "upper": 60},
    "extinguishing_agent": {"media": "water", "fire_class": "A"},
    "documents": {k: f"https://x.example/{k}" for k in (
        "carbon_footprint", "separate_collection", "waste_prevention", "recycled_content",
        "composition", "declaration_of_conformity", "due_diligence", "test_report", "labels",
        "safety_measures", "dismantling")},
}  # fmt: skip


def _ctx() -> Context:
    birth = birth_body(cell_key(7), chemistry=Chemistry.NMC, rated_capacity_mah=5000,
                       initial_resistance_uohm=14_200, exhaustion_threshold_cpct=6000)  # fmt: skip
    values = {
        "soh_capacity_cpct": Stamped(8750, T1, "aa"),
        "fec_deci": Stamped(12_345, T1, "bb"),
        "ah_deci": Stamped(98_765, T1, "bb"),
        "wh": Stamped(356_000, T1, "bb"),
        "resistance_uohm": Stamped(21_300, T1, "cc"),
        "minutes_hot": Stamped(42, T1, "bb"),
        "deep_discharges": Stamped(2, T1, "bb"),
        "status": Stamped(1, T1, "dd"),
    }
    return Context(birth, "ee" * 32, "ntag216", values, ((Event.ACCIDENT, T1, "ff"),),
                   SHEET, "00" * 32)  # fmt: skip


def _doc(url_key: str, header: str) -> list[dict[str, str]]:
    return [{"header": header, "contentType": "URL", "content": f"https://x.example/{url_key}"}]


CASES: dict[str, Any] = {
    "specVersion": "urn:io.catenax.battery.battery_pass:6.1.0",
    "identification.category": "EV",
    "identification.chemistry": "Lithium Nickel Manganese Cobalt Oxide (NMC)",
    "identification.idDmc": "https://id.gs1.org/01/09506000134352/21/A0001",
    "identification.identification.serial": [
        {"key": "partInstanceId", "value": "https://id.gs1.org/01/09506000134352/21/A0001"}],
    "identification.identification.type": {"manufacturerPartId": "PN-7",
                                           "nameAtManufacturer": "ACME-21700-50E"},
    "identification.identification.dataCarrier": {
        "carrierType": "NFC", "carrierLayout": "NFC Forum Type 5 tag (ntag216)"},
    "operation.manufacturer.manufacturingDate": "2026-11-02",
    "operation.manufacturer.manufacturer": "BPNL000000000ACM",
    "operation.manufacturer.facility": [{"facility": "BPNA000000000BER"}],
    "characteristics.physicalDimension.weight": {"value": 0.07, "unit": "unit:kilogram"},
    "characteristics.warranty": {"lifeValue": 8, "lifeUnit": "unit:year"},
    "sustainability.carbonFootprint": [{
        "value": 73.9, "unit": "kg CO2 / kWh", "type": "Climate Change Total",
        "lifecycle": "total", "rulebook": _doc("carbon_footprint", "Rulebook"),
        "declaration": _doc("carbon_footprint", "Carbon footprint declaration"),
        "manufacturingPlant": [{"facility": "BPNA000000000BER"}]}],
    "sustainability.documents.separateCollection":
        _doc("separate_collection", "Separate collection"),
    "sustainability.documents.wastePrevention": _doc("waste_prevention", "Waste prevention"),
    "sustainability.status": "repurposed",
    "materials.active.cobalt": {"recycled": 16.0, "critical": True, "location": "cathode",
                                "documentation": _doc("recycled_content",
                                                      "Recycled content declaration")},
    "materials.active.lithium": {"recycled": 6.0, "critical": True, "location": "cathode",
                                 "documentation": _doc("recycled_content",
                                                       "Recycled content declaration")},
    "materials.active.nickel": {"recycled": 6.5, "critical": False, "location": "cathode",
                                "documentation": _doc("recycled_content",
                                                      "Recycled content declaration")},
    "materials.composition": [{
        "id": [{"id": "7782-42-5", "type": "CAS", "name": "graphite"}], "concentration": 18.0,
        "unit": "unit:percent", "critical": True,
        "documentation": _doc("composition", "Composition"), "recycled": 0.0,
        "location": "anode", "renewable": 0.0}],
    "performance.rated.capacity": {"value": 5.0, "thresholdExhaustion": 60.0,
                                   "temperature": 25.0},
    "performance.rated.voltage": {"min": 2.5, "nominal": 3.63, "max": 4.2},
    "performance.rated.resistance": {"cell": 0.0142, "pack": 0.0142, "temperature": 25.0},
    "performance.rated.temperature": {"lower": -20.0, "upper": 60.0},
    "performance.rated.lifetime.cycleLifeTesting.cycles": 1500,
    "performance.dynamic.capacity.capacity": {"value": 4.375, "time": T1_TEXT},
    "performance.dynamic.capacity.fade": {"value": 12.5, "time": T1_TEXT},
    "performance.dynamic.capacity.throughput": {"value": 9876.5, "time": T1_TEXT},
    "performance.dynamic.fullCycles": {"value": 1234, "time": T1_TEXT},
    "performance.dynamic.energy.throughput": {"value": 356.0, "time": T1_TEXT},
    "performance.dynamic.resistance.increase": {"cell": {"value": 50.0, "time": T1_TEXT}},
    "performance.dynamic.resistance.remaining": {"cell": {"value": 0.0213, "time": T1_TEXT}},
    "performance.dynamic.negativeEvents": [{
        "header": "accident", "contentType": "text/plain",
        "content": f"reported in the record ff ({T1_TEXT})"}],
    "performance.dynamic.operatingEnvironment": [{
        "header": "Time in extreme conditions (Annex VII)", "contentType": "text/plain",
        "content": f"42 min above the maximum temperature (as of {T1_TEXT}); "
                   f"2 deep discharges (as of {T1_TEXT})"}],
    "conformity.declarationOfConformity":
        _doc("declaration_of_conformity", "EU declaration of conformity"),
    "conformity.dueDiligencePolicy": _doc("due_diligence", "Due diligence report"),
    "conformity.resultOfTestReport": _doc("test_report", "Test reports proving compliance"),
    "safety.usableExtinguishAgent": [{"media": "water", "fireClass": "A"}],
    "safety.meaningOfLabels": _doc("labels", "Meaning of labels and symbols"),
    "safety.safetyMeasures": _doc("safety_measures", "Safety measures"),
    "safety.dismantling": _doc("dismantling", "Dismantling information"),
    "metadata.passportIdentifier": "urn:uuid:6f1c2a44-0d3e-4b59-9a7e-2f5b8c1d0e42",
    "metadata.issueDate": "2026-09-21",
    "metadata.economicOperatorId": "BPNL000000000ACM",
    "metadata.version": "1.0.0",
    "metadata.status": "approved",
}  # fmt: skip


def test_every_attribute_has_a_case() -> None:
    assert set(CASES) == {a.path for a in cx.ATTRIBUTES}


@pytest.mark.parametrize("attr", cx.ATTRIBUTES, ids=lambda a: a.path)
def test_attribute_value_and_unit(attr: Attribute) -> None:
    got = attr.get(_ctx())
    assert (
        got == pytest.approx(CASES[attr.path])
        if isinstance(got, float)
        else got == CASES[attr.path]
    )


@pytest.mark.parametrize("tier", [Tier.LEGITIMATE_INTEREST, Tier.AUTHORITY], ids=lambda t: t.label)
def test_the_built_document_places_each_value_at_its_path(tier: Tier) -> None:
    doc, missing = cx.build(_ctx(), tier)
    assert missing == []
    for attr in cx.ATTRIBUTES:
        if not tier.sees(attr.tier):
            continue
        path, expected = attr.path, CASES[attr.path]
        node: Any = doc
        for part in path.split("."):
            node = node[part]
        assert node == expected, path


def test_a_missing_sheet_field_is_left_out_and_listed() -> None:
    ctx = _ctx()
    sheet = dict(SHEET)
    del sheet["weight_kg"]
    sheet["documents"] = {k: v for k, v in SHEET["documents"].items() if k != "dismantling"}
    bare = Context(ctx.birth, ctx.birth_sha256, ctx.profile, ctx.values, ctx.events, sheet)
    doc, missing = cx.build(bare, Tier.LEGITIMATE_INTEREST)
    assert missing == ["characteristics.physicalDimension.weight", "safety.dismantling"]
    assert (
        "weight" not in doc["characteristics"]["physicalDimension"]
        if "physicalDimension" in (doc["characteristics"])
        else True
    )
