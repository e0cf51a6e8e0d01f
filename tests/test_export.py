"""EU passport export: tiers never leak, units convert as the table says, documents validate
against the official Catena-X schema (its tier projection), bad input exports nothing."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, shared_path
from export_kit import build_world, project
from export_kit import dig as _dig
from export_kit import history_image as _history_image
from export_kit import image as _image
from export_kit import paths as _paths
from export_kit import sheet_raw as _sheet_for
from export_kit import trust as _trust
from jsonschema import Draft4Validator
from registry_kit import tampered_image
from typer.testing import CliRunner

from cli.app import app
from passport.errors import InputError, VerificationError
from passport.export import Tier, export_passport
from passport.export import catenax as cx
from passport.export.context import build_context
from passport.export.tiers import Access
from passport.records import Birth, Event, Kind, SohMethod, Values
from passport.writer import read_image

RUNNER = CliRunner()
TIERS = list(Tier)


DEMO: dict[str, list[str]] = {}  # scenario -> image names, filled by the fixture


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "d"
    DEMO.update(build_world(out))
    return out


# ------------------------------------------------------------------------------ the schema


def _schema() -> dict[str, Any]:
    path = shared_path("data", "passport-models", "6.1.0_BatteryPass-schema.json")
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def exported_paths(tier: Tier, missing: list[str]) -> set[str]:
    return {a.path for a in cx.ATTRIBUTES if tier.sees(a.tier) and a.path not in missing}


@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.label)
def test_every_tier_validates_against_the_catenax_schema(world: Path, tier: Tier) -> None:
    image = _image(world)
    result = export_passport(image, _trust(world), _sheet_for(world, image), tier=tier)
    assert result.verified
    schema = project(_schema(), exported_paths(tier, result.missing))
    errors = sorted(Draft4Validator(schema).iter_errors(result.document), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    # and the projection is not vacuous: the full schema's type checks reach every attribute
    assert set(exported_paths(tier, result.missing)) <= _paths(result.document)


def test_projection_catches_a_wrong_value(world: Path) -> None:
    image = _image(world)
    result = export_passport(image, _trust(world), _sheet_for(world, image), tier=Tier.AUTHORITY)
    schema = project(_schema(), exported_paths(Tier.AUTHORITY, result.missing))
    bad = copy.deepcopy(result.document)
    bad["operation"]["manufacturer"]["manufacturer"] = "ACME"  # not a BPNL
    bad["characteristics"]["physicalDimension"]["weight"]["unit"] = "unit:stone"
    errors = list(Draft4Validator(schema).iter_errors(bad))
    assert len(errors) == 2


@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.label)
def test_a_tier_never_contains_a_higher_tiers_attribute(world: Path, tier: Tier) -> None:
    image = _image(world)
    doc = export_passport(image, _trust(world), _sheet_for(world, image), tier=tier).document
    present = _paths(doc)
    for attr in cx.ATTRIBUTES:
        if not tier.sees(attr.tier):
            assert attr.path not in present, f"{attr.path} ({attr.tier.label}) in {tier.label}"


def test_higher_tiers_add_attributes(world: Path) -> None:
    image = _image(world)
    sheet = _sheet_for(world, image)
    docs = {t: _paths(export_passport(image, _trust(world), sheet, tier=t).document) for t in Tier}
    assert docs[Tier.PUBLIC] < docs[Tier.LEGITIMATE_INTEREST]
    assert docs[Tier.PUBLIC] < docs[Tier.AUTHORITY]
    # Art. 77(2): point 2 to both, point 3 to authorities only, point 4 to legitimate interest
    for both in ("safety.dismantling", "materials.composition"):
        assert both in docs[Tier.LEGITIMATE_INTEREST]
        assert both in docs[Tier.AUTHORITY]
    assert "conformity.resultOfTestReport" in docs[Tier.AUTHORITY]
    assert "conformity.resultOfTestReport" not in docs[Tier.LEGITIMATE_INTEREST]
    assert "performance.dynamic.capacity.fade" in docs[Tier.LEGITIMATE_INTEREST]
    assert "performance.dynamic" not in docs[Tier.AUTHORITY]


def test_every_attribute_cites_the_annex_xiii_point_of_its_access() -> None:
    for attr in cx.ATTRIBUTES:
        if attr.tier is Access.POINT_1 and attr.annex != "-":
            assert re.search(r"XIII 1|Art\. \d+", attr.annex), attr.path
        elif attr.tier is Access.POINT_4:
            assert re.search(r"XIII 4|VII", attr.annex), attr.path
        elif attr.tier is not Access.POINT_1:
            assert f"XIII {int(attr.tier)}" in attr.annex, attr.path


# ------------------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("convert", "stored", "exported"),
    [
        pytest.param(cx.mah_to_ah, 35_000, 35.0, id="mAh-to-Ah"),
        pytest.param(cx.mah_to_ah, 2_100, 2.1, id="mAh-to-Ah-small"),
        pytest.param(cx.mv_to_v, 3_650, 3.65, id="mV-to-V"),
        pytest.param(cx.uohm_to_ohm, 655, 0.000655, id="micro-ohm-to-ohm"),
        pytest.param(cx.dc_to_c, 250, 25.0, id="decidegree-to-degC"),
        pytest.param(cx.dc_to_c, -200, -20.0, id="negative-decidegree"),
        pytest.param(cx.cpct_to_pct, 6_000, 60.0, id="centipercent-to-percent"),
        pytest.param(cx.deci_to_unit, 12_345, 1234.5, id="deci-Ah-to-Ah"),
        pytest.param(cx.wh_to_kwh, 4_321, 4.321, id="Wh-to-kWh"),
    ],
)
def test_unit_conversions(convert: Any, stored: int, exported: float) -> None:
    assert convert(stored) == pytest.approx(exported, rel=1e-12)


@pytest.mark.parametrize(
    ("values", "path", "expected"),
    [
        pytest.param(Values(soh_capacity_cpct=8_750, soh_method=SohMethod.CAPACITY_TEST,
                            soh_sigma_cpct=40),
                     "performance.dynamic.capacity.fade.value", 12.5, id="soh-to-fade"),
        pytest.param(Values(soh_capacity_cpct=8_000, soh_method=SohMethod.CAPACITY_TEST,
                            soh_sigma_cpct=40),
                     "performance.dynamic.capacity.capacity.value", None, id="soh-to-Ah"),
        pytest.param(Values(soh_capacity_cpct=9_000, soh_method=SohMethod.CAPACITY_TEST,
                            soh_sigma_cpct=40, resistance_uohm=1_234),
                     "performance.dynamic.resistance.remaining.cell.value", 0.001234,
                     id="resistance-ohm"),
    ],
)  # fmt: skip
def test_dynamic_values_convert(
    world: Path, values: Values, path: str, expected: float | None
) -> None:
    image = _history_image(world, values)
    ctx = build_context(image, {})
    doc, _ = cx.build(ctx, Tier.LEGITIMATE_INTEREST)
    birth = image.birth.body
    assert isinstance(birth, Birth)
    if path.endswith("capacity.capacity.value"):
        expected = birth.rated_capacity_mah / 1000 * 0.8
    assert _dig(doc, path) == pytest.approx(expected)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", _dig(doc, path.rsplit(".", 1)[0]
                        + ".time"))  # fmt: skip


def test_telemetry_counters_and_events_convert(world: Path) -> None:
    values = Values(fec_deci=99_999, ah_deci=123_456, wh=987_654, events=(Event.THERMAL_EVENT,))
    image = _history_image(world, values, Kind.TELEMETRY)
    ctx = build_context(image, {})
    doc, _ = cx.build(ctx, Tier.LEGITIMATE_INTEREST)
    assert _dig(doc, "performance.dynamic.fullCycles.value") == 9_999
    assert _dig(doc, "performance.dynamic.capacity.throughput.value") == 12_345.6
    assert _dig(doc, "performance.dynamic.energy.throughput.value") == 987.654
    events = _dig(doc, "performance.dynamic.negativeEvents")
    assert events[-1]["header"] == "thermal event"
    assert image.entries[-1].digest.hex() in events[-1]["content"]


def test_resistance_increase_is_a_percentage_of_the_birth_value(world: Path) -> None:
    image = _image(world, "01-09506000134352-21-D00002.t5t")
    birth = image.birth.body
    assert isinstance(birth, Birth)
    grown = _history_image(world, Values(
        soh_capacity_cpct=9_000, soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=40,
        resistance_uohm=birth.initial_resistance_uohm * 3 // 2,
    ))  # fmt: skip
    doc, _ = cx.build(build_context(grown, {}), Tier.LEGITIMATE_INTEREST)
    assert _dig(doc, "performance.dynamic.resistance.increase.cell.value") == pytest.approx(
        50.0, abs=0.2
    )


# ------------------------------------------------------------------------------ bad input


def test_a_passport_that_does_not_verify_exports_nothing(world: Path) -> None:
    image = _image(world)
    forged = tampered_image(image, -1)
    with pytest.raises(VerificationError) as info:
        export_passport(forged, _trust(world), _sheet_for(world, image))
    assert "nothing exported" in info.value.reason
    result = export_passport(forged, _trust(world), _sheet_for(world, image),
                             allow_unverified=True)  # fmt: skip
    assert not result.verified
    assert result.document["unverifiedWarning"].startswith("UNVERIFIED")
    assert result.document["metadata"]["status"] == "draft"


def test_another_models_data_sheet_is_refused(world: Path) -> None:
    image = _image(world, "01-09506000134352-21-D00001.t5t")
    other = (world / "datasheets").glob("*.cose")
    birth = image.birth.body
    assert isinstance(birth, Birth)
    wrong = next(p for p in other if birth.model not in p.name)
    with pytest.raises(VerificationError) as info:
        export_passport(image, _trust(world), wrong.read_bytes())
    assert info.value.rule == "datasheet.hash-mismatch"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"datasheet": None}, "no data sheet", id="missing-sheet"),
        pytest.param({"fmt": "xml"}, "unknown format", id="unknown-format"),
    ],
)
def test_usage_errors(world: Path, kwargs: dict[str, Any], message: str) -> None:
    image = _image(world)
    args: dict[str, Any] = {"datasheet": _sheet_for(world, image)}
    args.update(kwargs)
    sheet = args.pop("datasheet")
    with pytest.raises(InputError, match=message):
        export_passport(image, _trust(world), sheet, **args)


def test_unknown_tier_is_refused() -> None:
    with pytest.raises(InputError, match="public, legitimate-interest, authority"):
        Tier.parse("everyone")


# ------------------------------------------------------------------------------ CLI and docs


def test_cli_exports_and_maps_errors_to_exit_codes(world: Path, tmp_path: Path) -> None:
    image = world / "images" / "01-09506000134352-21-D00001.t5t"
    base = ["export", str(image), "--trust", str(world / "trust"),
            "--db", str(world / "passport.db")]  # fmt: skip
    ok = RUNNER.invoke(app, [*base, "--tier", "legitimate-interest"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["metadata"]["passportIdentifier"].startswith("urn:uuid:")
    out = tmp_path / "p.json"
    assert RUNNER.invoke(app, [*base, "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["specVersion"] == cx.SPEC_VERSION
    assert RUNNER.invoke(app, [*base, "--out", str(out)]).exit_code == 2  # exists
    assert RUNNER.invoke(app, [*base, "--tier", "nobody"]).exit_code == 2
    forged = tmp_path / "forged.t5t"
    forged.write_bytes(tampered_image(read_image(image), -1).to_bytes())
    bad = RUNNER.invoke(app, ["export", str(forged), "--trust", str(world / "trust"),
                              "--db", str(world / "passport.db")])  # fmt: skip
    assert bad.exit_code == 1
    assert bad.stdout == ""
    no_sheet = RUNNER.invoke(app, ["export", str(image), "--trust", str(world / "trust")],
                             env={"PASSPORT_DB": ""})  # fmt: skip
    assert no_sheet.exit_code == 2


def test_mapping_doc_lists_every_attribute() -> None:
    text = (ROOT / "docs" / "eu-mapping.md").read_text(encoding="utf-8")
    text = text.split("## Catena-X battery passport 6.1.0", 1)[1].split("\n## ")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| ([a-z+-]+) \|", text,
                                                          re.M)}  # fmt: skip
    assert set(rows) == {a.path for a in cx.ATTRIBUTES}
    for attr in cx.ATTRIBUTES:
        assert rows[attr.path] == attr.tier.label, attr.path


# ------------------------------------------------------------------------------ from the registry


def _cli(world: Path, *args: str) -> Any:
    return RUNNER.invoke(app, ["export", "--trust", str(world / "trust"),
                               "--db", str(world / "passport.db"), *args])  # fmt: skip


def test_export_from_the_registry_matches_the_tag_and_adds_the_intake(world: Path) -> None:
    name = "01-09506000134352-21-D00004.t5t"
    image = _image(world, name)
    birth = image.birth.body
    assert isinstance(birth, Birth)
    tag = export_passport(image, _trust(world), _sheet_for(world, image),
                          tier=Tier.LEGITIMATE_INTEREST).document  # fmt: skip
    for ref in (birth.battery_id, str(birth.passport_id), image.birth.digest.hex()):
        result = _cli(world, "--cell", ref, "--tier", "legitimate-interest")
        assert result.exit_code == 0, result.output
        held = json.loads(result.stdout)
        assert held["performance"]["rated"] == tag["performance"]["rated"]
        assert held["materials"] == tag["materials"]
        # the registry also holds the recycler's intake entry, newer than the tag's history
        fade = held["performance"]["dynamic"]["capacity"]["fade"]
        assert fade["time"] >= tag["performance"]["dynamic"]["capacity"]["fade"]["time"]


@pytest.mark.parametrize(
    ("ref", "code", "text"),
    [
        pytest.param(lambda: DEMO["forked"][0], 1, "registry.flagged", id="forked"),
        pytest.param(lambda: "https://id.gs1.org/01/09506000134352/21/NOPE1", 2,
                     "holds no passport", id="unknown"),
        pytest.param(lambda: "", 2, "holds no passport", id="empty"),
    ],
)  # fmt: skip
def test_registry_export_refusals(world: Path, ref: Any, code: int, text: str) -> None:
    value = ref()
    if value.endswith(".t5t"):
        birth = _image(world, value).birth.body
        assert isinstance(birth, Birth)
        value = str(birth.passport_id)
    result = _cli(world, "--cell", value)
    assert result.exit_code == code, result.output
    assert text in result.output
    assert result.stdout.strip() == "" or code == 0


def test_duplicate_serial_is_ambiguous_in_the_registry(world: Path) -> None:
    image = _image(world, DEMO["clone-serial"][0])
    birth = image.birth.body
    assert isinstance(birth, Birth)
    result = _cli(world, "--cell", birth.battery_id)
    assert result.exit_code == 2
    assert "names 2 passports" in result.output
    by_birth = _cli(world, "--cell", image.birth.digest.hex(), "--allow-unverified")
    assert by_birth.exit_code == 0, by_birth.output
    assert json.loads(by_birth.stdout)["unverifiedWarning"].startswith("UNVERIFIED")


def test_image_and_cell_are_exclusive(world: Path) -> None:
    image = str(world / "images" / "01-09506000134352-21-D00001.t5t")
    assert _cli(world, image, "--cell", "x").exit_code == 2
    assert RUNNER.invoke(app, ["export", "--trust", str(world / "trust")]).exit_code == 2
