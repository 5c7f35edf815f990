"""The tables of how far to trust an answer: the data's own figures, the open set (`unknown`), conformal
prediction sets and the data audit."""

from __future__ import annotations

import statistics

from renderers.provenance import provenance


def data(results: dict) -> str:
    lines = ["| pipeline | images/s |", "|---|---|"]
    lines += [f"| {r['pipeline']} | {r['images_per_s']:,.1f} |" for r in results["rows"]]
    return "\n".join([*lines, "", provenance(results)])


def open_set(results: dict) -> str:
    """One row per score: known images accepted, then AUROC and the share rejected for the held-out classes
    (near) and each kind of far input."""
    first = results["rows"][0]
    kinds = ["near", *results["far_test"]]
    names = {"near": "held-out " + ", ".join(results["held_out"]), **{k: f"{k} shown" for k in results["far_test"]}}
    lines = [
        "| score | known accepted | "
        + " | ".join(f"{names[k]} (AUROC; rejected)" for k in kinds)
        + " | ONNX MB | ms per image |",
        "|---" * (len(kinds) + 4) + "|",
    ]
    for r in sorted(results["rows"], key=lambda r: -r["AUROC near"]):
        cells = [f"{r[f'AUROC {k}']:.3f}; {r[f'rejected {k}']:.0%}" for k in kinds]
        lines.append(
            f"| {r['score']} | {r['known accepted']:.1%} | " + " | ".join(cells) + f" | {r['onnx MB']:.2f} | "
            f"{r['ms/image']:.2f} |"
        )
    far = ", ".join(f"{n:,} {k}" for k, n in results["far_test"].items())
    return "\n".join(
        [
            *lines,
            "",
            f"{first['data']}: {results['known_test']:,} known and {results['near_test']:,} held-out test images, "
            f"far inputs: {far}; training {results['train_seconds']:.0f} s. " + provenance(results),
        ]
    )


def conformal(results: dict) -> str:
    runs = [r for r in results["rows"] if isinstance(r["seed"], int)]
    lines = [
        "| data (runs) | coverage asked | measured on test (mean) | mean set size | empty sets | resampled (mean of "
        "500 splits a run) |",
        "|---|---|---|---|---|---|",
    ]
    for data, levels in results["summary"].items():
        for level, s in levels.items():
            mine = [r for r in runs if r["data"] == data and f"{r['coverage asked']:.2f}" == level]
            size = statistics.mean(r["mean set size"] for r in mine)
            empty = statistics.mean(r["empty sets"] for r in mine)
            lines.append(
                f"| {data} ({s['runs']}) | {level} | {s['mean measured']:.3f} | {size:.2f} | {empty:.1%} | "
                f"{s['mean resampled']:.3f} |"
            )
    return "\n".join([*lines, "", provenance(results)])


def audit(results: dict) -> str:
    lines = ["| what | images | seconds | search's peak MB | found |", "|---|---|---|---|---|"]
    for r in results["rows"]:
        if "leak_groups" in r:
            found = (
                f"{r['leak_groups']} leaks, {r['conflict_groups']} label conflicts, {r['duplicate_groups']} duplicates"
            )
        elif "pairs" in r:
            found = f"{r['pairs']:,} pairs" + (" (the same pairs)" if r.get("same_pairs") else "")
            if "same_pairs_checked_on" in r:
                same = "the same" if r["same_pairs"] else "**not** the same"
                found = f"{r['pairs']:,} pairs ({same} as every pair, on a random {r['same_pairs_checked_on']:,})"
        else:
            found = ""
        peak = f"{r['peak_mb']:,.0f}" if "peak_mb" in r else ""
        lines.append(f"| {r['data']} | {r['images']:,} | {r['seconds']:,.1f} | {peak} | {found} |")
    return "\n".join([*lines, "", provenance(results)])
