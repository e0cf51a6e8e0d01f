"""One test per exported Battery Pass 1.2.0 attribute: known stored values in, the model's value
and unit out. Every row of `batterypass.ATTRIBUTES` must have a case here (a test checks).

Every expected value is written out by hand from the inputs below, never computed by the code
under test."""

from __future__ import annotations

from typing import Any

import pytest
from factories import GS1_ID, T0, birth_body, cell_key

from passport.export import batterypass as bp
from passport.export.catenax import Attribute
from passport.export.context import Context, Stamped
from passport.export.tiers import Tier
from passport.records import Chemistry, Event

T1 = T0 + 86_400  # a day after birth
T1_TEXT = "2026-09-22T14:13:20Z"
T2 = T1 + 3_600  # an hour later
T2_TEXT = "2026-09-22T15:13:20Z"
URL = "https://x.example"
SHEET: dict[str, Any] = {
    "category": " EV ",
    "weight_kg": 0.07,
    "manufacturer_contact": {
        "name": "ACME Cells GmbH", "identifier": "BPNL000000000ACM",
        "street_address": "Zellenweg 1", "postal_code": 12489, "country": "DE",
        "web": "https://acme.example", "email": "passport@acme.example"},
    "operator_contact": {  # no web address: none exported
        "name": "ACME Cells Europe B.V.", "identifier": "BPNL000000000ACE",
        "street_address": "Accuplein 2", "postal_code": "1011 AB", "country": "NL",
        "email": "operator@acme.example"},
    "facility_addresses": {
        "FR-LYS1": {"street_address": "Rue des Piles 9", "postal_code": "69007",
                    "country": "FR"},
        "DE-BER1": {"street_address": "Werkstrasse 5", "postal_code": "12489",
                    "country": "DE"}},
    "power_capability_w": [{"soc_pct": 80, "power_w": 36_300},
                           {"soc_pct": 20, "power_w": 25_410.5}],
    "rated_max_power_w": 36_300,
    "rated_energy_wh": 18_150,
    "round_trip_efficiency_pct": {"initial": 94.5, "at_50pct_cycle_life": 92},
    "expected_lifetime_years": 10,
    "lifetime_reference_test_url": f"{URL}/cycle-life-test.pdf",
    "cycle_life_test_c_rate": 0.5,
    "recycled_content_shares_pct": {  # out of the model's order, with a material it lacks
        "manganese": {"pre_consumer": 3, "post_consumer": 1},
        "lithium": {"pre_consumer": 4, "post_consumer": 2.5},
        "cobalt": {"pre_consumer": 10, "post_consumer": 6},
        "lead": {"pre_consumer": 0, "post_consumer": 0},
        "nickel": {"pre_consumer": 4, "post_consumer": 2}},
    "renewable_content_pct": 2.5,
    "extinguishing_agent": {"media": "water", "fire_class": "A"},
    "documents": {k: f"{URL}/{k}" for k in (
        "carbon_footprint", "separate_collection", "waste_prevention", "recycled_content",
        "composition", "declaration_of_conformity", "due_diligence", "test_report", "labels",
        "safety_measures", "dismantling")},
    "collection_information_url": f"{URL}/take-back",
    "spare_part_sources": [{
        "name": "ACME Cells Service", "street_address": "Zellenweg 3", "postal_code": "12489",
        "country": "DE", "email": "spares@acme.example", "web": "https://acme.example/spares",
        "components": [{"name": "cell", "part_number": "PN-7"},
                       {"name": "cell holder", "part_number": "HLD-1"}]}],
    "dismantling_documents": [
        {"type": "dismantling_manual", "mime_type": "application/pdf",
         "url": f"{URL}/dismantling-manual.pdf"},
        {"type": " Removal_Manual", "mime_type": "application/pdf",
         "url": f"{URL}/removal-manual.pdf"},
        {"type": "exploded_view", "mime_type": "image/png", "url": f"{URL}/exploded.png"}],
}  # fmt: skip


