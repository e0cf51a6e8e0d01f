"""The Battery Pass consortium's data model 1.2.0 (DIN DKE SPEC 99100): every attribute we
export to its GeneralProductInformation, PerformanceAndDurability and Circularity models, where
its value comes from, how its unit is converted and who may read it.

The document is one JSON object with a member per model (`generalProductInformation`,
`performanceAndDurability`, `circularity`), each a document of that model; an attribute's path
starts with its member's name. `ATTRIBUTES` is the table `docs/eu-mapping.md` is written from
(a test keeps the two in step), with the rows and sources of `catenax.ATTRIBUTES`. Names follow
the published schemas exactly, typos included (`batteryTechicalProperties`,
`remainingEnergyalue`, `warrentyPeriod`). An attribute without a value is left out and listed.

Units are the models' (SAMM `unit:`): capacity Ah, voltage V, resistance ohm, energy kWh, power
kW (rated maximum) or W (power capability, Annex XIII 1(i)), shares and fades in % (0-100),
times in extreme temperatures in minutes, timestamps xsd:dateTime.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from passport.export.context import Context, Stamped, utc
from passport.export.table import Attribute, Getter, fill, sheet_value
from passport.export.tiers import Access, Tier
from passport.export.units import (
    cpct_to_pct,
    deci_to_unit,
    fade_pct,
    increase_pct,
    mah_to_ah,
    mv_to_v,
    remaining_ah,
    uohm_to_ohm,
    w_to_kw,
    wh_to_kwh,
    whole_cycles,
)
from passport.records import Event

A1, L2, L4 = Access.POINT_1, Access.POINT_2, Access.POINT_4  # no XIII 3 attribute here

_SUPPLIER_EMAIL = re.compile(r"[\w.-]+@[\w.-]+\.[A-Za-z]{2,}")  # the schema's pattern
GPI = "generalProductInformation"
PERF = "performanceAndDurability"
CIRC = "circularity"
MEMBERS = (GPI, PERF, CIRC)
TECH = f"{PERF}.batteryTechicalProperties"  # sic: the published name
COND = f"{PERF}.batteryCondition"

_CATEGORIES = ("lmt", "ev", "industrial", "stationary")
_STATUS = {0: "Original", 1: "Repurposed", 2: "Reused", 3: "Remanufactured", 4: "Waste"}
_NEGATIVE = {Event.THERMAL_EVENT, Event.ACCIDENT, Event.EXTERNAL_SHORT, Event.WATER_INGRESS,
             Event.OVERCURRENT, Event.FIRE_EXPOSURE}  # fmt: skip
_DOCUMENT_TYPES = {"bill_of_material": "BillOfMaterial", "model_3d": "Model3D",
                   "dismantling_manual": "DismantlingManual", "removal_manual": "RemovalManual",
                   "drawing": "Drawing"}  # fmt: skip
_MATERIALS = ("cobalt", "lithium", "nickel", "lead")  # the model's RecycledMaterial enumeration


# ------------------------------------------------------------------------------ conversions
# (the shared ones, and fade and resistance increase, are in passport.export.units)


def category_code(category: str) -> str | None:
    """The data sheet's category as BatteryCategoryEnum; None for one the model cannot name
    (SLI, portable)."""
    code = category.strip().lower()
    return code if code in _CATEGORIES else None


def status_name(status: int) -> str:
    """Status code -> BatteryStatusEnumeration (capitalised, `Reused` without hyphen)."""
    return _STATUS[status]


def date_time(day: dt.date) -> str:
    """A calendar date as the xsd:dateTime of its start, UTC."""
    return f"{day.isoformat()}T00:00:00Z"


def document_type(kind: str) -> str:
    """A data-sheet document kind (snake_case) -> the model's Documenttype; a kind the model
    does not list is `OtherManual`."""
    return _DOCUMENT_TYPES.get(kind.strip().lower(), "OtherManual")


def postal_address(entry: Any) -> dict[str, str] | None:
    """{street_address, postal_code, country} -> PostalAddress."""
    if not isinstance(entry, dict) or not all(
        entry.get(k) for k in ("street_address", "postal_code", "country")
    ):
        return None
    return {"streetAddress": str(entry["street_address"]),
            "postalCode": str(entry["postal_code"]),
            "addressCountry": str(entry["country"])}  # fmt: skip


def contact(entry: Any) -> dict[str, Any] | None:
    """{name, identifier, street_address, postal_code, country, web} -> ContactInformation.

    The e-mail address is never exported to GeneralProductInformation: its published pattern
    (`^[w.-]+@...`, `w` for `\\w`) admits no real address."""
    address = postal_address(entry)
    if address is None or not entry.get("name") or not entry.get("identifier"):
        return None
    out: dict[str, Any] = {"contactName": str(entry["name"]), "postalAddress": address,
                           "identifier": str(entry["identifier"])}  # fmt: skip
    if entry.get("web"):
        out["webAddress"] = str(entry["web"])
    return out


# ------------------------------------------------------------------------------ getters


def _number(key: str, convert: Callable[[Any], Any] = float) -> Getter:
    def get(ctx: Context) -> Any:
        value = sheet_value(key)(ctx)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return convert(value)

    return get


def _url(key: str) -> Getter:
    def get(ctx: Context) -> Any:
        value = sheet_value(key)(ctx)
        return value if isinstance(value, str) and value else None

    return get


def _held(name: str) -> Callable[[Context], Stamped | None]:
    return lambda ctx: ctx.value(name)


def _timed(name: str, member: str, convert: Callable[[Any], Any]) -> Getter:
    """A running value as the models' {<member>: value, lastUpdate: time of its record}."""

    def get(ctx: Context) -> Any:
        held = ctx.value(name)
        if held is None:
            return None
        return {member: convert(held.value), "lastUpdate": utc(held.time)}

    return get


