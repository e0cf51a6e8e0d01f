"""File helpers: atomic writes (a crash never leaves half a file) and precise read errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from passport.errors import InputError


def read_bytes(path: str | os.PathLike[str], *, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read a whole file, translating OS errors into `InputError` naming the file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError("is a directory", source=str(p))
        size = p.stat().st_size
        if size > limit:
            raise InputError(f"file is {size} bytes; the limit is {limit}", source=str(p))
        return p.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=str(p)) from None
    except PermissionError:
        raise InputError("permission denied", source=str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(p)) from None


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> None:
    """Write `data` to `path` via a temporary file and rename; honour `overwrite`."""
    p = Path(path)
    if not overwrite and p.exists():
        raise InputError("already exists (use --force to overwrite)", source=str(p))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=str(p)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite:
            # link() fails if the target appeared meanwhile: no silent overwrite, even racing.
            os.link(tmp, p)
            os.unlink(tmp)
        else:
            os.replace(tmp, p)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError("already exists (use --force to overwrite)", source=str(p)) from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"cannot write: {exc.strerror or exc}", source=str(p)) from None


def append_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Append to a file and fsync: used for the evicted-records journal."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=str(p)) from None
