"""The recycler intake workflow: verify every passport, register it, re-measure its state of
health, check its claim, grade it under a versioned policy, and write a signed intake entry
into a copy of its image. `run_intake` does the batch (resumable); `replay` re-grades a
results file from its recorded evidence."""

from passport.intake.replay import ReplayReport, replay
from passport.intake.run import IntakeJob, IntakeSummary, list_images, run_intake
from passport.intake.writer import IntakeSigner

__all__ = [
    "IntakeJob",
    "IntakeSigner",
    "IntakeSummary",
    "ReplayReport",
    "list_images",
    "replay",
    "run_intake",
]
