"""Rejected inputs: one table for every row or file that did not make it, with its reason.

Nothing is dropped silently: each reader returns what it accepted and a rejects table,
and every item read ends in exactly one of the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

REJECT_COLUMNS = ("stage", "file", "row", "item", "reason", "detail")
"""``row`` is the 1-based data row of ``file`` (header excluded); empty for whole files."""


class InputConfigurationError(ValueError):
    """The configuration cannot work at all (no tiles found, a required column missing)."""


def rejects_frame(records: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """A rejects table from dicts with (a subset of) :data:`REJECT_COLUMNS`."""
    frame = pd.DataFrame(list(records), columns=list(REJECT_COLUMNS))
    frame["row"] = pd.to_numeric(frame["row"].replace({"": None}), errors="raise").astype("Int64")
    return frame.astype({c: "string" for c in REJECT_COLUMNS if c != "row"})


def count_report(read: int, accepted: int, rejects: pd.DataFrame) -> dict[str, Any]:
    """Counts of one input: read = accepted + rejected, rejected broken down by reason."""
    by_reason = {str(k): int(v) for k, v in rejects["reason"].value_counts().sort_index().items()}
    report = {"read": read, "accepted": accepted, "rejected": len(rejects),
              "rejected_by_reason": by_reason}
    if read != accepted + len(rejects):
        raise AssertionError(f"counts do not add up: {report}")
    return report


@dataclass(frozen=True)
class ReadResult:
    """What a reader accepted, what it rejected (with reasons) and how many items it read."""

    accepted: pd.DataFrame
    rejects: pd.DataFrame
    read: int

    def report(self) -> dict[str, Any]:
        return count_report(self.read, len(self.accepted), self.rejects)