def _ctx() -> Context:
    birth = birth_body(cell_key(7), chemistry=Chemistry.NMC, rated_capacity_mah=5000,
                       nominal_voltage_mv=3630, min_voltage_mv=2500, max_voltage_mv=4200,
                       initial_resistance_uohm=14_200, exhaustion_threshold_cpct=6550,
                       expected_cycle_life=1500, site="DE-BER1")  # fmt: skip
    values = {
        "soh_capacity_cpct": Stamped(8750, T1, "aa"),
        "soh_power_cpct": Stamped(9125, T1, "aa"),
        "fec_deci": Stamped(12_345, T1, "bb"),
        "ah_deci": Stamped(98_765, T1, "bb"),
        "wh": Stamped(356_000, T1, "bb"),
        "resistance_uohm": Stamped(21_300, T1, "cc"),
        "minutes_hot": Stamped(42, T1, "bb"),
        "minutes_cold": Stamped(17, T2, "ab"),  # the later of the two
        "deep_discharges": Stamped(2, T1, "bb"),
        "status": Stamped(2, T1, "dd"),
    }
    events = ((Event.ACCIDENT, T1, "ff"), (Event.WATER_INGRESS, T2, "ab"))
    return Context(birth, "ee" * 32, "ntag216", values, events, SHEET, "00" * 32)


