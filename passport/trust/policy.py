"""The trust policy: data, not code paths (see the annotated default, `policy.toml`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

from passport._fileio import read_bytes
from passport._toml import load_toml
from passport.errors import InputError
from passport.records import Kind, Status
from passport.trust.roles import CELL, Role

POLICY_VERSION = 1
DEFAULT_POLICY_FILE = "policy.toml"

_KIND_NAMES = {k.name.lower(): k for k in Kind if k is not Kind.CHECKPOINT}
_STATUS_NAMES = {s.name.lower(): s for s in Status}
_SIGNERS = {CELL, *(r.value for r in Role)}
_REASONS = {
    "unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation", "certificate_hold", "privilege_withdrawn", "aa_compromise",
    "remove_from_crl",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    write: dict[str, frozenset[Kind]]  # signer ("cell" or a role) -> kinds it may write
    lineage_roles: frozenset[str]
    lineage_statuses: frozenset[Status]
    transitions: dict[Status, frozenset[Status]]
    soh_rise_sigmas: float
    soh_rise_floor_cpct: int
    soh_reset_kinds: frozenset[Kind]
    trusted_revocation_reasons: frozenset[str]
    expired_requires_receipt: bool
    max_clock_skew_s: int
    sha256: str  # of the policy file's bytes
    source: str

    def may_write(self, signer: str, kind: Kind) -> bool:
        return kind in self.write.get(signer, frozenset())

    @classmethod
    def default(cls) -> Policy:
        data = resources.files("passport.trust").joinpath(DEFAULT_POLICY_FILE).read_bytes()
        return cls.from_bytes(data, source="default policy")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        return cls.from_bytes(read_bytes(path, limit=1 << 20), source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> Policy:
        doc = load_toml(data, source=source)
        try:
            return _parse(doc, data, source)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid policy: {exc}", source=source) from None


def _names(values: Any, table: dict[str, Any], what: str) -> frozenset[Any]:
    if not isinstance(values, list):
        raise TypeError(f"{what} must be a list")
    out = set()
    for v in values:
        if v not in table:
            raise ValueError(f"{what}: unknown name {v!r} (known: {', '.join(sorted(table))})")
        out.add(table[v])
    return frozenset(out)


def _number(value: Any, what: str) -> float:
    if type(value) not in (int, float) or value < 0:
        raise TypeError(f"{what} must be a non-negative number, not {value!r}")
    return float(value)


def _integer(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _flag(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{what} must be true or false, not {value!r}")
    return value


def _parse(doc: dict[str, Any], data: bytes, source: str) -> Policy:
    unknown = set(doc) - {"version", "write", "lineage", "status", "soh", "time"}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}")
    if type(doc.get("version")) is not int or doc.get("version") != POLICY_VERSION:
        raise ValueError(f"version {doc.get('version')!r} is not supported ({POLICY_VERSION})")
    write = {}
    for signer, kinds in doc["write"].items():
        if signer not in _SIGNERS:
            raise ValueError(f"[write]: unknown signer {signer!r}")
        write[signer] = _names(kinds, _KIND_NAMES, f"[write].{signer}")
    transitions = {}
    for name, targets in doc["status"].items():
        if name not in _STATUS_NAMES:
            raise ValueError(f"[status]: unknown status {name!r}")
        transitions[_STATUS_NAMES[name]] = _names(targets, _STATUS_NAMES, f"[status].{name}")
    lineage = doc["lineage"]
    soh = doc["soh"]
    time = doc["time"]
    reasons = frozenset(time["trusted_revocation_reasons"])
    if not reasons <= _REASONS:
        raise ValueError(f"[time]: unknown revocation reasons {sorted(reasons - _REASONS)}")
    return Policy(
        version=POLICY_VERSION,
        write=write,
        lineage_roles=frozenset(
            _names(lineage["roles"], {s: s for s in _SIGNERS}, "[lineage].roles")
        ),
        lineage_statuses=_names(lineage["statuses"], _STATUS_NAMES, "[lineage].statuses"),
        transitions=transitions,
        soh_rise_sigmas=_number(soh["rise_sigmas"], "[soh].rise_sigmas"),
        soh_rise_floor_cpct=round(_number(soh["rise_floor_pct"], "[soh].rise_floor_pct") * 100),
        soh_reset_kinds=_names(soh["reset_kinds"], _KIND_NAMES, "[soh].reset_kinds"),
        trusted_revocation_reasons=reasons,
        expired_requires_receipt=_flag(
            time["expired_requires_receipt"], "[time].expired_requires_receipt"
        ),
        max_clock_skew_s=_integer(time["max_clock_skew_s"], "[time].max_clock_skew_s"),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )
