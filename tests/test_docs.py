"""The README documents every rule id the library can raise, and nothing it cannot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Quoted strings that look like rule ids but are file names or table columns
FILE_SUFFIXES = (".toml", ".cose", ".pem", ".db", ".cbor", ".t5t", ".json")
NOT_RULES = {"record.digest"}
PREFIXES = "cbor|cose|record|image|chain|trust|policy|clone|log|registry|datasheet"
RULE = re.compile(rf"\b((?:{PREFIXES})\.[a-z0-9-]+)\b")


def raised_rules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "passport").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'rule="([a-z0-9.-]+)"', text))
        # ... and rule ids passed around as plain strings (rule tables, scanner faults)
        quoted = re.findall(r'"([a-z]+\.[a-z0-9-]+)"', text)
        found |= {
            m for m in quoted
            if RULE.fullmatch(m) and m not in NOT_RULES and not m.endswith(FILE_SUFFIXES)
        }  # fmt: skip
    return found


def documented_rules() -> set[str]:
    table = [
        line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")
    ]
    return {m.group(1) for line in table if (m := re.match(r"\| `([a-z0-9.-]+)` \|", line))}


def test_every_raised_rule_is_documented() -> None:
    missing = raised_rules() - documented_rules()
    assert not missing, f"rules raised but not in README's table: {sorted(missing)}"


def test_every_documented_rule_exists() -> None:
    rules = {r for r in documented_rules() if RULE.fullmatch(r)}
    stale = rules - raised_rules()
    assert not stale, f"rules in README's table that nothing raises: {sorted(stale)}"
