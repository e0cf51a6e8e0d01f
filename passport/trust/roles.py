"""Actor roles, carried in certificates as Extended Key Usage OIDs.

Each role has one OID under the UUID arc of ITU-T X.667 (`2.25.<uuid as integer>`), so no
organisation has to register an arc. The UUIDs are name-based (UUIDv5 in the URL namespace of
``urn:battery-passport:role:<name>``) and fixed here; a test re-derives them.

| role | may write (default policy) | OID |
| --- | --- | --- |
| oem | birth, remanufacture | 2.25.325286535279241872326236184903338149210 |
| integrator | telemetry (pack BMS) | 2.25.136220770295589943671937330269865132650 |
| tester | measurement | 2.25.151235342041127298470802021848920786255 |
| repurposer | status, with lineage parents | 2.25.225973970203122330386209236161707460590 |
| recycler | intake, status | 2.25.329971077666414420641648745812898055493 |
"""

from __future__ import annotations

from enum import StrEnum

from cryptography import x509


class Role(StrEnum):
    OEM = "oem"
    INTEGRATOR = "integrator"
    TESTER = "tester"
    REPURPOSER = "repurposer"
    RECYCLER = "recycler"


#: The pseudo-role of a record signed by the cell's own key (certified by its birth record).
CELL = "cell"

ROLE_UUIDS: dict[Role, str] = {
    Role.OEM: "f4b7e86a-d34f-56d0-85b4-32cdb41fc55a",
    Role.INTEGRATOR: "667b2a82-a4ff-5dca-a503-aa442004426a",
    Role.TESTER: "71c6de0d-2efe-5665-81c0-7ffd4dde854f",
    Role.REPURPOSER: "aa0100eb-0d9a-5a56-8403-7c54c5c547ee",
    Role.RECYCLER: "f83e1e30-6517-59a4-a727-b009bd338545",
}

ROLE_OIDS: dict[Role, x509.ObjectIdentifier] = {
    role: x509.ObjectIdentifier(f"2.25.{int(u.replace('-', ''), 16)}")
    for role, u in ROLE_UUIDS.items()
}
_ROLE_BY_OID = {oid: role for role, oid in ROLE_OIDS.items()}


def roles_of(cert: x509.Certificate) -> frozenset[Role]:
    """The roles a certificate's Extended Key Usage grants (empty when it grants none)."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(_ROLE_BY_OID[oid] for oid in eku if oid in _ROLE_BY_OID)


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown role {text!r}; choose one of {', '.join(r.value for r in Role)}"
        ) from None