def _plain(name: str, convert: Callable[[Any], Any]) -> Getter:
    """A running value the model keeps without a timestamp."""

    def get(ctx: Context) -> Any:
        held = ctx.value(name)
        return None if held is None else convert(held.value)

    return get


def _category(ctx: Context) -> Any:
    category = sheet_value("category")(ctx)
    return category_code(category) if isinstance(category, str) else None


def _manufacturing_place(ctx: Context) -> Any:
    addresses = sheet_value("facility_addresses")(ctx)
    if not isinstance(addresses, dict):
        return None
    return postal_address(addresses.get(ctx.birth.site))


def _power_capability(ctx: Context) -> Any:
    points = sheet_value("power_capability_w")(ctx)
    if not isinstance(points, list) or not points:
        return None
    return [{"atSoC": float(p["soc_pct"]), "powerCapabilityAt": float(p["power_w"])}
            for p in points]  # fmt: skip


def _initial_resistance(ctx: Context) -> Any:
    return [{"ohmicResistance": uohm_to_ohm(ctx.birth.initial_resistance_uohm),
             "batteryComponent": "cell"}]  # fmt: skip


def _remaining_capacity(ctx: Context) -> Any:
    held = ctx.value("soh_capacity_cpct")
    if held is None:
        return None
    ah = remaining_ah(ctx.birth.rated_capacity_mah, held.value)
    return {"remainingCapacityValue": ah, "lastUpdate": utc(held.time)}


def _resistance_increase(ctx: Context) -> Any:
    held = ctx.value("resistance_uohm")
    initial = ctx.birth.initial_resistance_uohm
    if held is None or initial <= 0:
        return None
    return [{"internalResistanceIncreaseValue": increase_pct(held.value, initial),
             "lastUpdate": utc(held.time), "batteryComponent": "cell"}]  # fmt: skip


def _negative_events(ctx: Context) -> Any:
    seen = [(e, t, r) for e, t, r in ctx.events if e in _NEGATIVE]
    if not seen:
        return None
    return [{"negativeEvent": f"{e.name.lower().replace('_', ' ')} (record {r})",
             "lastUpdate": utc(t)} for e, t, r in seen]  # fmt: skip


def _temperature_update(ctx: Context) -> Any:
    """The time of the latest record that set an exported time in extreme temperatures."""
    times = [h.time for n in ("minutes_hot", "minutes_cold") if (h := ctx.value(n)) is not None]
    return utc(max(times)) if times else None


