"""Validation of raw Ed25519 public keys (a dangerous-primitive helper; internal).

cryptography (OpenSSL) accepts any 32 bytes as an Ed25519 public key, and verifies signatures
against small-order points such as the identity, for which `R = identity, S = 0` is a valid
signature on every message. A passport that certified such a key would let anyone forge its
cell's history, so before trusting a cell key we check, as libsodium does, that it is the
canonical encoding of a curve point that is not of small order (RFC 8032 section 5.1.3).
"""

from __future__ import annotations

import functools

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int]:
    """RFC 8032 5.1.3 point decoding; raises ValueError naming what is wrong."""
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    value = int.from_bytes(raw, "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    if y >= _P:
        raise ValueError("not a canonical encoding (y >= p)")
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    vx2 = (v * x * x) % _P
    if vx2 == (-u) % _P:
        x = (x * _SQRT_M1) % _P
    elif vx2 != u:
        raise ValueError("not a point on the curve")
    if x == 0 and sign:
        raise ValueError("not a canonical encoding (x = 0 with the sign bit set)")
    if x & 1 != sign:
        x = _P - x
    return x, y


def _double(point: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Point doubling in extended coordinates (RFC 8032 5.1.4)."""
    x1, y1, z1, _ = point
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = (a + b) % _P
    e = (h - (x1 + y1) * (x1 + y1)) % _P
    g = (a - b) % _P
    f = (c + g) % _P
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


@functools.lru_cache(maxsize=65536)
def check_public_key(raw: bytes) -> None:
    """Raise ValueError unless `raw` is a canonical Ed25519 point of large order.

    Cached (~0.1 ms of modular exponentiation per key): a registry re-verifies the same
    passports over and over. Only passing keys are cached; a failure raises every time."""
    x, y = _decode_point(raw)
    point = (x, y, 1, x * y % _P)
    for _ in range(3):  # multiply by the cofactor 8
        point = _double(point)
    px, py, pz, _ = point
    if px % _P == 0 and (py - pz) % _P == 0:
        raise ValueError("a point of small order (it would accept forged signatures)")
