"""Writing the recycler's signed intake entry into a copy of an image (never the input file).

The copy and its journal (records evicted to make room) go to the output directory, journal
first: a crash can leave a journal record twice, never lose one. A copy whose newest entry is
an intake entry by this signer continuing the input's history is recognised as already written,
so a resumed run never writes a second one. The new image is verified before it is written: an
entry the verifier would reject (say, a measured SoH above the passport's last claim by more
than the policy's tolerance) is written without that value, and the result says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from passport._fileio import read_bytes, write_atomic
from passport.chain import ReceiptLookup, check_image
from passport.cose import PrivateKey
from passport.errors import DecodeError, InputError, PassportError
from passport.image import Image
from passport.records import Entry, Kind, SignedRecord, SohMethod, Values, X5t
from passport.trust import keys
from passport.trust.bundle import TrustBundle
from passport.trust.roles import Role
from passport.trust.store import load_certificates, thumbprint
from passport.writer import EVICTED_SUFFIX, read_image


@dataclass(frozen=True, slots=True)
class IntakeSigner:
    key: PrivateKey
    x5t: X5t
    subject: str
    trust: TrustBundle

    @classmethod
    def load(
        cls,
        key_path: Path,
        cert_path: Path | None,
        trust: TrustBundle,
        password: bytes | None = None,
    ) -> IntakeSigner:
        """The recycler's key and certificate; refused unless the bundle trusts it as one."""
        key = keys.load_private(key_path, password)
        if cert_path is None:
            guess = Path(str(key_path).replace(".key.pem", ".cert.pem"))
            if guess == key_path or not guess.exists():
                raise InputError(
                    "give --cert (the recycler's certificate); none found beside the key",
                    source=str(key_path),
                )
            cert_path = guess
        cert: x509.Certificate = load_certificates(cert_path)[0]
        if cert.public_key() != key.public_key():
            raise InputError("the certificate is not the key's", source=str(cert_path))
        try:
            signer = trust.signer(cert)
        except PassportError as exc:
            raise InputError(f"the trust bundle does not accept it: {exc.reason}",
                             source=str(cert_path)) from None  # fmt: skip
        if Role.RECYCLER not in signer.roles:
            roles = ", ".join(sorted(r.value for r in signer.roles)) or "none"
            raise InputError(f"not a recycler's certificate (roles: {roles})",
                             source=str(cert_path))  # fmt: skip
        return cls(key, thumbprint(cert), signer.subject, trust)


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    digest: str
    existing: bool  # found from an earlier, interrupted run
    dropped: tuple[str, ...] = ()  # values left out because the verifier would refuse them
    reused: bool = False  # the entry the registry already held, not a new signature


def _values(soh: float | None, sigma: float | None, resistance_ohm: float | None) -> Values:
    out = Values()
    if soh is not None and sigma is not None:
        out = out._replace(
            soh_capacity_cpct=min(0xFFFF, max(0, round(soh * 10_000))),
            soh_sigma_cpct=min(0xFFFF, max(1, round(sigma * 10_000))),
            soh_method=SohMethod.PULSE_TEST,
        )
    if resistance_ohm is not None and resistance_ohm > 0:
        out = out._replace(resistance_uohm=min(0xFFFF_FFFF, round(resistance_ohm * 1e6)))
    return out


def _ours(copy: Path, source: Image, signer: IntakeSigner) -> SignedRecord | None:
    """The intake entry an earlier run wrote into `copy`, if there is one."""
    try:
        image = Image.from_bytes(read_bytes(copy, limit=1 << 20))
    except (InputError, DecodeError):
        return None
    if not image.entries or image.birth.digest != source.birth.digest:
        return None
    last = image.entries[-1]
    _, head = source.next_link()
    if (
        last.kind is Kind.INTAKE
        and last.x5t == signer.x5t
        and isinstance(last.body, Entry)
        and last.body.prev == head
    ):
        return last
    return None


def write_intake_entry(
    source_path: Path,
    copy_path: Path,
    signer: IntakeSigner,
    now: int,
    *,
    soh: float | None,
    soh_sigma: float | None,
    resistance_ohm: float | None,
    cell_key_path: Path | None = None,
    receipts: ReceiptLookup | None = None,
    reuse: SignedRecord | None = None,
) -> Written:
    """Append a new intake entry (or `reuse`, one this signer wrote for the tag before) to a
    copy of the image at `source_path`, verified before it is written."""
    source = read_image(source_path)
    if copy_path.exists():
        held = _ours(copy_path, source, signer)
        if held is not None:
            return Written(copy_path, held.digest.hex(), existing=True)
    cell_key = keys.load_private(cell_key_path) if cell_key_path is not None else None
    seq, prev = source.next_link()
    last = max([source.birth.body.issued_at]  # type: ignore[union-attr]
               + [r.body.time for r in source.records[1:]])  # type: ignore[union-attr]  # fmt: skip
    at = max(now, last)
    values = _values(soh, soh_sigma, resistance_ohm)
    dropped: tuple[str, ...] = ()
    attempts = [values, values._replace(soh_capacity_cpct=None, soh_sigma_cpct=None,
                                        soh_method=None)]  # fmt: skip
    for attempt in [None] if reuse is not None else attempts:
        record = reuse or SignedRecord.sign(
            Entry(kind=Kind.INTAKE, seq=seq, prev=prev, time=at, values=attempt or Values()),
            signer.key, x5t=signer.x5t,
        )  # fmt: skip
        image, evicted = source.append(record, cell_key=cell_key)
        report = check_image(
            image, signer.trust, now=dt.datetime.fromtimestamp(at, dt.UTC), receipts=receipts
        )
        if report.valid:
            break
        if attempt is not values or values.soh_capacity_cpct is None:
            first = report.findings[0]
            raise InputError(
                f"the verifier would refuse the intake entry: {first.message} [{first.rule}]"
            )
        dropped = tuple(sorted({f.rule for f in report.findings}))
    journal = Path(str(source_path) + EVICTED_SUFFIX)
    copy_journal = Path(str(copy_path) + EVICTED_SUFFIX)
    old = read_bytes(journal, limit=64 << 20) if journal.exists() else b""
    if old or evicted:
        write_atomic(copy_journal, old + b"".join(r.raw for r in evicted))
    write_atomic(copy_path, image.to_bytes())
    return Written(copy_path, record.digest.hex(), existing=False, dropped=dropped,
                   reused=reuse is not None)  # fmt: skip