def _recycled_content(ctx: Context) -> Any:
    shares = sheet_value("recycled_content_shares_pct")(ctx)
    if not isinstance(shares, dict):
        return None
    out = [{"recycledMaterial": name.capitalize(),
            "preConsumerShare": float(shares[name]["pre_consumer"]),
            "postConsumerShare": float(shares[name]["post_consumer"])}
           for name in _MATERIALS if isinstance(shares.get(name), dict)]  # fmt: skip
    return out or None


def _extinguishing_agent(ctx: Context) -> Any:
    agent = sheet_value("extinguishing_agent")(ctx)
    if not isinstance(agent, dict) or not agent.get("media"):
        return None
    fire_class = f" (fire class {agent['fire_class']})" if agent.get("fire_class") else ""
    return [f"{agent['media']}{fire_class}"]


def _dismantling(ctx: Context) -> Any:
    docs = sheet_value("dismantling_documents")(ctx)
    if not isinstance(docs, list) or not docs:
        return None
    return [{"documentType": document_type(d["type"]), "mimeType": d["mime_type"],
             "documentURL": d["url"]} for d in docs]  # fmt: skip


def _spare_parts(ctx: Context) -> Any:
    sources = sheet_value("spare_part_sources")(ctx)
    if not isinstance(sources, list) or not sources:
        return None
    out = []
    for s in sources:
        address = postal_address(s)
        # the model requires the address, and an e-mail its pattern accepts: else leave out
        if address is None or not _SUPPLIER_EMAIL.fullmatch(str(s.get("email", ""))):
            return None
        out.append({"nameOfSupplier": s["name"], "addressOfSupplier": address,
                    "emailAddressOfSupplier": s["email"], "supplierWebAddress": s["web"],
                    "components": [{"partName": c["name"], "partNumber": c["part_number"]}
                                   for c in s["components"]]})  # fmt: skip
    return out


