"""Second-life grading: a versioned TOML policy (`default.toml`, or `--policy FILE`) applied to
one cell's evidence. Every result names the rule ids that decided it and the policy's id,
version and SHA-256, so that an auditor can replay it."""

from passport.grading.grade import (
    TEST_COVERAGE,
    Evidence,
    GradeResult,
    grade,
    p_at_least,
)
from passport.grading.policy import CONDITIONS, GRADE_ORDER, GradingPolicy

__all__ = [
    "CONDITIONS",
    "GRADE_ORDER",
    "TEST_COVERAGE",
    "Evidence",
    "GradeResult",
    "GradingPolicy",
    "grade",
    "p_at_least",
]
