"""The Catena-X battery passport (aspect model io.catenax.battery.battery_pass 6.1.0): every
attribute we export, where its value comes from, how its unit is converted and who may read it.

`ATTRIBUTES` is the table `docs/eu-mapping.md` is written from (a test keeps the two in step).
Each row is one attribute (a leaf, or a list the schema keeps whole): its path in the document,
its tier (Annex XIII point), the source (`cell:` a birth-record field or a running value of
the history, `sheet:` a field of the OEM's signed data sheet, `passport:` the passport itself)
and the conversion from the stored unit to the schema's. An attribute without a value (a field
the data sheet lacks, a value the history never reported) is left out and listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from passport.export.context import Context, Stamped, utc
from passport.export.table import Attribute, Getter, fill, sheet_value
from passport.export.tiers import Access, Tier
from passport.export.units import (
    cpct_to_pct,
    dc_to_c,
    deci_to_unit,
    fade_pct,
    increase_pct,
    mah_to_ah,
    mv_to_v,
    remaining_ah,
    uohm_to_ohm,
    wh_to_kwh,
    whole_cycles,
)
from passport.records import Chemistry, Event

SPEC_VERSION = "urn:io.catenax.battery.battery_pass:6.1.0"
A1, L2, A3, L4 = Access.POINT_1, Access.POINT_2, Access.POINT_3, Access.POINT_4


_CHEMISTRY = {
    Chemistry.NMC: "Lithium Nickel Manganese Cobalt Oxide (NMC)",
    Chemistry.NCA: "Lithium Nickel Cobalt Aluminium Oxide (NCA)",
    Chemistry.LFP: "Lithium Iron Phosphate (LFP)",
    Chemistry.LMO: "Lithium Manganese Oxide (LMO)",
    Chemistry.LCO: "Lithium Cobalt Oxide (LCO)",
    Chemistry.LTO: "Lithium Titanate (LTO)",
    Chemistry.SODIUM_ION: "Sodium-ion",
    Chemistry.LMFP: "Lithium Manganese Iron Phosphate (LMFP)",
    Chemistry.OTHER: "other",
}
_CATEGORY = {"ev": "EV", "lmt": "LMT", "sli": "SLI", "industrial": "industrial",
             "portable": "portable", "incorporated": "incorporated"}  # fmt: skip
_STATUS = {0: "original", 1: "repurposed", 2: "re-used", 3: "remanufactured", 4: "waste"}
_NEGATIVE = {Event.THERMAL_EVENT, Event.ACCIDENT, Event.EXTERNAL_SHORT, Event.WATER_INGRESS,
             Event.OVERCURRENT, Event.FIRE_EXPOSURE}  # fmt: skip


# ------------------------------------------------------------------------------ getters


def _doc(key: str, header: str) -> Getter:
    """A document reference (URL) from the data sheet as the schema's document list."""

    def get(ctx: Context) -> Any:
        url = sheet_value(f"documents.{key}")(ctx)
        if not isinstance(url, str) or not url:
            return None
        return [{"header": header, "contentType": "URL", "content": url}]

    return get


def _stamped(name: str, convert: Callable[[Any], Any]) -> Getter:
    def get(ctx: Context) -> Any:
        held: Stamped | None = ctx.value(name)
        if held is None:
            return None
        return {"value": convert(held.value), "time": utc(held.time)}

    return get


def _material(name: str) -> Getter:
    """Recycled content of an active material (Art. 8), critical-raw-material flag."""

    def get(ctx: Context) -> Any:
        recycled = sheet_value(f"recycled_content_pct.{name}")(ctx)
        docs = _doc("recycled_content", "Recycled content declaration")(ctx)
        if recycled is None or docs is None:
            return None
        critical = name in (sheet_value("critical_raw_materials")(ctx) or [])
        return {"recycled": float(recycled), "critical": bool(critical),
                "location": sheet_value("active_material_location")(ctx) or "cathode",
                "documentation": docs}  # fmt: skip

    return get


def _resistance_increase(ctx: Context) -> Any:
    held = ctx.value("resistance_uohm")
    initial = ctx.birth.initial_resistance_uohm
    if held is None or initial <= 0:
        return None
    return {"cell": {"value": increase_pct(held.value, initial), "time": utc(held.time)}}


def _resistance_remaining(ctx: Context) -> Any:
    held = ctx.value("resistance_uohm")
    if held is None:
        return None
    return {"cell": {"value": uohm_to_ohm(held.value), "time": utc(held.time)}}