TECH = "performanceAndDurability.batteryTechicalProperties"
COND = "performanceAndDurability.batteryCondition"
CASES: dict[str, Any] = {
    # GeneralProductInformation
    "generalProductInformation.productIdentifier": GS1_ID,
    "generalProductInformation.batteryCategory": "ev",
    "generalProductInformation.manufacturerInformation": {
        "contactName": "ACME Cells GmbH",
        "postalAddress": {"streetAddress": "Zellenweg 1", "postalCode": "12489",
                          "addressCountry": "DE"},
        "identifier": "BPNL000000000ACM", "webAddress": "https://acme.example"},
    "generalProductInformation.manufacturingDate": "2026-11-02T00:00:00Z",
    "generalProductInformation.batteryStatus": "Reused",
    "generalProductInformation.batteryMass": 0.07,
    "generalProductInformation.manufacturingPlace": {
        "streetAddress": "Werkstrasse 5", "postalCode": "12489", "addressCountry": "DE"},
    "generalProductInformation.operatorInformation": {
        "contactName": "ACME Cells Europe B.V.",
        "postalAddress": {"streetAddress": "Accuplein 2", "postalCode": "1011 AB",
                          "addressCountry": "NL"},
        "identifier": "BPNL000000000ACE"},
    # PerformanceAndDurability: rated
    f"{TECH}.originalPowerCapability": [{"atSoC": 80.0, "powerCapabilityAt": 36300.0},
                                        {"atSoC": 20.0, "powerCapabilityAt": 25410.5}],
    f"{TECH}.ratedMaximumPower": 36.3,
    f"{TECH}.ratedEnergy": 18.15,
    f"{TECH}.expectedNumberOfCycles": 1500,
    f"{TECH}.roundtripEfficiency": 94.5,
    f"{TECH}.ratedCapacity": 5.0,
    f"{TECH}.initialInternalResistance": [{"ohmicResistance": 0.0142,
                                           "batteryComponent": "cell"}],
    f"{TECH}.expectedLifetime": 10,
    f"{TECH}.nominalVoltage": 3.63,
    f"{TECH}.minimumVoltage": 2.5,
    f"{TECH}.maximumVoltage": 4.2,
    f"{TECH}.capacityThresholdForExhaustion": 65.5,
    f"{TECH}.lifetimeReferenceTest": f"{URL}/cycle-life-test.pdf",
    f"{TECH}.cRateLifeCycleTest": 0.5,
    f"{COND}.roundTripEfficiencyat50PerCentCycleLife": 92.0,
    # PerformanceAndDurability: condition
    f"{COND}.energyThroughput": 356.0,
    f"{COND}.capacityThroughput": {"capacityThroughputValue": 9876.5, "lastUpdate": T1_TEXT},
    f"{COND}.numberOfFullCycles": {"numberOfFullCyclesValue": 1234, "lastUpdate": T1_TEXT},
    f"{COND}.capacityFade": {"capacityFadeValue": 12.5, "lastUpdate": T1_TEXT},
    f"{COND}.remainingCapacity": {"remainingCapacityValue": 4.375, "lastUpdate": T1_TEXT},
    f"{COND}.negativeEvents": [
        {"negativeEvent": "accident (record ff)", "lastUpdate": T1_TEXT},
        {"negativeEvent": "water ingress (record ab)", "lastUpdate": T2_TEXT}],
    f"{COND}.temperatureInformation.timeExtremeHighTemp": 42,
    f"{COND}.temperatureInformation.timeExtremeLowTemp": 17,
    f"{COND}.temperatureInformation.lastUpdate": T2_TEXT,
    f"{COND}.powerFade": 8.75,
    f"{COND}.internalResistanceIncrease": [{"internalResistanceIncreaseValue": 50.0,
                                            "lastUpdate": T1_TEXT, "batteryComponent": "cell"}],
    # Circularity
    "circularity.dismantlingAndRemovalInformation": [
        {"documentType": "DismantlingManual", "mimeType": "application/pdf",
         "documentURL": f"{URL}/dismantling-manual.pdf"},
        {"documentType": "RemovalManual", "mimeType": "application/pdf",
         "documentURL": f"{URL}/removal-manual.pdf"},
        {"documentType": "OtherManual", "mimeType": "image/png",
         "documentURL": f"{URL}/exploded.png"}],
    "circularity.sparePartSources": [{
        "nameOfSupplier": "ACME Cells Service",
        "addressOfSupplier": {"streetAddress": "Zellenweg 3", "postalCode": "12489",
                              "addressCountry": "DE"},
        "emailAddressOfSupplier": "spares@acme.example",
        "supplierWebAddress": "https://acme.example/spares",
        "components": [{"partName": "cell", "partNumber": "PN-7"},
                       {"partName": "cell holder", "partNumber": "HLD-1"}]}],
    "circularity.recycledContent": [
        {"recycledMaterial": "Cobalt", "preConsumerShare": 10.0, "postConsumerShare": 6.0},
        {"recycledMaterial": "Lithium", "preConsumerShare": 4.0, "postConsumerShare": 2.5},
        {"recycledMaterial": "Nickel", "preConsumerShare": 4.0, "postConsumerShare": 2.0},
        {"recycledMaterial": "Lead", "preConsumerShare": 0.0, "postConsumerShare": 0.0}],
    "circularity.safetyMeasures.safetyInstructions": f"{URL}/safety_measures",
    "circularity.safetyMeasures.extinguishingAgent": ["water (fire class A)"],
    "circularity.endOfLifeInformation.wastePrevention": f"{URL}/waste_prevention",
    "circularity.endOfLifeInformation.separateCollection": f"{URL}/separate_collection",
    "circularity.endOfLifeInformation.informationOnCollection": f"{URL}/take-back",
    "circularity.renewableContent": 2.5,
}  # fmt: skip


