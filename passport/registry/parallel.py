"""Verifying tags in worker processes, so ingest uses every core.

Checking a tag needs no lock and no shared state but the trust bundle, so worker processes
each load the bundle once and check tags as they come; the parent keeps storing batches (the
part that runs with the log locked) while the workers verify the next ones. Results come back
in input order. Journals of evicted records are still verified in the parent: they depend on
what the batch has accepted so far.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from passport.chain import Finding, check_image_bytes
from passport.image import Image
from passport.registry.db import make_engine
from passport.trust.bundle import TrustBundle
from passport.trust.policy import Policy

_WORKER: dict[str, Any] = {}


def _start(trust_dir: str, policy_file: str | None, url: str) -> None:
    from passport.registry.ingest import RegistryReceipts

    policy = Policy.load(policy_file) if policy_file else None
    _WORKER["trust"] = TrustBundle.load(trust_dir, policy=policy)
    _WORKER["receipts"] = RegistryReceipts(make_engine(url))


def _check(job: tuple[bytes, dt.datetime | None]) -> list[Finding]:
    data, now = job
    report = check_image_bytes(data, _WORKER["trust"], now=now, receipts=_WORKER["receipts"])
    return list(report.findings)


def can_parallelize(trust: TrustBundle) -> bool:
    """Workers rebuild the bundle from its directory: a bundle built in memory cannot be."""
    return Path(trust.source).is_dir()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def verify_images(
    images: Sequence[Image], trust: TrustBundle, url: str, now: dt.datetime | None, workers: int
) -> Iterator[list[Finding]]:
    """The findings of each image, in order (an empty list: the image verified)."""
    policy_file = trust.policy.source if Path(trust.policy.source).is_file() else None
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_start, initargs=(trust.source, policy_file, url)
    ) as pool:
        jobs = ((image.to_bytes(), now) for image in images)
        yield from pool.map(_check, jobs, chunksize=8)