def _capacity_now(ctx: Context) -> Any:
    held = ctx.value("soh_capacity_cpct")
    if held is None:
        return None
    ah = remaining_ah(ctx.birth.rated_capacity_mah, held.value)
    return {"value": ah, "time": utc(held.time)}


def _negative_events(ctx: Context) -> Any:
    seen = [(e, t, r) for e, t, r in ctx.events if e in _NEGATIVE]
    if not seen:
        return None
    return [{"header": e.name.lower().replace("_", " "), "contentType": "text/plain",
             "content": f"reported in the record {r} ({utc(t)})"} for e, t, r in seen]  # fmt: skip


def _operating_environment(ctx: Context) -> Any:
    parts = []
    for name, words in (("minutes_hot", "above the maximum temperature"),
                        ("minutes_cold", "below the minimum temperature"),
                        ("minutes_charging_extreme", "charging outside the charge window"),
                        ("deep_discharges", "deep discharges")):  # fmt: skip
        held = ctx.value(name)
        if held is not None:
            unit = "" if name == "deep_discharges" else " min"
            parts.append(f"{held.value}{unit} {words} (as of {utc(held.time)})")
    if not parts:
        return None
    return [{"header": "Time in extreme conditions (Annex VII)", "contentType": "text/plain",
             "content": "; ".join(parts)}]  # fmt: skip


def _const(value: Any) -> Getter:
    return lambda _ctx: value


def _cell(get: Callable[[Context], Any]) -> Getter:
    return get


def _rated_capacity(ctx: Context) -> Any:
    return {"value": mah_to_ah(ctx.birth.rated_capacity_mah),
            "thresholdExhaustion": cpct_to_pct(ctx.birth.exhaustion_threshold_cpct),
            "temperature": dc_to_c(ctx.birth.capacity_test.temperature_dc)}  # fmt: skip


def _rated_voltage(ctx: Context) -> Any:
    b = ctx.birth
    return {"min": mv_to_v(b.min_voltage_mv), "nominal": mv_to_v(b.nominal_voltage_mv),
            "max": mv_to_v(b.max_voltage_mv)}  # fmt: skip