ATTRIBUTES: tuple[Attribute, ...] = (
    # GeneralProductInformation (Annex VI part A via Annex XIII 1(a); status XIII 4(c))
    Attribute(f"{GPI}.productIdentifier", A1, "XIII 1(a), Art. 77(3)", "cell:battery_id",
              "as stored", lambda c: c.birth.battery_id),
    Attribute(f"{GPI}.batteryCategory", A1, "XIII 1(a), VI A(2)", "sheet:category",
              "ev/lmt/industrial/stationary, as given (SLI, portable: none)", _category),
    Attribute(f"{GPI}.manufacturerInformation", A1, "XIII 1(a), VI A(1)",
              "sheet:manufacturer_contact", "{name, identifier, address, web} -> contact",
              lambda c: contact(sheet_value("manufacturer_contact")(c))),
    Attribute(f"{GPI}.manufacturingDate", A1, "XIII 1(a), VI A(4)", "cell:manufacture_date",
              "date -> YYYY-MM-DDT00:00:00Z", lambda c: date_time(c.birth.manufacture_date)),
    Attribute(f"{GPI}.batteryStatus", L4, "XIII 4(c)", "cell:status",
              "code -> Original/Repurposed/Reused/...", lambda c: status_name(int(c.status))),
    Attribute(f"{GPI}.batteryMass", A1, "XIII 1(a), VI A(5)", "sheet:weight_kg", "kg, as given",
              _number("weight_kg")),
    Attribute(f"{GPI}.manufacturingPlace", A1, "XIII 1(a), VI A(3)",
              "sheet:facility_addresses[cell:site]", "site code -> postal address",
              _manufacturing_place),
    Attribute(f"{GPI}.operatorInformation", A1, "Art. 77(4)", "sheet:operator_contact",
              "{name, identifier, address, web} -> contact",
              lambda c: contact(sheet_value("operator_contact")(c))),
    # PerformanceAndDurability: rated values of the model (Annex XIII 1(g)-(p))
    Attribute(f"{TECH}.originalPowerCapability", A1, "XIII 1(i)", "sheet:power_capability_w",
              "[{soc_pct, power_w}] -> [{atSoC %, powerCapabilityAt W}]", _power_capability),
    Attribute(f"{TECH}.ratedMaximumPower", A1, "XIII 1(i)", "sheet:rated_max_power_w",
              "W -> kW", _number("rated_max_power_w", w_to_kw)),
    Attribute(f"{TECH}.ratedEnergy", L4, "XIII 4(a), Art. 10", "sheet:rated_energy_wh",
              "Wh -> kWh", _number("rated_energy_wh", wh_to_kwh)),
    Attribute(f"{TECH}.expectedNumberOfCycles", A1, "XIII 1(j)", "cell:expected_cycle_life",
              "cycles, as stored", lambda c: c.birth.expected_cycle_life),
    Attribute(f"{TECH}.roundtripEfficiency", A1, "XIII 1(n)",
              "sheet:round_trip_efficiency_pct.initial", "%, as given",
              _number("round_trip_efficiency_pct.initial")),
    Attribute(f"{TECH}.ratedCapacity", A1, "XIII 1(g)", "cell:rated_capacity_mah", "mAh -> Ah",
              lambda c: mah_to_ah(c.birth.rated_capacity_mah)),
    Attribute(f"{TECH}.initialInternalResistance", A1, "XIII 1(o)",
              "cell:initial_resistance_uohm", "micro-ohm -> ohm, component cell",
              _initial_resistance),
    Attribute(f"{TECH}.expectedLifetime", L4, "XIII 4(a), IV A(5)",
              "sheet:expected_lifetime_years", "years, as given (whole)",
              _number("expected_lifetime_years", int)),
    Attribute(f"{TECH}.nominalVoltage", A1, "XIII 1(h)", "cell:nominal_voltage_mv", "mV -> V",
              lambda c: mv_to_v(c.birth.nominal_voltage_mv)),
    Attribute(f"{TECH}.minimumVoltage", A1, "XIII 1(h)", "cell:min_voltage_mv", "mV -> V",
              lambda c: mv_to_v(c.birth.min_voltage_mv)),
    Attribute(f"{TECH}.maximumVoltage", A1, "XIII 1(h)", "cell:max_voltage_mv", "mV -> V",
              lambda c: mv_to_v(c.birth.max_voltage_mv)),
    Attribute(f"{TECH}.capacityThresholdForExhaustion", A1, "XIII 1(k)",
              "cell:exhaustion_threshold_cpct", "0.01 % -> %",
              lambda c: cpct_to_pct(c.birth.exhaustion_threshold_cpct)),
    Attribute(f"{TECH}.lifetimeReferenceTest", A1, "XIII 1(j)",
              "sheet:lifetime_reference_test_url", "URL, as given",
              _url("lifetime_reference_test_url")),
    Attribute(f"{TECH}.cRateLifeCycleTest", A1, "XIII 1(p)", "sheet:cycle_life_test_c_rate",
              "C, as given", _number("cycle_life_test_c_rate")),
    Attribute(f"{COND}.roundTripEfficiencyat50PerCentCycleLife", A1, "XIII 1(n)",
              "sheet:round_trip_efficiency_pct.at_50pct_cycle_life", "%, as given",
              _number("round_trip_efficiency_pct.at_50pct_cycle_life")),
    # PerformanceAndDurability: this battery's condition (Annex XIII 4, Annex VII)
    Attribute(f"{COND}.energyThroughput", L4, "XIII 4(b), VII B", "cell:wh", "Wh -> kWh",
              _plain("wh", wh_to_kwh)),
    Attribute(f"{COND}.capacityThroughput", L4, "XIII 4(b), VII B", "cell:ah_deci",
              "0.1 Ah -> Ah", _timed("ah_deci", "capacityThroughputValue", deci_to_unit)),
    Attribute(f"{COND}.numberOfFullCycles", L4, "XIII 4(d)", "cell:fec_deci",
              "0.1 cycle -> cycles (whole)",
              _timed("fec_deci", "numberOfFullCyclesValue", whole_cycles)),
    Attribute(f"{COND}.capacityFade", L4, "XIII 4(a), IV A(1)", "cell:soh_capacity_cpct",
              "100 % - SoH (0.01 % -> %)", _timed("soh_capacity_cpct", "capacityFadeValue",
                                                  fade_pct)),
    Attribute(f"{COND}.remainingCapacity", L4, "XIII 4(b), VII A(1)",
              "cell:soh_capacity_cpct x rated_capacity_mah", "SoH x rated -> Ah",
              _remaining_capacity),
    Attribute(f"{COND}.negativeEvents", L4, "XIII 4(d)", "cell:events",
              "event codes -> [{text naming the record, its time}]", _negative_events),
    Attribute(f"{COND}.temperatureInformation.timeExtremeHighTemp", L4, "XIII 4(d), VII B",
              "cell:minutes_hot", "minutes, as stored", _plain("minutes_hot", int)),
    Attribute(f"{COND}.temperatureInformation.timeExtremeLowTemp", L4, "XIII 4(d), VII B",
              "cell:minutes_cold", "minutes, as stored", _plain("minutes_cold", int)),
    Attribute(f"{COND}.temperatureInformation.lastUpdate", L4, "XIII 4(d), VII B",
              "cell:minutes_hot/cold", "time of the later record", _temperature_update),
    Attribute(f"{COND}.powerFade", L4, "XIII 4(a), IV A(2)", "cell:soh_power_cpct",
              "100 % - power SoH (0.01 % -> %)", _plain("soh_power_cpct", fade_pct)),
    Attribute(f"{COND}.internalResistanceIncrease", L4, "XIII 4(a), IV A(3)",
              "cell:resistance_uohm / initial_resistance_uohm",
              "(R - R0) / R0 -> %, component cell", _resistance_increase),
    # Circularity (Annex XIII 1(e), 1(f), 1(q); 2(b)-(d))
    Attribute(f"{CIRC}.dismantlingAndRemovalInformation", L2, "XIII 2(c)",
              "sheet:dismantling_documents", "[{type, mime_type, url}] -> documents "
              "(dismantling_manual -> DismantlingManual, ...)", _dismantling),
    Attribute(f"{CIRC}.sparePartSources", L2, "XIII 2(b)", "sheet:spare_part_sources",
              "[{name, address, email, web, components}] -> suppliers", _spare_parts),
    Attribute(f"{CIRC}.recycledContent", A1, "XIII 1(e), Art. 8",
              "sheet:recycled_content_shares_pct", "{material: {pre, post}} % -> list, "
              "cobalt -> Cobalt", _recycled_content),
    Attribute(f"{CIRC}.safetyMeasures.safetyInstructions", L2, "XIII 2(d)",
              "sheet:documents.safety_measures", "URL, as given",
              _url("documents.safety_measures")),
    Attribute(f"{CIRC}.safetyMeasures.extinguishingAgent", A1, "XIII 1(a), VI A(9)",
              "sheet:extinguishing_agent", "{media, fire_class} -> ['media (fire class X)']",
              _extinguishing_agent),
    Attribute(f"{CIRC}.endOfLifeInformation.wastePrevention", A1, "XIII 1(q), Art. 60(1)(a)",
              "sheet:documents.waste_prevention", "URL, as given",
              _url("documents.waste_prevention")),
    Attribute(f"{CIRC}.endOfLifeInformation.separateCollection", A1,
              "XIII 1(q), Art. 60(1)(b)", "sheet:documents.separate_collection",
              "URL, as given", _url("documents.separate_collection")),
    Attribute(f"{CIRC}.endOfLifeInformation.informationOnCollection", A1,
              "XIII 1(q), Art. 60(1)(c)", "sheet:collection_information_url", "URL, as given",
              _url("collection_information_url")),
    Attribute(f"{CIRC}.renewableContent", A1, "XIII 1(f)", "sheet:renewable_content_pct",
              "%, as given", _number("renewable_content_pct")),
)  # fmt: skip


def build(ctx: Context, tier: Tier) -> tuple[dict[str, Any], list[str]]:
    """The three models' documents for `tier` (one member each), and the paths left out for
    want of a value."""
    doc: dict[str, Any] = {member: {} for member in MEMBERS}
    return doc, fill(doc, ATTRIBUTES, ctx, tier)
