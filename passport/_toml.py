"""TOML policy files: decoded once, with errors that name the file."""

from __future__ import annotations

import tomllib
from typing import Any

from passport.errors import InputError


def load_toml(data: bytes, *, source: str, what: str = "policy") -> dict[str, Any]:
    """The document, or `InputError` naming `source` (not UTF-8, not TOML)."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"not a TOML {what}: {exc}", source=source) from None
