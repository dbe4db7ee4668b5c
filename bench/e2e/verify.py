"""The check after a sync: every item arrived exactly once, where it belongs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """What one side holds of the items a scenario made on the other side."""

    expected: int = 0
    found: int = 0
    missing: int = 0
    duplicates: int = 0
    """Extra copies: an item there twice counts 1."""
    misplaced: int = 0
    """Items that arrived in another mailbox than their own (or owned by another CRM user)."""
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.misplaced == 0

    def add(self, expected: Iterable[str], seen: Iterable[str], foreign: Iterable[str]) -> None:
        """Count one place: ``expected`` names belong there, ``seen`` are the benchmark's
        names it holds, ``foreign`` the names that belong elsewhere (all the others)."""
        want = set(expected)
        held = Counter(seen)
        others = set(foreign)
        self.expected += len(want)
        self.found += sum(1 for name in want if held[name])
        for name in sorted(want - set(held)):
            self.missing += 1
            self._example(f"missing {name}")
        for name, copies in sorted(held.items()):
            if name in want and copies > 1:
                self.duplicates += copies - 1
                self._example(f"{name} x{copies}")
            elif name not in want and name in others:
                self.misplaced += copies
                self._example(f"misplaced {name}")

    def _example(self, text: str) -> None:
        if len(self.examples) < 8:
            self.examples.append(text)

    def problem(self, where: str) -> str | None:
        """One loud line if anything is wrong, else None."""
        if self.ok:
            return None
        parts = []
        if self.duplicates:
            parts.append(f"DUPLICATES: {self.duplicates} extra item(s) in {where}")
        if self.missing:
            parts.append(f"{self.missing} of {self.expected} item(s) missing in {where}")
        if self.misplaced:
            parts.append(f"{self.misplaced} item(s) in the wrong place in {where}")
        return "; ".join(parts) + f" (e.g. {', '.join(self.examples)})"

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "found": self.found,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "misplaced": self.misplaced,
            "examples": self.examples,
        }
