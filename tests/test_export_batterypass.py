"""Battery Pass 1.2.0 export: each model's member validates against its published schema (the
tier's projection), tiers never leak, every conversion is the table's, the doc lists it all."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, shared_path
from export_kit import CELL, OTHER, build_world, project
from export_kit import history_image as _history_image
from export_kit import image as _image
from export_kit import paths as _paths
from export_kit import sheet_raw as _sheet_raw
from export_kit import trust as _trust
from jsonschema import Draft4Validator
from typer.testing import CliRunner

from cli.app import app
from passport.datasheet import read_datasheet
from passport.export import FORMATS, Tier, export_passport
from passport.export import batterypass as bp
from passport.export import catenax as cx
from passport.export.context import build_context, utc
from passport.export.tiers import Access
from passport.image import Image
from passport.records import Birth, Event, Kind, SohMethod, Status, Values

TIERS = list(Tier)
SCHEMAS = {
    bp.GPI: "GeneralProductInformation_1.2.0_GeneralProductInformation-schema.json",
    bp.PERF: "Performance_1.2.0_PerformanceAndDurability-schema.json",
    bp.CIRC: "Circularity_1.2.0_Circularity-schema.json",
}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batterypass") / "d"
    build_world(out)
    return out


def _sheet_fields(world: Path, image: Image) -> dict[str, Any]:
    return dict(read_datasheet(_sheet_raw(world, image), _trust(world), source="sheet").fields)


def _export(world: Path, tier: Tier, name: str = CELL) -> tuple[dict[str, Any], list[str]]:
    image = _image(world, name)
    result = export_passport(image, _trust(world), _sheet_raw(world, image), fmt="batterypass",
                             tier=tier)  # fmt: skip
    assert result.verified
    assert result.format == "batterypass"
    return result.document, result.missing


# ------------------------------------------------------------------------------ the schemas


def _schema(member: str) -> dict[str, Any]:
    path = shared_path("data", "passport-models", SCHEMAS[member])
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def exported(tier: Tier, missing: list[str]) -> set[str]:
    return {a.path for a in bp.ATTRIBUTES if tier.sees(a.tier) and a.path not in missing}


def member_paths(member: str, paths: set[str]) -> set[str]:
    """A member's attributes, relative to its model's document."""
    return {p.removeprefix(member + ".") for p in paths if p.startswith(member + ".")}


def _validator(member: str, paths: set[str]) -> Draft4Validator:
    schema = project(_schema(member), member_paths(member, paths))
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/")
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("member", bp.MEMBERS)
@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.label)
def test_every_member_validates_against_its_battery_pass_schema(
    world: Path, tier: Tier, member: str
) -> None:
    doc, missing = _export(world, tier)
    assert set(doc) == set(bp.MEMBERS)
    paths = exported(tier, missing)
    errors = sorted(_validator(member, paths).iter_errors(doc[member]), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    # the projection is not vacuous: every exported attribute of the member is in the document
    assert member_paths(member, paths) <= _paths(doc[member])
    assert member_paths(member, paths)


def test_projection_catches_wrong_values(world: Path) -> None:
    doc, missing = _export(world, Tier.LEGITIMATE_INTEREST)
    paths = exported(Tier.LEGITIMATE_INTEREST, missing)
    bad = copy.deepcopy(doc)
    bad[bp.GPI]["batteryStatus"] = "original"  # the enumeration is capitalised
    bad[bp.GPI]["batteryCategory"] = "EV"
    bad[bp.PERF]["batteryTechicalProperties"]["initialInternalResistance"][0][
        "batteryComponent"] = "battery"  # fmt: skip
    bad[bp.PERF]["batteryCondition"]["capacityFade"]["lastUpdate"] = "yesterday"
    bad[bp.CIRC]["recycledContent"][0]["preConsumerShare"] = 120.0
    del bad[bp.CIRC]["sparePartSources"][0]["components"]
    errors = {m: list(_validator(m, paths).iter_errors(bad[m])) for m in bp.MEMBERS}
    assert [len(errors[m]) for m in bp.MEMBERS] == [2, 2, 2]


@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.label)
def test_a_tier_never_contains_a_higher_tiers_attribute(world: Path, tier: Tier) -> None:
    doc, _ = _export(world, tier)
    present = _paths(doc)
    for attr in bp.ATTRIBUTES:
        if not tier.sees(attr.tier):
            assert attr.path not in present, f"{attr.path} ({attr.tier.label}) in {tier.label}"
    # nor does it hold a restricted value under another name
    if tier is Tier.PUBLIC:
        assert "batteryCondition" not in doc[bp.PERF] or set(doc[bp.PERF]["batteryCondition"]) == {
            "roundTripEfficiencyat50PerCentCycleLife"
        }
        assert "batteryStatus" not in doc[bp.GPI]
        assert "safetyInstructions" not in doc[bp.CIRC]["safetyMeasures"]


def test_restricted_tiers_add_their_points(world: Path) -> None:
    """Art. 77(2): point 2 goes to both restricted tiers, point 4 to legitimate interest only
    (and no Battery Pass 1.2.0 attribute is a point 3 test report)."""
    docs = {t: _paths(_export(world, t)[0]) for t in Tier}
    assert docs[Tier.PUBLIC] < docs[Tier.LEGITIMATE_INTEREST]
    assert docs[Tier.PUBLIC] < docs[Tier.AUTHORITY] < docs[Tier.LEGITIMATE_INTEREST]
    for path in (f"{bp.CIRC}.dismantlingAndRemovalInformation", f"{bp.CIRC}.sparePartSources",
                 f"{bp.CIRC}.safetyMeasures.safetyInstructions"):  # fmt: skip
        assert path in docs[Tier.LEGITIMATE_INTEREST], path
        assert path in docs[Tier.AUTHORITY], path
        assert path not in docs[Tier.PUBLIC], path
    for path in (f"{bp.COND}.capacityFade", f"{bp.GPI}.batteryStatus"):
        assert path in docs[Tier.LEGITIMATE_INTEREST], path
        assert path not in docs[Tier.AUTHORITY], path
        assert path not in docs[Tier.PUBLIC], path


def test_the_demo_sheet_leaves_out_only_what_the_demo_history_lacks(world: Path) -> None:
    _, missing = _export(world, Tier.LEGITIMATE_INTEREST)
    # the demo's histories report no cold minutes, power SoH or resistance, and this cell no
    # negative event; everything else has a value
    assert set(missing) == {
        f"{bp.COND}.temperatureInformation.timeExtremeLowTemp",
        f"{bp.COND}.powerFade",
        f"{bp.COND}.internalResistanceIncrease",
        f"{bp.COND}.negativeEvents",
    }


def test_every_attribute_cites_the_annex_point_of_its_tier() -> None:
    for attr in bp.ATTRIBUTES:
        assert attr.path.split(".")[0] in bp.MEMBERS, attr.path
        if attr.tier is Access.POINT_1:
            assert re.search(r"XIII 1|Art\. \d+", attr.annex), attr.path
            assert not re.search(r"XIII [234]", attr.annex), attr.path
        else:
            assert f"XIII {int(attr.tier)}" in attr.annex, attr.path
        assert attr.tier is not Access.POINT_3
    paths = [a.path for a in bp.ATTRIBUTES]
    assert len(paths) == len(set(paths))
    # no attribute sits inside another (the builder would overwrite one with the other)
    for a in paths:
        assert not any(b.startswith(a + ".") for b in paths), a


def test_every_sheet_source_is_a_key_of_the_demo_sheet(world: Path) -> None:
    fields = _sheet_fields(world, _image(world))
    for attr in bp.ATTRIBUTES:
        for source in re.findall(r"sheet:([a-z_.0-9]+)", attr.source):
            node: Any = fields
            for part in source.split("."):
                assert isinstance(node, dict), (attr.path, source)
                assert part in node, (attr.path, source)
                node = node[part]


# ------------------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("convert", "stored", "exported"),
    [
        pytest.param(cx.mah_to_ah, 35_000, 35.0, id="ratedCapacity-mAh-to-Ah"),
        pytest.param(cx.mv_to_v, 2_500, 2.5, id="minimumVoltage-mV-to-V"),
        pytest.param(cx.mv_to_v, 4_200, 4.2, id="maximumVoltage-mV-to-V"),
        pytest.param(cx.uohm_to_ohm, 655, 0.000655, id="ohmicResistance-micro-ohm-to-ohm"),
        pytest.param(cx.cpct_to_pct, 6_000, 60.0, id="capacityThreshold-centipercent-to-pct"),
        pytest.param(cx.wh_to_kwh, 127_750, 127.75, id="energyThroughput-Wh-to-kWh"),
        pytest.param(cx.wh_to_kwh, 118.26, 0.11826, id="ratedEnergy-Wh-to-kWh"),
        pytest.param(cx.deci_to_unit, 12_345, 1234.5, id="capacityThroughput-deciAh-to-Ah"),
        pytest.param(bp.w_to_kw, 354.8, 0.3548, id="ratedMaximumPower-W-to-kW"),
        pytest.param(bp.whole_cycles, 99_999, 9_999, id="numberOfFullCycles-deci-to-whole"),
        pytest.param(bp.whole_cycles, 9, 0, id="numberOfFullCycles-partial-cycle"),
        pytest.param(bp.fade_pct, 8_750, 12.5, id="capacityFade-100-minus-SoH"),
        pytest.param(bp.fade_pct, 10_000, 0.0, id="capacityFade-new-cell"),
        pytest.param(bp.fade_pct, 9_123, 8.77, id="powerFade-100-minus-power-SoH"),
    ],
)
def test_unit_conversions(convert: Any, stored: float, exported: float) -> None:
    assert convert(stored) == pytest.approx(exported, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("now", "initial", "percent"),
    [
        pytest.param(1_500, 1_000, 50.0, id="half-again"),
        pytest.param(1_000, 1_000, 0.0, id="unchanged"),
        pytest.param(900, 1_000, -10.0, id="lower-than-at-birth"),
        pytest.param(1_234, 1_000, 23.4, id="rounded-to-0.01"),
    ],
)
def test_internal_resistance_increase(now: int, initial: int, percent: float) -> None:
    assert bp.increase_pct(now, initial) == pytest.approx(percent)


@pytest.mark.parametrize(
    ("convert", "given", "expected"),
    [
        pytest.param(bp.category_code, "ev", "ev", id="category-ev"),
        pytest.param(bp.category_code, " LMT ", "lmt", id="category-case"),
        pytest.param(bp.category_code, "stationary", "stationary", id="category-stationary"),
        pytest.param(bp.category_code, "sli", None, id="category-sli-has-no-code"),
        pytest.param(bp.category_code, "portable", None, id="category-portable-has-no-code"),
        pytest.param(bp.date_time, dt.date(2025, 3, 7), "2025-03-07T00:00:00Z",
                     id="manufacturingDate-date-time"),
        pytest.param(bp.document_type, "dismantling_manual", "DismantlingManual",
                     id="documentType-manual"),
        pytest.param(bp.document_type, "model_3d", "Model3D", id="documentType-3d"),
        pytest.param(bp.document_type, "wiring plan", "OtherManual", id="documentType-other"),
        pytest.param(bp.postal_address,
                     {"street_address": "A 1", "postal_code": "1", "country": "DE"},
                     {"streetAddress": "A 1", "postalCode": "1", "addressCountry": "DE"},
                     id="postalAddress"),
        pytest.param(bp.postal_address, {"street_address": "A 1", "country": "DE"}, None,
                     id="postalAddress-incomplete"),
        pytest.param(bp.contact, {"name": "N", "identifier": "I", "street_address": "A",
                                  "postal_code": "1", "country": "DE", "email": "a@b.de",
                                  "web": "https://b.de"},
                     {"contactName": "N", "identifier": "I", "webAddress": "https://b.de",
                      "postalAddress": {"streetAddress": "A", "postalCode": "1",
                                        "addressCountry": "DE"}},
                     id="contact-without-email"),
        pytest.param(bp.contact, {"name": "N", "street_address": "A", "postal_code": "1",
                                  "country": "DE"}, None, id="contact-needs-identifier"),
    ],
)  # fmt: skip
def test_value_conversions(convert: Any, given: Any, expected: Any) -> None:
    assert convert(given) == expected


@pytest.mark.parametrize(
    ("status", "name"),
    [(Status.ORIGINAL, "Original"), (Status.REPURPOSED, "Repurposed"), (Status.REUSED, "Reused"),
     (Status.REMANUFACTURED, "Remanufactured"), (Status.WASTE, "Waste")],
    ids=lambda v: str(v),
)  # fmt: skip
def test_status_names_are_the_models_enumeration(status: Status, name: str) -> None:
    assert bp.status_name(int(status)) == name
    enum = _schema(bp.GPI)["components"]["schemas"]["BatteryStatusEnumeration"]["enum"]
    assert name in enum


def test_the_demo_cell_exports_its_birth_record_and_sheet_in_model_units(world: Path) -> None:
    image = _image(world)
    birth = image.birth.body
    assert isinstance(birth, Birth)
    fields = _sheet_fields(world, image)
    doc, _ = _export(world, Tier.LEGITIMATE_INTEREST)
    gpi, tech = doc[bp.GPI], doc[bp.PERF]["batteryTechicalProperties"]
    assert gpi["productIdentifier"] == birth.battery_id
    assert gpi["batteryMass"] == fields["weight_kg"]
    assert gpi["manufacturingDate"] == f"{birth.manufacture_date.isoformat()}T00:00:00Z"
    assert gpi["manufacturingPlace"]["streetAddress"] == (
        fields["facility_addresses"][birth.site]["street_address"])  # fmt: skip
    assert "emailAddress" not in gpi["manufacturerInformation"]
    assert tech["ratedCapacity"] == birth.rated_capacity_mah / 1000
    assert tech["nominalVoltage"] == birth.nominal_voltage_mv / 1000
    assert tech["capacityThresholdForExhaustion"] == birth.exhaustion_threshold_cpct / 100
    assert tech["initialInternalResistance"] == [
        {"ohmicResistance": birth.initial_resistance_uohm / 1e6, "batteryComponent": "cell"}
    ]
    assert tech["ratedEnergy"] == pytest.approx(fields["rated_energy_wh"] / 1000)
    assert tech["ratedMaximumPower"] == pytest.approx(fields["rated_max_power_w"] / 1000)
    assert tech["originalPowerCapability"][0] == {
        "atSoC": 80.0,
        "powerCapabilityAt": fields["power_capability_w"][0]["power_w"],
    }
    shares = {r["recycledMaterial"]: r for r in doc[bp.CIRC]["recycledContent"]}
    assert set(shares) == {"Cobalt", "Lithium", "Nickel", "Lead"}
    for name, total in fields["recycled_content_pct"].items():  # the split adds up
        row = shares[name.capitalize()]
        assert row["preConsumerShare"] + row["postConsumerShare"] == total


def _soh(cpct: int, **more: Any) -> Values:
    return Values(soh_capacity_cpct=cpct, soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=40,
                  **more)  # fmt: skip


def _birth(image: Image) -> Birth:
    birth = image.birth.body
    assert isinstance(birth, Birth)
    return birth


def test_capacity_fade_and_remaining_capacity_carry_the_measurements_time(world: Path) -> None:
    image = _history_image(world, _soh(8_000))
    doc, _ = bp.build(build_context(image, {}), Tier.LEGITIMATE_INTEREST)
    cond = doc[bp.PERF]["batteryCondition"]
    stamp = utc(image.entries[-1].body.time)  # type: ignore[union-attr]
    assert cond["capacityFade"] == {"capacityFadeValue": 20.0, "lastUpdate": stamp}
    rated_ah = _birth(image).rated_capacity_mah / 1000
    assert cond["remainingCapacity"]["remainingCapacityValue"] == pytest.approx(rated_ah * 0.8)
    assert cond["remainingCapacity"]["lastUpdate"] == stamp


def test_internal_resistance_increase_is_relative_to_the_birth_value(world: Path) -> None:
    initial = _birth(_image(world, OTHER)).initial_resistance_uohm
    image = _history_image(world, _soh(9_000, resistance_uohm=initial * 3 // 2))
    doc, _ = bp.build(build_context(image, {}), Tier.LEGITIMATE_INTEREST)
    (row,) = doc[bp.PERF]["batteryCondition"]["internalResistanceIncrease"]
    assert row["internalResistanceIncreaseValue"] == pytest.approx(50.0, abs=0.2)
    assert row["batteryComponent"] == "cell"
    assert row["lastUpdate"] == utc(image.entries[-1].body.time)  # type: ignore[union-attr]


def test_telemetry_counters_temperatures_and_power_convert(world: Path) -> None:
    values = Values(
        fec_deci=99_999,
        ah_deci=123_456,
        wh=987_654,
        soh_power_cpct=9_200,
        minutes_hot=1_234,
        minutes_cold=56,
        minutes_charging_extreme=7,
    )
    image = _history_image(world, values, Kind.TELEMETRY)
    doc, missing = bp.build(build_context(image, {}), Tier.LEGITIMATE_INTEREST)
    cond = doc[bp.PERF]["batteryCondition"]
    stamp = utc(image.entries[-1].body.time)  # type: ignore[union-attr]
    assert cond["numberOfFullCycles"] == {"numberOfFullCyclesValue": 9_999, "lastUpdate": stamp}
    assert cond["capacityThroughput"] == {"capacityThroughputValue": 12_345.6,
                                          "lastUpdate": stamp}  # fmt: skip
    assert cond["energyThroughput"] == 987.654
    assert cond["powerFade"] == 8.0
    # charging outside the window is one counter: the model wants it split by high and low
    assert cond["temperatureInformation"] == {
        "timeExtremeHighTemp": 1_234,
        "timeExtremeLowTemp": 56,
        "lastUpdate": stamp,
    }
    # an empty data sheet gives nothing from it, and invents nothing
    assert f"{bp.GPI}.batteryMass" in missing
    assert "recycledContent" not in doc[bp.CIRC]
    schema_paths = exported(Tier.LEGITIMATE_INTEREST, missing)
    errors = list(_validator(bp.PERF, schema_paths).iter_errors(doc[bp.PERF]))
    assert not errors, [e.message for e in errors]


# ------------------------------------------------------------------------------ status, events


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name.lower())
def test_status_is_the_last_reported_and_restricted(world: Path, status: Status) -> None:
    image = _history_image(world, Values(status=status), Kind.STATUS)
    ctx = build_context(image, {})
    li, _ = bp.build(ctx, Tier.LEGITIMATE_INTEREST)
    public, _ = bp.build(ctx, Tier.PUBLIC)
    assert li[bp.GPI]["batteryStatus"] == bp.status_name(int(status))
    assert "batteryStatus" not in public[bp.GPI]


def test_a_cell_without_a_status_record_is_original(world: Path) -> None:
    doc, _ = bp.build(build_context(_image(world), {}), Tier.LEGITIMATE_INTEREST)
    assert doc[bp.GPI]["batteryStatus"] == "Original"


def test_negative_events_name_their_record_and_time(world: Path) -> None:
    values = Values(fec_deci=99_999, events=(Event.THERMAL_EVENT, Event.WATER_INGRESS))
    image = _history_image(world, values, Kind.TELEMETRY)
    ctx = build_context(image, {})
    doc, _ = bp.build(ctx, Tier.LEGITIMATE_INTEREST)
    events = doc[bp.PERF]["batteryCondition"]["negativeEvents"]
    digest = image.entries[-1].digest.hex()
    stamp = utc(image.entries[-1].body.time)  # type: ignore[union-attr]
    assert events[-2:] == [
        {"negativeEvent": f"thermal event (record {digest})", "lastUpdate": stamp},
        {"negativeEvent": f"water ingress (record {digest})", "lastUpdate": stamp},
    ]
    assert all(STAMP.fullmatch(e["lastUpdate"]) for e in events)
    public, _ = bp.build(ctx, Tier.PUBLIC)
    assert "negativeEvents" not in json.dumps(public)


def test_no_negative_event_leaves_the_list_out(world: Path) -> None:
    ctx = build_context(_image(world), {})
    assert not [e for e in ctx.events if e[0] in bp._NEGATIVE]
    doc, missing = bp.build(ctx, Tier.LEGITIMATE_INTEREST)
    assert "negativeEvents" not in doc[bp.PERF]["batteryCondition"]
    assert f"{bp.COND}.negativeEvents" in missing


# ------------------------------------------------------------------------------ CLI and docs


def test_format_is_offered_and_the_cli_writes_the_three_models(world: Path) -> None:
    assert "batterypass" in FORMATS
    image = world / "images" / CELL
    result = CliRunner().invoke(app, [
        "export", str(image), "--trust", str(world / "trust"), "--db",
        str(world / "passport.db"), "--format", "batterypass", "--tier", "public"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == set(bp.MEMBERS)
    assert "batteryStatus" not in doc[bp.GPI]


def test_mapping_doc_lists_every_attribute() -> None:
    text = (ROOT / "docs" / "eu-mapping.md").read_text(encoding="utf-8")
    section = text.split("## Battery Pass 1.2.0 (`--format batterypass`)", 1)[1].split("\n## ")[0]
    rows = {m.group(1): m.group(2).split(" | ")
            for m in re.finditer(r"^\| `([^`]+)` \| (.+) \|$", section, re.M)}  # fmt: skip
    assert set(rows) == {a.path for a in bp.ATTRIBUTES}
    for attr in bp.ATTRIBUTES:
        assert rows[attr.path] == [attr.tier.label, attr.annex, attr.source, attr.conversion], (
            attr.path
        )