def _rated_resistance(ctx: Context) -> Any:
    b = ctx.birth
    ohm = uohm_to_ohm(b.initial_resistance_uohm)
    # the passport is a cell's: as a battery of one cell, its pack resistance is the cell's
    return {"cell": ohm, "pack": ohm,
            "temperature": dc_to_c(b.resistance_test.temperature_dc)}  # fmt: skip


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("specVersion", A1, "-", "passport", "constant", _const(SPEC_VERSION)),
    # identification (Annex XIII 1(a), Annex VI part A)
    Attribute("identification.category", A1, "XIII 1(a), VI A", "sheet:category",
              "ev/lmt/sli/... -> EV/LMT/SLI/...",
              lambda c: _CATEGORY.get(str(sheet_value("category")(c)).lower())),
    Attribute("identification.chemistry", A1, "XIII 1(b)", "cell:chemistry",
              "code -> name", lambda c: _CHEMISTRY[c.birth.chemistry]),
    Attribute("identification.idDmc", A1, "XIII 1(a)", "cell:battery_id", "as stored",
              lambda c: c.birth.battery_id),
    Attribute("identification.identification.serial", A1, "XIII 1(a), VI A", "cell:battery_id",
              "as stored", lambda c: [{"key": "partInstanceId", "value": c.birth.battery_id}]),
    Attribute("identification.identification.type", A1, "XIII 1(a), VI A",
              "sheet:part_number, cell:model", "as stored",
              lambda c: {"manufacturerPartId": sheet_value("part_number")(c) or c.birth.model,
                         "nameAtManufacturer": c.birth.model}),
    Attribute("identification.identification.dataCarrier", A1, "Art. 77(3)", "passport",
              "constant", lambda c: {"carrierType": "NFC", "carrierLayout": "NFC Forum Type 5 tag"
                                     + (f" ({c.profile})" if c.profile else "")}),
    # operation
    Attribute("operation.manufacturer.manufacturingDate", A1, "XIII 1(a), VI A",
              "cell:manufacture_date", "date -> YYYY-MM-DD",
              lambda c: c.birth.manufacture_date.isoformat()),
    Attribute("operation.manufacturer.manufacturer", A1, "XIII 1(a), VI A",
              "sheet:economic_operator_bpnl", "as given", sheet_value("economic_operator_bpnl")),
    Attribute("operation.manufacturer.facility", A1, "XIII 1(a), VI A",
              "sheet:facilities[cell:site]", "site code -> BPNA",
              lambda c: ([{"facility": f}] if (f := (sheet_value("facilities")(c) or {})
                                               .get(c.birth.site)) else None)),
    # characteristics
    Attribute("characteristics.physicalDimension.weight", A1, "XIII 1(a), VI A",
              "sheet:weight_kg", "kg -> {value, unit:kilogram}",
              lambda c: None if (w := sheet_value("weight_kg")(c)) is None
              else {"value": float(w), "unit": "unit:kilogram"}),
    Attribute("characteristics.warranty", A1, "XIII 1(m)", "sheet:warranty_years",
              "years -> {lifeValue, unit:year}",
              lambda c: None if (y := sheet_value("warranty_years")(c)) is None
              else {"lifeValue": y, "lifeUnit": "unit:year"}),
    # sustainability
    Attribute("sustainability.carbonFootprint", A1, "XIII 1(c), Art. 7",
              "sheet:carbon_footprint_kg_co2e_per_kwh", "kg CO2e/kWh, as given",
              lambda c: None if (v := sheet_value("carbon_footprint_kg_co2e_per_kwh")(c)) is None
              or _doc("carbon_footprint", "")(c) is None else [{
                  "value": float(v), "unit": "kg CO2 / kWh", "type": "Climate Change Total",
                  "lifecycle": "total", "rulebook": _doc("carbon_footprint", "Rulebook")(c),
                  "declaration": _doc("carbon_footprint", "Carbon footprint declaration")(c),
                  "manufacturingPlant": [{"facility": sheet_value("facility_bpna")(c)}]
                  if sheet_value("facility_bpna")(c) else []}]),
    Attribute("sustainability.documents.separateCollection", A1, "XIII 1(q), Art. 60",
              "sheet:documents.separate_collection", "URL -> document",
              _doc("separate_collection", "Separate collection")),
    Attribute("sustainability.documents.wastePrevention", A1, "XIII 1(q), Art. 60",
              "sheet:documents.waste_prevention", "URL -> document",
              _doc("waste_prevention", "Waste prevention")),
    Attribute("sustainability.status", L4, "XIII 4(c)", "cell:status", "code -> name",
              lambda c: _STATUS[int(c.status)]),
    # materials (recycled content: XIII 1(e); detailed composition: XIII 2(a))
    Attribute("materials.active.cobalt", A1, "XIII 1(e), Art. 8",
              "sheet:recycled_content_pct.cobalt", "%, as given", _material("cobalt")),
    Attribute("materials.active.lithium", A1, "XIII 1(e), Art. 8",
              "sheet:recycled_content_pct.lithium", "%, as given", _material("lithium")),
    Attribute("materials.active.nickel", A1, "XIII 1(e), Art. 8",
              "sheet:recycled_content_pct.nickel", "%, as given", _material("nickel")),
    Attribute("materials.composition", L2, "XIII 2(a)", "sheet:composition",
              "list of {name, cas, concentration_pct, location} -> composition",
              lambda c: None if not isinstance(comp := sheet_value("composition")(c), list) else [{
                  "id": [{"id": m["cas"], "type": "CAS", "name": m["name"]}],
                  "concentration": float(m["concentration_pct"]), "unit": "unit:percent",
                  "critical": m["name"].lower() in (sheet_value("critical_raw_materials")(c) or []),
                  "documentation": _doc("composition", "Composition")(c) or [],
                  "recycled": float(m.get("recycled_pct", 0)), "location": m["location"],
                  "renewable": float(m.get("renewable_pct", 0))} for m in comp]),
    # performance: rated (XIII 1(g)-(o)) and dynamic (XIII 4, Annex VII)
    Attribute("performance.rated.capacity", A1, "XIII 1(g), 1(k)",
              "cell:rated_capacity_mah, exhaustion_threshold_cpct, capacity_test",
              "mAh -> Ah; 0.01 % -> %; 0.1 degC -> degC", _rated_capacity),
    Attribute("performance.rated.voltage", A1, "XIII 1(h)", "cell:min/nominal/max_voltage_mv",
              "mV -> V", _rated_voltage),
    Attribute("performance.rated.resistance", A1, "XIII 1(o)",
              "cell:initial_resistance_uohm, resistance_test",
              "micro-ohm -> ohm (pack = cell: one cell); 0.1 degC -> degC", _rated_resistance),
    Attribute("performance.rated.temperature", A1, "XIII 1(l)", "sheet:temperature_range_c",
              "degC, as given",
              lambda c: None if not isinstance(t := sheet_value("temperature_range_c")(c), dict)
              else {"lower": float(t["lower"]), "upper": float(t["upper"])}),
    Attribute("performance.rated.lifetime.cycleLifeTesting.cycles", A1, "XIII 1(j)",
              "cell:expected_cycle_life", "cycles, as stored",
              lambda c: c.birth.expected_cycle_life),
    Attribute("performance.dynamic.capacity.capacity", L4, "XIII 4, VII",
              "cell:soh_capacity_cpct x rated_capacity_mah", "SoH x rated -> Ah",
              _capacity_now),
    Attribute("performance.dynamic.capacity.fade", L4, "XIII 4(a), IV",
              "cell:soh_capacity_cpct", "100 % - SoH (0.01 % -> %)",
              _stamped("soh_capacity_cpct", fade_pct)),
    Attribute("performance.dynamic.capacity.throughput", L4, "VII", "cell:ah_deci",
              "0.1 Ah -> Ah", _stamped("ah_deci", deci_to_unit)),
    Attribute("performance.dynamic.fullCycles", L4, "XIII 4, VII", "cell:fec_deci",
              "0.1 cycle -> cycles (whole)", _stamped("fec_deci", whole_cycles)),
    Attribute("performance.dynamic.energy.throughput", L4, "VII", "cell:wh", "Wh -> kWh",
              _stamped("wh", wh_to_kwh)),
    Attribute("performance.dynamic.resistance.increase", L4, "XIII 4(a), IV",
              "cell:resistance_uohm / initial_resistance_uohm", "ratio -> % increase",
              _resistance_increase),
    Attribute("performance.dynamic.resistance.remaining", L4, "XIII 4, VII",
              "cell:resistance_uohm", "micro-ohm -> ohm", _resistance_remaining),
    Attribute("performance.dynamic.negativeEvents", L4, "XIII 4, VII", "cell:events",
              "event codes -> documents naming the record", _negative_events),
    Attribute("performance.dynamic.operatingEnvironment", L4, "XIII 4, VII",
              "cell:minutes_hot/cold/charging_extreme, deep_discharges",
              "minutes, counts -> text", _operating_environment),
    # conformity
    Attribute("conformity.declarationOfConformity", A1, "XIII 1, Art. 18",
              "sheet:documents.declaration_of_conformity", "URL -> document",
              _doc("declaration_of_conformity", "EU declaration of conformity")),
    Attribute("conformity.dueDiligencePolicy", A1, "XIII 1(d), Art. 52",
              "sheet:documents.due_diligence", "URL -> document",
              _doc("due_diligence", "Due diligence report")),
    Attribute("conformity.resultOfTestReport", A3, "XIII 3", "sheet:documents.test_report",
              "URL -> document", _doc("test_report", "Test reports proving compliance")),
    # safety
    Attribute("safety.usableExtinguishAgent", A1, "XIII 1(a), VI A",
              "sheet:extinguishing_agent", "text -> [{media, fireClass}]",
              lambda c: None if not isinstance(a := sheet_value("extinguishing_agent")(c), dict)
              else [{"media": a["media"], "fireClass": a["fire_class"]}]),
    Attribute("safety.meaningOfLabels", A1, "XIII 1(s)", "sheet:documents.labels",
              "URL -> document", _doc("labels", "Meaning of labels and symbols")),
    Attribute("safety.safetyMeasures", L2, "XIII 2(d)", "sheet:documents.safety_measures",
              "URL -> document", _doc("safety_measures", "Safety measures")),
    Attribute("safety.dismantling", L2, "XIII 2(c)", "sheet:documents.dismantling",
              "URL -> document", _doc("dismantling", "Dismantling information")),
    # metadata
    Attribute("metadata.passportIdentifier", A1, "Art. 77(3)", "cell:passport_id",
              "UUID -> urn:uuid:", lambda c: f"urn:uuid:{c.birth.passport_id}"),
    Attribute("metadata.issueDate", A1, "Art. 77", "cell:issued_at", "epoch -> YYYY-MM-DD",
              lambda c: utc(c.birth.issued_at)[:10]),
    Attribute("metadata.economicOperatorId", A1, "Art. 77(4)", "sheet:economic_operator_bpnl",
              "as given", sheet_value("economic_operator_bpnl")),
    Attribute("metadata.version", A1, "-", "passport", "constant", _const("1.0.0")),
    Attribute("metadata.status", A1, "-", "passport", "constant",
              lambda c: "approved" if c.verified else "draft"),
)  # fmt: skip


def build(ctx: Context, tier: Tier) -> tuple[dict[str, Any], list[str]]:
    """The document for `tier`, and the paths left out for want of a value."""
    doc: dict[str, Any] = {}
    return doc, fill(doc, ATTRIBUTES, ctx, tier)
