"""C2SP signed notes and transparency-log checkpoints (c2sp.org/signed-note, tlog-checkpoint).

A checkpoint is the note text::

    <origin>
    <tree size>
    <base64 root hash>

followed by a blank line and one signature line per signer:
``— <key name> <base64(4-byte key id || Ed25519 signature over the text)>``. The key id is the
first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key); 0x01 names Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from passport.errors import InputError, VerificationError

_EM_DASH = "\u2014"
_ED25519 = b"\x01"
MAX_NOTE_BYTES = 1 << 20


def key_id(name: str, public_key: ed25519.Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]


def verifier_key(name: str, public_key: ed25519.Ed25519PublicKey) -> str:
    """The `name+keyid+base64(type||key)` string the note ecosystem uses to name a key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(_ED25519 + raw).decode()}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "\n".join(lines) + "\n"

    def sign(self, name: str, key: ed25519.Ed25519PrivateKey) -> str:
        """The signed note: body, blank line, one signature line."""
        text = self.body()
        signature = key.sign(text.encode())
        blob = base64.b64encode(key_id(name, key.public_key()) + signature).decode()
        return f"{text}\n{_EM_DASH} {name} {blob}\n"


def open_checkpoint(note: str, name: str, public_key: ed25519.Ed25519PublicKey) -> Checkpoint:
    """Verify a signed checkpoint note with `public_key` (named `name`) and parse it.

    Raises `VerificationError` (rule `log.checkpoint-invalid`) for a bad signature or a
    malformed note."""
    if len(note) > MAX_NOTE_BYTES:
        raise _bad("note is too large")
    text, sep, signatures = note.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise _bad("not a signed note (no blank line before the signatures)")
    text += "\n"
    wanted = key_id(name, public_key)
    verified = False
    for line in signatures[:-1].split("\n"):
        prefix, _, rest = line.partition(" ")
        signer, _, blob = rest.partition(" ")
        if prefix != _EM_DASH or not signer or not blob:
            raise _bad(f"malformed signature line {line[:60]!r}")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise _bad("signature is not base64") from None
        if signer != name or raw[:4] != wanted:
            continue  # another witness's signature: not ours to check
        try:
            public_key.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(
                "the checkpoint's signature does not verify with the log key",
                rule="log.checkpoint-invalid",
            ) from None
        verified = True
    if not verified:
        raise _bad(f"no signature by {name} with this key")
    return parse_body(text)


def parse_body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise _bad("a checkpoint body has an origin, a size and a root, each on its own line")
    origin, size_text, root_text, *extensions = lines[:-1]
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise _bad("malformed origin or tree size")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise _bad("root hash is not base64") from None
    if len(root) != 32:
        raise _bad("root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def _bad(reason: str) -> VerificationError:
    return VerificationError(f"checkpoint: {reason}", rule="log.checkpoint-invalid")


def load_log_key(pem: bytes, source: str) -> ed25519.Ed25519PublicKey:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise InputError("not a PEM public key", source=source) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError("the log key is an Ed25519 public key", source=source)
    return key
