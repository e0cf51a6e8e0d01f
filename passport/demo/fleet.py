"""The demo's fleet: an OEM batch across the demo designs, and the cells' lives written into
their tags (quarterly telemetry signed by the cell, yearly laboratory tests signed by a tester,
abuse and accidents), built in memory and written once per cell.

Each cell's state of health at retirement is drawn from the real retired cells' distribution
of its design (`figures.REAL`), and fades linearly in full equivalent cycles on the way there.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from passport import issuance
from passport._fileio import write_atomic
from passport.cose import PrivateKey
from passport.demo.figures import DESIGNS, DemoDesign
from passport.image import PROFILES, Image
from passport.records import Entry, Event, Kind, SignedRecord, SohMethod, Values, X5t
from passport.trust import keys
from passport.writer import EVICTED_SUFFIX

BMS_SIGMA_CPCT = 100  # a BMS SoH estimate is good to about 1 point (1 sigma)
LAB_SIGMA_CPCT = 40  # a laboratory capacity test to about 0.4 points
QUARTER_S = 91 * 86400


@dataclass(slots=True)
class Cell:
    index: int
    design: DemoDesign
    path: Path
    key: ed25519.Ed25519PrivateKey
    image: Image
    journal: list[SignedRecord] = field(default_factory=list)
    final_soh: float = 1.0  # true SoH at retirement (fraction)
    roles: set[str] = field(default_factory=set)  # scenario names this cell plays
    snapshot: tuple[Image, int] | None = None  # (image, journal length) at mid-life

    @property
    def stem(self) -> str:
        return self.path.stem

    def write(self) -> None:
        if self.journal:
            data = b"".join(r.raw for r in self.journal)
            write_atomic(Path(str(self.path) + EVICTED_SUFFIX), data)
        write_atomic(self.path, self.image.to_bytes())


def draw_final_soh(design: DemoDesign, rng: random.Random) -> float:
    """Inverse CDF through the real 5th/50th/95th percentiles, with short linear tails."""
    p05, p50, p95 = design.real.soh_p05_p50_p95
    knots = [(0.0, p05 - 0.5 * (p50 - p05)), (0.05, p05), (0.5, p50), (0.95, p95),
             (1.0, p95 + 0.3 * (p95 - p50))]  # fmt: skip
    u = rng.random()
    for (u0, x0), (u1, x1) in itertools.pairwise(knots):
        if u <= u1:
            return min(1.02, max(0.5, x0 + (x1 - x0) * (u - u0) / (u1 - u0)))
    return p95


def _cells_csv(
    indices: list[int],
    made: dt.date,
    rng: random.Random,
    serial_of: Callable[[int], int],
    sheets: dict[str, str],
) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(issuance.REQUIRED)
    for i in indices:
        d = DESIGNS[i % len(DESIGNS)]
        rated = d.real.rated_ah
        initial = f"{rated * rng.uniform(1.0, 1.03):.3f}"
        r0 = f"{d.real.r0_new_mohm * rng.lognormvariate(0.0, 0.03):.3f}"
        sheet = sheets[d.model]  # SHA-256 of the model's signed data sheet
        w.writerow([
            f"https://id.gs1.org/01/09506000134352/21/D{serial_of(i) + 1:05d}", "ACME", d.model,
            d.real.chemistry, f"{rated:g}", d.nominal_v, d.min_v, d.max_v, initial, "25", "1",
            r0, "25", "50", "10", made.isoformat(), "DE-BER1", d.cycle_life, "60", sheet,
        ])  # fmt: skip
    return out.getvalue()


def issue_fleet(
    out: Path,
    count: int,
    start: int,
    oem: tuple[PrivateKey, X5t],
    oem_cert: object,
    rng: random.Random,
    clone_of: dict[int, int],
    sheets: dict[str, str],
) -> list[Cell]:
    """Issue `count` cells (tags of several sizes) against their model's data sheet (`sheets`:
    model -> SHA-256 hex); `clone_of` maps a cell to the cell whose serial number a second,
    separate issuing run re-uses for it (a duplicate serial)."""
    made = dt.datetime.fromtimestamp(start, dt.UTC).date()
    images = out / "images"
    profiles = [PROFILES["ntag216"], PROFILES["st25dv16k"], PROFILES["st25dv64k"]]
    cells: list[Cell] = []
    paths: dict[int, Path] = {}
    for p, profile in enumerate(profiles):
        for duplicate in (False, True):
            chosen = [i for i in range(count) if i % len(profiles) == p
                      and (i in clone_of) == duplicate]  # fmt: skip
            if not chosen:
                continue
            text = _cells_csv(chosen, made, rng, lambda i: clone_of.get(i, i), sheets)
            rows = issuance.read_cells(text, source="demo", issued_at=start)
            target = images if not duplicate else out / "duplicate-run"
            summary = issuance.issue_batch(
                rows, oem_key=oem[0], oem_cert=oem_cert,  # type: ignore[arg-type]
                profile=profile, out_dir=target, overwrite=True,
            )  # fmt: skip
            for i, made_path in zip(chosen, summary.images, strict=True):
                path = Path(made_path)
                if duplicate:  # filed under its own slot name, carrying the other's serial
                    slot = images / _stem(i)
                    path.rename(slot.with_suffix(".t5t"))
                    key_file = path.with_name(path.stem + issuance.CELL_KEY_SUFFIX)
                    key_file.rename(slot.with_name(slot.name + issuance.CELL_KEY_SUFFIX))
                    path = slot.with_suffix(".t5t")
                paths[i] = path
    for dup in (out / "duplicate-run",):
        if dup.is_dir():
            dup.rmdir()
    for i in range(count):
        path = paths[i]
        key = keys.load_private(path.with_name(path.stem + issuance.CELL_KEY_SUFFIX))
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        image = Image.from_bytes(path.read_bytes())
        d = DESIGNS[i % len(DESIGNS)]
        cells.append(Cell(i, d, path, key, image, final_soh=draw_final_soh(d, rng)))
    return cells


def _stem(i: int) -> str:
    return f"01-09506000134352-21-D{i + 1:05d}"


def _append(cell: Cell, kind: Kind, at: int, values: Values,
            signer: PrivateKey, x5t: X5t | None) -> None:  # fmt: skip
    seq, prev = cell.image.next_link()
    record = SignedRecord.sign(Entry(kind, seq, prev, at, values), signer, x5t=x5t)
    cell.image, evicted = cell.image.append(record, cell_key=cell.key)
    cell.journal.extend(evicted)


@dataclass(slots=True)
class LifeCounts:
    entries: dict[str, int] = field(default_factory=dict)
    evicted: int = 0


def live(
    cell: Cell,
    start: int,
    years: int,
    tester: tuple[PrivateKey, X5t],
    rng: random.Random,
    counts: LifeCounts,
) -> None:
    """Write a cell's life into its tag (in memory)."""
    d = cell.design
    quarters = years * 4
    per_quarter = [rng.uniform(*d.cycles_per_year) / 4 for _ in range(quarters)]
    total = sum(per_quarter)
    optimistic = "optimistic" in cell.roles  # its BMS reports a tenth of the real fade
    abused = "abused" in cell.roles
    fec = hot = deep = 0.0
    before = len(cell.journal)

    def count(who: str) -> None:
        counts.entries[who] = counts.entries.get(who, 0) + 1

    for q in range(1, quarters + 1):
        fec += per_quarter[q - 1]
        ah = d.real.rated_ah * 2 * fec
        true = 1.0 - (1.0 - cell.final_soh) * fec / total
        told = 1.0 - (1.0 - true) / 10 if optimistic else true
        hot += rng.randint(15, 45) if abused else rng.randint(0, 1)
        deep += 1 if abused and rng.random() < 0.3 else 0
        at = start + q * QUARTER_S - 21 * 86400
        events = (Event.THERMAL_EVENT,) if "thermal" in cell.roles and q == quarters // 2 else ()
        _append(cell, Kind.TELEMETRY, at, Values(
            fec_deci=round(fec * 10), ah_deci=round(ah * 10),
            wh=round(ah * float(d.nominal_v)),
            soh_capacity_cpct=round((told + rng.gauss(0, 0.003)) * 10_000),
            soh_method=SohMethod.BMS_ESTIMATE, soh_sigma_cpct=BMS_SIGMA_CPCT,
            minutes_hot=int(hot), deep_discharges=int(deep), events=events,
        ), cell.key, None)  # fmt: skip
        count("cell")
        if q % 4 == 0 and not optimistic:  # the yearly laboratory test
            accident = (Event.ACCIDENT,) if "accident" in cell.roles and q == quarters else ()
            _append(cell, Kind.MEASUREMENT, at + 7 * 86400, Values(
                soh_capacity_cpct=round((true + rng.gauss(0, 0.002)) * 10_000),
                soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=LAB_SIGMA_CPCT,
                events=accident,
            ), *tester)  # fmt: skip
            count("tester")
        if q == quarters // 2 and "forked" in cell.roles:
            cell.snapshot = (cell.image, len(cell.journal))
    counts.evicted += len(cell.journal) - before


def fork(cell: Cell, at: int, rng: random.Random) -> None:
    """The tag restored from its mid-life backup, then written on: a second history from the
    same birth record, both signed by the cell key."""
    assert cell.snapshot is not None
    image, kept = cell.snapshot
    cell.image, cell.journal = image, cell.journal[:kept]
    running = Values()
    for record in ([image.checkpoint] if image.checkpoint else []) + list(image.entries):
        running = running.then(record.body.values)  # type: ignore[union-attr]
    fec = running.fec_deci or 0
    soh = running.soh_capacity_cpct or 9000
    for k in range(2):
        _append(cell, Kind.TELEMETRY, at + k * 86400, Values(
            fec_deci=fec + 50 * (k + 1), ah_deci=running.ah_deci, wh=running.wh,
            soh_capacity_cpct=soh - rng.randint(0, 20), soh_method=SohMethod.BMS_ESTIMATE,
            soh_sigma_cpct=BMS_SIGMA_CPCT, minutes_hot=running.minutes_hot,
            deep_discharges=running.deep_discharges,
        ), cell.key, None)  # fmt: skip
