"""Failures by cause over many generated sequences (any tokenizer's checks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


class Checked(Protocol):
    #: The first check that failed, or None when the sequence passed them all.
    failure: str | None


@dataclass
class CheckCounts:
    total: int = 0
    failures: Counter = field(default_factory=Counter)

    def add(self, checked: Checked) -> None:
        self.total += 1
        if checked.failure:
            self.failures[checked.failure] += 1

    @property
    def valid_rate(self) -> float:
        return 1.0 - sum(self.failures.values()) / self.total if self.total else float("nan")

    def as_dict(self) -> dict:
        return {"total": self.total, "valid": self.total - sum(self.failures.values()),
                "valid_rate": self.valid_rate, "failures": dict(self.failures.most_common())}


__all__ = ["CheckCounts", "Checked"]
