"""What makes an intake run resumable: `OUTDIR/run.json` (the arguments it was started with)
and `OUTDIR/progress.jsonl` (one line per finished cell, synced in small batches).

Re-run with the same arguments, a run skips the cells in the progress file; other arguments are
refused once a cell is finished (before that, say after a typo in an argument, the run simply
starts over). A crash can lose
the last unsynced lines; those cells are done again, and the image writer recognises an intake
entry it already wrote (see `intake.run`), so no cell ever gets a second one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from passport._fileio import write_atomic
from passport.errors import InputError

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.jsonl"
SYNC_EVERY = 64


class RunState:
    def __init__(self, out_dir: Path, arguments: Mapping[str, Any], *, restart: bool) -> None:
        self.out_dir = out_dir
        self.arguments = dict(arguments)
        self.done: dict[str, dict[str, Any]] = {}  # image path -> result
        self._handle: IO[str] | None = None
        self._unsynced = 0
        self.resumed = False
        run_file = out_dir / RUN_FILE
        progress = out_dir / PROGRESS_FILE
        if run_file.exists() and not restart:
            try:
                held = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"unreadable run file: {exc}", source=str(run_file)) from None
            if not isinstance(held, dict):
                raise InputError("not a run file (no arguments)", source=str(run_file))
            finished = _read_progress(progress)
            if held.get("arguments") != self.arguments and finished:
                diff = sorted(
                    k for k in set(held.get("arguments", {})) | set(self.arguments)
                    if held.get("arguments", {}).get(k) != self.arguments.get(k)
                )  # fmt: skip
                raise InputError(
                    f"{out_dir} holds an intake run with other arguments ({', '.join(diff)} "
                    "differ): re-run with the same arguments to finish it, or pass --restart "
                    "to start over, or use another --out",
                    source=str(run_file),
                )
            if held.get("arguments") != self.arguments:  # nothing finished: start over
                write_atomic(run_file, json.dumps({"arguments": self.arguments}, indent=2).encode())
            self.done = finished
            self.resumed = bool(finished)
        else:
            for stale in (progress, run_file):
                if stale.exists():
                    stale.unlink()
            write_atomic(run_file, json.dumps({"arguments": self.arguments}, indent=2).encode())

    def record(self, result: Mapping[str, Any]) -> None:
        """Append one finished cell; synced every SYNC_EVERY cells and on close."""
        if self._handle is None:
            self._handle = open(self.out_dir / PROGRESS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._handle.write(json.dumps(result, separators=(",", ":"), allow_nan=False) + "\n")
        self.done[str(result["image"])] = dict(result)
        self._unsynced += 1
        if self._unsynced >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        if self._handle is not None and self._unsynced:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._unsynced = 0

    def close(self) -> None:
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None


def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    """Finished cells; a torn last line (a crash mid-write) is cut off, not trusted."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            result = json.loads(line)
        except ValueError:
            break
        if not isinstance(result, dict) or "image" not in result:
            break
        done[str(result["image"])] = result
        good += len(line)
    if good != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return done
