"""The walk along a history that applies every rule (internal to `passport.chain`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport._ed25519 import check_public_key
from passport.chain.report import Finding, ReceiptLookup, RecordInfo
from passport.errors import SignatureError, VerificationError
from passport.records import (
    COUNTER_FIELDS,
    Birth,
    Checkpoint,
    Entry,
    Kind,
    SignedRecord,
    Status,
    Values,
)
from passport.trust.bundle import Signer, TrustBundle
from passport.trust.roles import CELL


def cell_public_key(birth: Birth) -> ed25519.Ed25519PublicKey:
    """The cell key the birth record certifies, refused unless it is a sound Ed25519 point."""
    try:
        check_public_key(birth.cell_public_key)
        return ed25519.Ed25519PublicKey.from_public_bytes(birth.cell_public_key)
    except ValueError as exc:
        raise VerificationError(
            f"the birth record certifies an unusable cell key: {exc}", rule="chain.cell-key"
        ) from None


@dataclass(slots=True)
class _State:
    """What the history says so far."""

    prev: bytes
    seq: int
    time: int
    values: Values = field(default_factory=Values)  # carried forward since birth
    status: Status = Status.ORIGINAL
    soh_sigma: int = 0  # sigma (0.01 %) of the last capacity SoH
    power_sigma: int = 0
    # seq -> (digest, time, values folded since birth) for checkpoint consistency
    seen: dict[int, tuple[bytes, int, Values]] = field(default_factory=dict)


_NOBODY: frozenset[str] = frozenset()


class Walker:
    def __init__(
        self, trust: TrustBundle, now: dt.datetime | None, receipts: ReceiptLookup | None
    ) -> None:
        self.trust = trust
        self.policy = trust.policy
        self.now = now or dt.datetime.now(dt.UTC)
        self.receipts = receipts
        self.findings: list[Finding] = []
        self.infos: list[RecordInfo] = []

    def fail(self, rule: str, index: int | None, message: str) -> None:
        self.findings.append(Finding(rule, index, message))

    # ------------------------------------------------------------------ signers

    def _actor(
        self, record: SignedRecord, index: int, at: int, what: str
    ) -> tuple[frozenset[str], str]:
        """Verify an actor-signed record; returns (its roles that may write it, report label)."""
        assert record.x5t is not None
        try:
            candidates = self.trust.find(record.x5t)
        except VerificationError as exc:
            self.fail(exc.rule, index, f"{what}: {exc.reason}")
            return _NOBODY, "?"
        error: VerificationError | None = None
        for cert in candidates:
            try:
                record.verify(cert.public_key())  # type: ignore[arg-type]
            except VerificationError as exc:
                error = exc
                continue
            return self._certified(cert, record, index, at, what)
        assert error is not None
        rule = error.rule
        if rule == "cose.signature-invalid":
            rule = "chain.birth-signature" if record.kind is Kind.BIRTH else "chain.entry-signature"
        self.fail(rule, index, f"{what}: {error.reason} (key of the certificate its x5t names)")
        return _NOBODY, "?"

    def _certified(
        self, cert: x509.Certificate, record: SignedRecord, index: int, at: int, what: str
    ) -> tuple[frozenset[str], str]:
        try:
            signer = self.trust.signer(cert)
        except VerificationError as exc:
            self.fail(exc.rule, index, f"{what}: {exc.reason}")
            return _NOBODY, "?"
        self._check_time_policy(signer, record, index, at, what)
        allowed = sorted(
            r.value for r in signer.roles if self.policy.may_write(r.value, record.kind)
        )
        if not allowed:
            roles = ", ".join(sorted(r.value for r in signer.roles)) or "no role"
            self.fail(
                "policy.write-denied", index,
                f"{what}: {signer.subject} ({roles}) may not write a {_kind(record.kind)} record",
            )  # fmt: skip
            return _NOBODY, signer.subject
        return frozenset(allowed), f"{', '.join(allowed)}: {signer.subject}"

    def _check_time_policy(
        self, signer: Signer, record: SignedRecord, index: int, at: int, what: str
    ) -> None:
        claimed = dt.datetime.fromtimestamp(at, dt.UTC)
        if not signer.valid_from <= claimed <= signer.valid_until:
            self.fail(
                "trust.signer-expired", index,
                f"{what} claims {_iso(claimed)}, outside the validity of {signer.subject}'s "
                f"certificate chain ({_iso(signer.valid_from)} to {_iso(signer.valid_until)})",
            )  # fmt: skip
            return
        for revocation in signer.revocations:
            # Every revocation along the chain is judged on its own: a benign revocation of
            # the CA must not hide the compromise of the key beneath it.
            if claimed >= revocation.at:
                self.fail(
                    "trust.signer-revoked", index,
                    f"{what} claims {_iso(claimed)}, after {revocation.subject} was revoked "
                    f"({revocation.reason}) at {_iso(revocation.at)}",
                )  # fmt: skip
                return
            if revocation.reason not in self.policy.trusted_revocation_reasons:
                logged = self._logged(record)
                if logged is None or logged >= revocation.at:
                    self.fail(
                        "trust.revoked-unproven", index,
                        f"{what}: {revocation.subject} was revoked ({revocation.reason}) at "
                        f"{_iso(revocation.at)}; the record claims an earlier time, but "
                        + ("no receipt proves it was logged before then" if logged is None
                           else f"its receipt says it was logged at {_iso(logged)}"),
                    )  # fmt: skip
                    return
        if self.now > signer.valid_until and self.policy.expired_requires_receipt:
            logged = self._logged(record)
            if logged is None or logged > signer.valid_until:
                self.fail(
                    "trust.expired-unproven", index,
                    f"{what}: {signer.subject}'s certificate expired at "
                    f"{_iso(signer.valid_until)} and no receipt proves the record was logged "
                    "before then",
                )  # fmt: skip

    def _logged(self, record: SignedRecord) -> dt.datetime | None:
        return self.receipts.logged_at(record) if self.receipts else None

    def _time_future(self, at: int, index: int, what: str) -> None:
        limit = self.now.timestamp() + self.policy.max_clock_skew_s
        if at > limit:
            self.fail(
                "chain.time-future", index,
                f"{what} claims {_iso_s(at)}, later than the verifier's clock allows",
            )  # fmt: skip

    # ------------------------------------------------------------------ records

    def birth(self, record: SignedRecord) -> tuple[Birth, ed25519.Ed25519PublicKey | None, _State]:
        birth = record.body
        assert isinstance(birth, Birth)
        _, signer = self._actor(record, 0, birth.issued_at, "birth record")
        self._time_future(birth.issued_at, 0, "birth record")
        try:
            cell_key: ed25519.Ed25519PublicKey | None = cell_public_key(birth)
        except VerificationError as exc:
            self.fail(exc.rule, 0, exc.reason)
            cell_key = None
        self._info(record, 0, None, birth.issued_at, signer)
        return birth, cell_key, _State(prev=record.digest, seq=1, time=birth.issued_at)

    def _cell(
        self,
        record: SignedRecord,
        key: ed25519.Ed25519PublicKey | None,
        index: int,
        rule: str,
        what: str,
    ) -> str:
        if key is None:
            return "?"  # already reported as chain.cell-key
        try:
            record.verify(key)
        except SignatureError as exc:
            self.fail(
                exc.rule if exc.rule != "cose.signature-invalid" else rule, index,
                f"{what}: {exc.reason} (the cell key its birth record certifies)",
            )  # fmt: skip
            return "?"
        return CELL

    def checkpoint(
        self,
        record: SignedRecord,
        index: int,
        birth_digest: bytes,
        key: ed25519.Ed25519PublicKey | None,
        state: _State,
    ) -> None:
        cp = record.body
        assert isinstance(cp, Checkpoint)
        what = f"checkpoint (evicted {cp.count})"
        signer = self._cell(record, key, index, "chain.checkpoint-signature", what)
        self._info(record, index, None, cp.time, signer)
        if cp.birth != birth_digest:
            self.fail("chain.checkpoint-birth", index, f"{what} belongs to another passport")
        self._time_future(cp.time, index, what)
        seen = state.seen.get(cp.count)
        if seen is not None:
            # Full history: the checkpoint must restate what the entries said.
            digest, time, values = seen
            if (cp.head, cp.time, cp.values) != (digest, time, values):
                self.fail(
                    "chain.checkpoint-mismatch", index,
                    f"{what} does not match entry seq {cp.count} and the values before it",
                )  # fmt: skip
            return
        if state.seen or state.seq != 1:
            self.fail(
                "chain.checkpoint-mismatch", index,
                f"{what} refers to entries this history does not hold in order",
            )  # fmt: skip
            return
        # A tag's first record after birth: it stands for the evicted entries.
        if cp.time < state.time:
            self.fail(
                "chain.time-backwards", index, f"{what} claims a time before the birth record"
            )
        state.prev, state.seq, state.time = cp.head, cp.count + 1, max(state.time, cp.time)
        state.values = cp.values
        state.status = cp.values.status or Status.ORIGINAL
        state.soh_sigma = cp.values.soh_sigma_cpct or 0

    def entry(
        self, record: SignedRecord, index: int, key: ed25519.Ed25519PublicKey | None, state: _State
    ) -> None:
        entry = record.body
        assert isinstance(entry, Entry)
        what = f"{_kind(entry.kind)} entry seq {entry.seq}"
        if entry.prev != state.prev:
            self.fail(
                "chain.prev-mismatch", index,
                f"{what}: prev {entry.prev.hex()[:16]}... is not the hash of the record before it "
                f"({state.prev.hex()[:16]}...)",
            )  # fmt: skip
        if entry.seq != state.seq:
            self.fail("chain.seq-gap", index, f"{what}: expected seq {state.seq}")
        if record.x5t is None:
            label = self._cell(record, key, index, "chain.entry-signature", what)
            if label == CELL and not self.policy.may_write(CELL, entry.kind):
                self.fail("policy.write-denied", index, f"{what}: the cell key may not write it")
            roles = frozenset({label})
        else:
            roles, label = self._actor(record, index, entry.time, what)
        self._info(record, index, entry.seq, entry.time, label)
        self._history_rules(entry, roles, index, what, state)
        state.prev, state.seq = record.digest, entry.seq + 1
        state.values = state.values.then(entry.values)
        state.seen[entry.seq] = (record.digest, entry.time, state.values)

    def _history_rules(
        self, entry: Entry, roles: frozenset[str], index: int, what: str, state: _State
    ) -> None:
        values, before = entry.values, state.values
        if entry.time < state.time:
            self.fail(
                "chain.time-backwards", index,
                f"{what} claims {_iso_s(entry.time)}, before the record it follows "
                f"({_iso_s(state.time)})",
            )  # fmt: skip
        self._time_future(entry.time, index, what)
        state.time = max(state.time, entry.time)
        for name in COUNTER_FIELDS:
            new, old = getattr(values, name), getattr(before, name)
            if new is not None and old is not None and new < old:
                self.fail(
                    "chain.counter-decreased", index, f"{what}: {name} went from {old} to {new}"
                )
        reset = entry.kind in self.policy.soh_reset_kinds
        for name, sigma_name, last_sigma in (
            ("soh_capacity_cpct", "soh_sigma_cpct", state.soh_sigma),
            ("soh_power_cpct", None, state.power_sigma),
        ):
            new, old = getattr(values, name), getattr(before, name)
            if new is None:
                continue
            sigma = getattr(values, sigma_name) or 0 if sigma_name else 0
            if old is not None and not reset:
                tolerance = self.policy.soh_rise_sigmas * math.hypot(sigma, last_sigma)
                tolerance += self.policy.soh_rise_floor_cpct
                if new - old > tolerance:
                    self.fail(
                        "chain.soh-rise", index,
                        f"{what}: {name} rose from {old / 100:.2f} % to {new / 100:.2f} %, more "
                        f"than the stated uncertainty allows ({tolerance / 100:.2f} points)",
                    )  # fmt: skip
            if name == "soh_capacity_cpct":
                state.soh_sigma = sigma
            else:
                state.power_sigma = sigma
        if values.status is not None and values.status != state.status:
            if values.status not in self.policy.transitions.get(state.status, frozenset()):
                self.fail(
                    "chain.status-transition", index,
                    f"{what}: status may not change from {_name(state.status)} to "
                    f"{_name(values.status)}",
                )  # fmt: skip
            state.status = values.status
        if values.parents and (
            not roles & self.policy.lineage_roles
            or values.status not in self.policy.lineage_statuses
        ):
            self.fail(
                "policy.lineage", index,
                f"{what}: lineage parents written by {', '.join(sorted(roles))} with status "
                f"{_name(values.status) if values.status is not None else 'none'}",
            )  # fmt: skip

    def _info(
        self, record: SignedRecord, index: int, seq: int | None, time: int, signer: str
    ) -> None:
        self.infos.append(
            RecordInfo(index, _kind(record.kind), seq, time, signer, record.digest.hex())
        )


def _kind(kind: Kind) -> str:
    return kind.name.lower()


def _name(status: Status) -> str:
    return status.name.lower()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso_s(epoch: int) -> str:
    return _iso(dt.datetime.fromtimestamp(epoch, dt.UTC))
