"""One error hierarchy, grouped by who is at fault.

- `InputError`: the caller's input cannot be used (unreadable file, malformed CSV, a key file
  that does not load, a record that does not fit the memory). The CLI exits 2.
- `VerificationError`: the data was read but failed a check (strict decoding, a signature, a
  chain rule). Every instance carries a stable `rule` id. The CLI exits 1.
- `StorageError`: the registry store failed.

Low-level exceptions (cbor2, cryptography, OS errors) are translated at the API boundary and
never escape it.
"""

from __future__ import annotations


class PassportError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}" if self.source else self.reason

    def at(self, source: str) -> PassportError:
        """Name the file (or record) the error is about, unless a nearer one is already named."""
        if self.source is None:
            self.source = source
        return self


class InputError(PassportError):
    """The caller's input cannot be used as given."""


class CapacityError(InputError):
    """A record or image does not fit the memory it is meant for."""


class VerificationError(PassportError):
    """Data failed a check; `rule` names which one (documented in the rule table)."""

    def __init__(self, reason: str, *, rule: str, source: str | None = None) -> None:
        super().__init__(reason, source=source)
        self.rule = rule

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} [{self.rule}]"


class DecodeError(VerificationError):
    """Bytes that are not a well-formed, deterministically encoded record or message."""


class SignatureError(VerificationError):
    """A signature does not verify, or the algorithm does not fit the key."""


class ChainError(VerificationError):
    """Records that verify one by one but do not form a valid history."""


class StorageError(PassportError):
    """The registry's store failed or holds inconsistent data."""