def _same(got: Any, expected: Any) -> bool:
    """Equal, floats within rounding (at any depth), and of the same JSON type (an int where
    the model wants xsd:integer, a float where it wants a decimal)."""
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(_same(got[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_same(g, e) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, float):
        return type(got) is float and got == pytest.approx(expected)
    return type(got) is type(expected) and got == expected


def test_every_attribute_has_a_case() -> None:
    paths = [a.path for a in bp.ATTRIBUTES]
    assert len(paths) == len(set(paths))
    assert set(CASES) == set(paths)


@pytest.mark.parametrize("attr", bp.ATTRIBUTES, ids=lambda a: a.path)
def test_attribute_value_and_unit(attr: Attribute) -> None:
    got = attr.get(_ctx())
    assert _same(got, CASES[attr.path]), (got, CASES[attr.path])


@pytest.mark.parametrize("tier", list(Tier), ids=lambda t: t.label)
def test_the_built_document_places_each_value_at_its_path(tier: Tier) -> None:
    doc, missing = bp.build(_ctx(), tier)
    assert missing == []
    assert set(doc) == {"generalProductInformation", "performanceAndDurability", "circularity"}
    for attr in bp.ATTRIBUTES:
        node: Any = doc
        *parents, leaf = attr.path.split(".")
        for part in parents:
            node = node.get(part, {})
        if tier.sees(attr.tier):
            assert _same(node[leaf], CASES[attr.path]), attr.path
        else:
            assert leaf not in node, attr.path


def test_a_missing_sheet_field_is_left_out_and_listed() -> None:
    ctx = _ctx()
    sheet = dict(SHEET)
    del sheet["weight_kg"]
    sheet["documents"] = {k: v for k, v in SHEET["documents"].items() if k != "safety_measures"}
    bare = Context(ctx.birth, ctx.birth_sha256, ctx.profile, ctx.values, ctx.events, sheet)
    doc, missing = bp.build(bare, Tier.LEGITIMATE_INTEREST)
    assert missing == [
        "generalProductInformation.batteryMass",
        "circularity.safetyMeasures.safetyInstructions",
    ]
    assert "batteryMass" not in doc["generalProductInformation"]
    assert doc["circularity"]["safetyMeasures"] == {"extinguishingAgent": ["water (fire class A)"]}


def test_a_missing_running_value_is_left_out_and_listed() -> None:
    ctx = _ctx()
    values = {k: v for k, v in ctx.values.items() if k not in ("minutes_cold", "soh_power_cpct")}
    bare = Context(ctx.birth, ctx.birth_sha256, ctx.profile, values, (), ctx.sheet)
    doc, missing = bp.build(bare, Tier.LEGITIMATE_INTEREST)
    assert missing == [
        f"{COND}.negativeEvents",
        f"{COND}.temperatureInformation.timeExtremeLowTemp",
        f"{COND}.powerFade",
    ]
    # with only the hot time left, its record's time is the update time
    assert doc["performanceAndDurability"]["batteryCondition"]["temperatureInformation"] == {
        "timeExtremeHighTemp": 42,
        "lastUpdate": T1_TEXT,
    }


def _drop(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != key} for e in entries]


@pytest.mark.parametrize(
    ("field", "broken", "path"),
    [
        pytest.param("power_capability_w", lambda v: _drop(v, "power_w"),
                     "performanceAndDurability.batteryTechicalProperties.originalPowerCapability",
                     id="power-without-watts"),
        pytest.param("recycled_content_shares_pct",
                     lambda v: {k: {"pre_consumer": 1} for k in v},
                     "circularity.recycledContent", id="share-without-post-consumer"),
        pytest.param("dismantling_documents", lambda v: _drop(v, "mime_type"),
                     "circularity.dismantlingAndRemovalInformation", id="document-without-type"),
        pytest.param("spare_part_sources", lambda v: _drop(v, "components"),
                     "circularity.sparePartSources", id="supplier-without-components"),
        pytest.param("spare_part_sources", lambda v: [{**e, "email": "a+b@x.example"} for e in v],
                     "circularity.sparePartSources", id="e-mail-the-schema-refuses"),
        pytest.param("weight_kg", lambda v: "heavy", "generalProductInformation.batteryMass",
                     id="mass-not-a-number"),
    ],
)  # fmt: skip
def test_a_malformed_sheet_field_is_left_out_and_listed(field: str, broken: Any, path: str) -> None:
    """A data-sheet field of the wrong shape gives no value: the attribute is listed as missing
    and the rest of the export goes on (no KeyError out of build)."""
    ctx = _ctx()
    sheet = {**SHEET, field: broken(SHEET[field])}
    bad = Context(ctx.birth, ctx.birth_sha256, ctx.profile, ctx.values, ctx.events, sheet)
    doc, missing = bp.build(bad, Tier.LEGITIMATE_INTEREST)
    assert missing == [path]
    node: Any = doc
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.get(part, {})
    assert leaf not in node
