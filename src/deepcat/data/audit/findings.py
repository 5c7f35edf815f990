"""The audit's findings as plain data: `Audit.to_dict()` is audit.json, `rows()` the terminal table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deepcat.inputs import DEFAULT_KIND, Words, input_kind

__all__ = ["GROUP_KINDS", "MAX_LISTED", "MAX_SHOWN", "NEAR_DUPLICATE_BITS", "NEAR_DUPLICATE_MAE", "Audit", "group_line"]

NEAR_DUPLICATE_BITS = 4  # pHash distance at or under which two images are near-duplicate candidates
NEAR_DUPLICATE_MAE = 6  # ... confirmed when their 16x16 grayscale thumbnails differ by at most this (0..255)
GROUP_KINDS = ("leak", "label_conflict", "duplicate")
MAX_LISTED = 50  # findings of one kind listed in full in the JSON and table
MAX_SHOWN = 4  # members of a group shown in the terminal table's example


@dataclass
class Audit:
    """Findings, as plain data: `to_dict()` is the JSON file, `summary_lines()` the terminal summary."""

    data: str
    images: int
    classes: dict[str, int]
    splits: dict[str, int]
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # groups, each with a kind
    flags: dict[str, list[str]] = field(default_factory=dict)  # the input kind's findings: flag -> items
    flag_labels: dict[str, str] = field(default_factory=dict)  # flag -> what it means, for people
    sizes: dict[str, Any] = field(default_factory=dict)
    input_kind: str = DEFAULT_KIND

    def count(self, kind: str) -> int:
        """Groups that are `kind` (a group can be a leak and a label conflict at once)."""
        return sum(1 for g in self.duplicates if kind in g.get("kinds", [g["kind"]]))

    @property
    def imbalance(self) -> float:
        counts = [c for c in self.classes.values() if c]
        return max(counts) / min(counts) if counts else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["imbalance"] = self.imbalance
        out["counts"] = {k: self.count(k) for k in GROUP_KINDS}
        out["flag_counts"] = {key: len(items) for key, items in self.flags.items()}
        out["flags"] = {key: items[:MAX_LISTED] for key, items in self.flags.items()}
        return out

    def rows(self) -> list[tuple[str, int, str]]:
        """(finding, count, example or advice) for the terminal table."""

        def first(items: list[Any]) -> str:
            return str(items[0]) if items else ""

        def group_example(kind: str) -> str:
            g = next((g for g in self.duplicates if kind in g.get("kinds", [g["kind"]])), None)
            return "" if g is None else group_line(g["members"], "split" if kind == "leak" else "label")

        def flag_row(key: str, items: list[str]) -> tuple[str, int, str]:
            if len(items) == self.images:  # a property of the whole set (all grayscale), not a finding
                return f"{self.flag_labels.get(key, key)} (the whole set)", 0, first(items)
            return self.flag_labels.get(key, key), len(items), first(items)

        return [
            (
                "unreadable or truncated",
                len(self.unreadable),
                f"{self.unreadable[0]['item']}: {self.unreadable[0]['error']}" if self.unreadable else "",
            ),
            ("leak across train/val/test", self.count("leak"), group_example("leak")),
            ("same image, different labels", self.count("label_conflict"), group_example("label_conflict")),
            ("duplicate within a class", self.count("duplicate"), group_example("duplicate")),
            (
                f"class imbalance (largest / smallest = {self.imbalance:.1f})",
                int(self.imbalance >= 3),
                ", ".join(f"{k} {v}" for k, v in self.classes.items()),
            ),
            *(flag_row(key, items) for key, items in self.flags.items()),
        ]

    @property
    def words(self) -> Words:
        """How the audited kind of input is named in messages and tables."""
        return input_kind(self.input_kind).words

    @property
    def noun(self) -> str:
        return self.words.plural

    def summary_lines(self) -> list[str]:
        lines = [f"audit of {self.data}: {self.images} {self.noun}, {len(self.classes)} classes"]
        lines += [f"  {name}: {n}" + (f"  e.g. {example}" if example else "") for name, n, example in self.rows() if n]
        if len(lines) == 1:
            lines[0] += "; no problems found"
        return lines


def group_line(members: list[dict[str, Any]], key: str) -> str:
    """A group as one line of the table: up to MAX_SHOWN members, those that differ in `key` (split for a leak,
    label for a conflict) first, each byte-identical copy marked, then "and N more"."""
    ordered = [
        members[0],
        *(m for m in members[1:] if m[key] != members[0][key]),
        *(m for m in members[1:] if m[key] == members[0][key]),
    ]
    shown = [
        f"{m['item']} ({m['label']}, {m['split']}{', exact copy' if m.get('exact') else ''})"
        for m in ordered[:MAX_SHOWN]
    ]
    more = len(members) - len(shown)
    return " = ".join(shown) + (f" and {more} more" if more else "")
