"""The audit's findings as plain data: `Audit.to_dict()` is audit.json, `rows()` the terminal table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

NEAR_DUPLICATE_BITS = 4   # pHash distance at or under which two images are near-duplicate candidates
NEAR_DUPLICATE_MAE = 6    # ... confirmed when their 16x16 grayscale thumbnails differ by at most this (0..255)
ODD_ASPECT = 3.0          # longer side over shorter side
HUGE_PIXELS = 40_000_000
MAX_LISTED = 50           # findings of one kind listed in full in the JSON and table


@dataclass
class Audit:
    """Findings, as plain data: `to_dict()` is the JSON file, `summary_lines()` the terminal summary."""

    data: str
    images: int
    classes: dict[str, int]
    splits: dict[str, int]
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)   # groups, each with a kind
    tiny: list[str] = field(default_factory=list)
    huge: list[str] = field(default_factory=list)
    odd_shape: list[str] = field(default_factory=list)
    grayscale: list[str] = field(default_factory=list)
    exif_rotated: list[str] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for g in self.duplicates if g["kind"] == kind)

    @property
    def imbalance(self) -> float:
        counts = [c for c in self.classes.values() if c]
        return max(counts) / min(counts) if counts else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["imbalance"] = self.imbalance
        out["counts"] = {k: self.count(k) for k in ("leak", "label_conflict", "duplicate")}
        for key in ("tiny", "huge", "odd_shape", "grayscale", "exif_rotated"):
            out[f"{key}_count"] = len(out[key])
            out[key] = out[key][:MAX_LISTED]
        return out

    def rows(self) -> list[tuple[str, int, str]]:
        """(finding, count, example or advice) for the terminal table."""
        def first(items: list) -> str:
            return str(items[0]) if items else ""

        def group_example(kind: str) -> str:
            g = next((g for g in self.duplicates if g["kind"] == kind), None)
            if g is None:
                return ""
            members = g["members"]
            key = "split" if kind == "leak" else "label"  # show two members that differ in what matters
            second = next((m for m in members if m[key] != members[0][key]), members[1])
            return " = ".join(f"{m['item']} ({m['label']}, {m['split']})" for m in (members[0], second))

        gray_all = len(self.grayscale) == self.images
        return [
            ("unreadable or truncated", len(self.unreadable),
             f"{self.unreadable[0]['item']}: {self.unreadable[0]['error']}" if self.unreadable else ""),
            ("leak across train/val/test", self.count("leak"), group_example("leak")),
            ("same image, different labels", self.count("label_conflict"), group_example("label_conflict")),
            ("duplicate within a class", self.count("duplicate"), group_example("duplicate")),
            (f"class imbalance (largest / smallest = {self.imbalance:.1f})", int(self.imbalance >= 3),
             ", ".join(f"{k} {v}" for k, v in self.classes.items())),
            ("tiny images", len(self.tiny), first(self.tiny)),
            ("huge images", len(self.huge), first(self.huge)),
            (f"odd shape (aspect > {ODD_ASPECT:g})", len(self.odd_shape), first(self.odd_shape)),
            ("grayscale" + (" (the whole set)" if gray_all else ""), 0 if gray_all else len(self.grayscale),
             first(self.grayscale)),
            ("EXIF rotation (deepcat applies it)", len(self.exif_rotated), first(self.exif_rotated)),
        ]

    def summary_lines(self) -> list[str]:
        lines = [f"audit of {self.data}: {self.images} images, {len(self.classes)} classes"]
        lines += [f"  {name}: {n}" + (f"  e.g. {example}" if example else "")
                  for name, n, example in self.rows() if n]
        if len(lines) == 1:
            lines[0] += "; no problems found"
        return lines
