"""The on-cell records: birth, history entry, checkpoint (see `schemas/passport.cddl`)."""

from passport.records.model import (
    COUNTER_FIELDS,
    ENTRY_KINDS,
    FORMAT_VERSION,
    Birth,
    Body,
    CapacityTest,
    Checkpoint,
    Chemistry,
    Entry,
    Event,
    Kind,
    ResistanceTest,
    SohMethod,
    Status,
    Values,
)
from passport.records.signed import MAX_RECORD_BYTES, SignedRecord, X5t, is_cell_signed

__all__ = [
    "COUNTER_FIELDS",
    "ENTRY_KINDS",
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "Birth",
    "Body",
    "CapacityTest",
    "Checkpoint",
    "Chemistry",
    "Entry",
    "Event",
    "Kind",
    "ResistanceTest",
    "SignedRecord",
    "SohMethod",
    "Status",
    "Values",
    "X5t",
    "is_cell_signed",
]
