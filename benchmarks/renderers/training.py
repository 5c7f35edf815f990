"""The tables of training: time to accuracy against baselines, fine-tuning, tuning, what to label next, the
automatic model, a profiled epoch, the GPU check and the CPU allocator."""

from __future__ import annotations

import statistics

from renderers.provenance import provenance, spread


def tune(results: dict) -> str:
    lines = [
        "| seed | contestant | trials (pruned) | best validation accuracy | its test accuracy | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['seed']} | {r['contestant']} | {r['trials']} ({r['pruned']}) | {r['best val accuracy']:.1%} "
            f"| {r['test accuracy']:.1%} | {r['seconds']:.0f} |"
        )
    targets = results["targets"]
    met = ", ".join(f"{name}: {'met' if ok else 'missed'}" for name, ok in targets.items() if isinstance(ok, bool))
    return "\n".join([*lines, "", f"Targets: {met}.", "", provenance(results)])


def finetune(results: dict) -> str:
    """Per contestant over its seeds: final test accuracy (median [min, max]), speed, and time to each target."""
    targets = [f"{t:.0%}" for t in results["targets"]]
    lines = [
        "| contestant | seeds | final test accuracy | images/s frozen | images/s unfrozen | training s | "
        + " | ".join(f"reached {t} (median s)" for t in targets)
        + " |",
        "|---" * (6 + len(targets)) + "|",
    ]
    for r in results["summary"]:
        reached = []
        for t in results["targets"]:
            share, seconds = r[f"reached_{round(t * 100)}"], r[f"median_s_to_{round(t * 100)}"]
            reached.append(share + ("" if seconds is None else f" ({seconds:.0f})"))
        lines.append(
            f"| {r['contestant']} | {r['seeds']} | {spread(r['final_test_accuracy'], '.1%')} | "
            f"{r['frozen_images_per_s']:.1f} | {r['unfrozen_images_per_s']:.1f} | {r['training_seconds']:.0f} | "
            + " | ".join(reached)
            + " |"
        )
    first = results["rows"][0]
    lines += [
        "",
        f"{first['per_class']} training and {first['test_per_class']} test images per class, 1 frozen + "
        f"{first['unfrozen']} unfrozen epochs{allocator_note(results)}. " + provenance(results),
    ]
    return "\n".join(lines)


def active(results: dict) -> str:
    """Per data set and strategy: median test accuracy at each label count and the labels needed to reach random
    sampling's accuracy at 1,000; then the winner, 16 labels a class against all the pool's, bulk acceptance."""
    lines = []
    for summary in results["summary"]:
        counts = [k.removeprefix("acc@") for k in next(iter(summary["strategies"].values())) if k.startswith("acc@")]
        lines += [
            f"**{summary['data']}** ({summary['pool']:,} in the pool, {summary['test']:,} test; "
            f"random's accuracy at 1,000 labels: {summary['random_acc_at_1000']:.1%})",
            "",
            "| strategy | " + " | ".join(f"{c} labels" for c in counts) + " | labels to random's 1,000 (per seed) |",
            "|---" * (len(counts) + 2) + "|",
        ]
        for name, r in summary["strategies"].items():
            best = " (default)" if name == summary["winner"] else ""
            reach = ", ".join("never" if n is None else str(n) for n in r["labels_to_reach_random_at_1000"])
            lines.append(f"| {name}{best} | " + " | ".join(f"{r[f'acc@{c}']:.1%}" for c in counts) + f" | {reach} |")
        bulk = []
        for strategy, runs in summary["bulk_after_1000"].items():
            for guarantee in ("among_accepted", "overall"):
                wrong = statistics.median(run[guarantee]["wrong_among_accepted"] for run in runs)
                accepted = statistics.median(run[guarantee]["accepted"] for run in runs)
                bulk.append(
                    f"{strategy}'s labels, {guarantee.replace('_', ' ')}: {accepted:,.0f} of "
                    f"{runs[0][guarantee]['of']:,} accepted, {wrong:.1%} of them wrong"
                )
        lines += [
            "",
            f"160 labels (16 a class on average) by the default: {summary['acc@160_over_full_pool_linear_head']:.0%}"
            f" of the same head on all {summary['pool']:,} pool labels ({summary['full_pool_linear_head']:.1%}). "
            f"Bulk acceptance at alpha = {results['alpha']:.0%} after 1,000 labels (median over seeds): "
            + "; ".join(bulk)
            + ".",
            "",
        ]
    lines.append(f"Fashion-MNIST features at {results['image_size']} px. " + provenance(results))
    return "\n".join(lines)


def train_speed(results: dict) -> str:
    """Each contestant's runs (the rows without a summary in their name) as median [min, max]."""
    runs: dict[str, list[dict]] = {}
    for r in results["rows"]:
        if "median [min, max]" not in r["contestant"]:
            runs.setdefault(r["contestant"], []).append(r)
    targets = sorted(k for k in results["rows"][0] if k.startswith("s_to_"))

    def over_runs(rows: list[dict], key: str, form: str) -> str:
        values = [r[key] for r in rows]
        if any(v is None for v in values):
            reached = sum(v is not None for v in values)
            return "never" if not reached else f"{reached} of {len(values)} runs"
        return spread([statistics.median(values), min(values), max(values)], form)

    lines = [
        "| contestant (median [min, max] over its runs) | runs | best test accuracy | "
        + " | ".join(f"s to {k.removeprefix('s_to_')}%" for k in targets)
        + " |",
        "|---" * (len(targets) + 3) + "|",
    ]
    for name, rows in runs.items():
        cells = [str(len(rows)), over_runs(rows, "best_test_accuracy", ".2%")]
        cells += [over_runs(rows, k, ".0f") for k in targets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (
        f"Test accuracy on all 10,000 test images after every epoch, the same test-time flip for every contestant, "
        f"{results.get('torch_threads', 2)} torch threads{allocator_note(results)}."
    )
    return "\n".join([*lines, "", f"{note} {provenance(results)}"])


def profile_epoch(results: dict) -> str:
    lines = ["| part of an epoch | seconds | share |", "|---|---|---|"]
    lines += [f"| {r['part']} | {r['seconds_per_epoch']:.1f} | {r['share']:.0%} |" for r in results["rows"]]
    recipe = results["recipe"]
    lines += [
        "",
        f"The {recipe['model']} recipe ({recipe['epochs']} epochs of {recipe['train_images']:,} images): "
        f"{results['epoch_seconds']:.0f} s an epoch, {results['recipe_seconds']:.0f} s in all. The convolutions run "
        f"at {results['conv_gflops_per_s']:.0f} GFLOP/s against {results['matmul_gflops_per_s']:.0f} for a 2048x2048 "
        f"fp32 matrix product in the same run, so the recipe needs {results['conv_floor_seconds_for_recipe']:.0f} s "
        f"of convolution arithmetic alone; the {results['budget_seconds']:.0f} s budget holds "
        f"{results['epochs_in_budget']:.1f} epochs. " + provenance(results),
    ]
    return "\n".join(lines)


def gpu(results: dict) -> str:
    lines = ["| what (one run) | device | figure |", "|---|---|---|"]
    for r in results["rows"]:
        if "images_per_s" in r:
            figure = f"{r['images_per_s']:,.0f} images/s (batch {r['batch']}, {r['image_size']} px)"
        else:
            reached = "never" if r.get("s_to_93") is None else f"{r['s_to_93']:.0f} s"
            figure = (
                f"{r['best_test_accuracy']:.2%} test accuracy; 93% reached in {reached}; training "
                f"{r['training_seconds']:.0f} s and {r['after_training_seconds']:.0f} s after it"
            )
        lines.append(f"| {r['measure']} | {r['device']} | {figure} |")
    return "\n".join([*lines, "", provenance(results)])


def auto_model(results: dict) -> str:
    """Per data set and labelled images per class: each model's test accuracy and fit seconds, and auto's pick."""
    lines = [
        "| data | training images per class | small CNN, from scratch | Lite0, ImageNet-pretrained | `auto` picks | "
        "within 1 point of the better |",
        "|---|---|---|---|---|---|",
    ]

    def cell(row: dict, model: str) -> str:
        accuracy, seconds = row.get(f"{model}_accuracy"), row.get(f"{model}_seconds")
        return "not run" if accuracy is None else f"{accuracy:.1%} ({seconds:,.0f} s)"

    names = {"smallcnn": "small CNN", "tf_efficientnet_lite0": "Lite0"}
    for r in results["summary"]:
        seeds = max(r.get("smallcnn_seeds", 1), r.get("tf_efficientnet_lite0_seeds", 1))
        size = f"{r['train_per_class']:,}" + (" (all there is)" if r["all_available"] else "")
        size += f", mean of {seeds} seeds" if seeds > 1 else ""
        within = {True: "yes", False: "**no**", None: ""}[r.get("auto_within_1_point")]
        lines.append(
            f"| {r['data']} | {size} | {cell(r, 'smallcnn')} | {cell(r, 'tf_efficientnet_lite0')} | "
            f"{names.get(r.get('auto', ''), r.get('auto', ''))} | {within} |"
        )
    note = "Test accuracy (fit seconds)."
    return "\n".join([*lines, "", f"{note} {provenance(results)}"])


def cpu_memory(results: dict) -> str:
    """Per model and pass: glibc's allocator as it comes against freed memory kept, and each speed-up."""
    lines = [
        "| model | pass | glibc as it comes | freed memory kept | speed-up |",
        "|---|---|---|---|---|",
    ]
    by = {(r["model"], r["pass"], r["allocator"]): r for r in results["rows"]}
    for (model, pass_, allocator), system in by.items():
        if allocator != "system":
            continue
        kept = by[(model, pass_, "kept")]
        if "seconds" in system:
            cells = [f"{system['seconds']:.0f} s", f"{kept['seconds']:.0f} s", system["seconds"] / kept["seconds"]]
        else:
            cells = [
                f"{system['ms_per_image']:.1f} ms/image ({system['system_share']:.0%} in the kernel)",
                f"{kept['ms_per_image']:.1f} ms/image ({kept['system_share']:.0%})",
                system["ms_per_image"] / kept["ms_per_image"],
            ]
        mark = " (the old default)" if system.get("old") and "parts" in pass_ else ""
        mark = " (deepcat's)" if kept.get("deepcat") and "parts" in pass_ else mark
        lines.append(f"| {model} | {pass_}{mark} | {cells[0]} | {cells[1]} | {cells[2]:.1f}x |")
    note = f"fp32, 224 px; medians of {results['repeats']} turns (the quick run: {results['quick_repeats']})."
    return "\n".join([*lines, "", f"{note} {provenance(results)}"])


def allocator_note(results: dict) -> str:
    """How the contestants' memory was allocated, where the results file says (deepcat's CPU setting keeps freed
    memory, process-wide, so a benchmark gives it to every contestant from the first turn)."""
    allocator = results.get("allocator")
    return f"; every contestant's allocator: {allocator.removesuffix(' (every contestant)')}" if allocator else ""


def continue_run(results: dict) -> str:
    """Per seed: the old classes' test accuracy and the time of the continuation (`--from`) and of training on
    everything from scratch, then the gap and the share of the time."""
    lines = [
        "| seed | run | epochs | old classes' test accuracy | all classes' | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        old = f"{r['old_classes_accuracy']:.1%}" if "old_classes_accuracy" in r else ""
        every = f"{r['accuracy']:.1%}" if "accuracy" in r else ""
        lines.append(f"| {r['seed']} | {r['run']} | {r['epochs']} | {old} | {every} | {r['seconds']:.0f} |")
    s = results["summary"]
    gaps = ", ".join(f"{g:+.1f}" for g in s["old_classes_gap_points"])
    shares = ", ".join(f"{t:.0%}" for t in s["time_share"])
    within = sum(g >= -1 for g in s["old_classes_gap_points"])
    note = (
        f"The continuation against from scratch, by seed: old classes' accuracy {gaps} points (median "
        f"{s['median_gap_points']:+.1f}; within 1 point in {within} of {len(s['seeds'])} seeds); time {shares} of "
        f"from scratch's (median {s['median_time_share']:.0%})."
    )
    return "\n".join([*lines, "", note, "", provenance(results)])


def teach_head(results: dict) -> str:
    """The labelling page's quick head: test accuracy by labels a class for each head, then the refit time at
    1,000 labelled inputs and the seconds to embed 1,000 phone photos, against the issue's targets."""
    rows = results["rows"]
    heads = [r for r in rows if r["part"] == "head"]
    shots = sorted({r["labels_per_class"] for r in heads})
    kinds = list(dict.fromkeys(r["head"] for r in heads))
    by = {(r["labels_per_class"], r["head"]): r["accuracy"] for r in heads}
    lines = [
        "| labels a class | " + " | ".join(f"{k} head" for k in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
        *(f"| {n} | " + " | ".join(f"{by[n, k]:.1%}" for k in kinds) + " |" for n in shots),
    ]
    refit = next(r for r in rows if r["part"] == "refit")
    photos = {r["runtime"]: r for r in rows if r["part"] == "embed" and "seconds_per_1000" in r}
    embedded = "; ".join(
        f"{name}: {r['seconds_per_1000']:.0f} s per 1,000 ({r['megabytes_each']:.1f} MB JPEGs, 4032 x 3024)"
        for name, r in photos.items()
    )
    note = (
        f"Fashion-MNIST through Lite0's features, test accuracy over draws. A refit at {refit['labelled']:,} "
        f"labelled inputs: {refit['seconds']:.2f} s (target: at most 2 s). Embedding phone photos from an empty "
        f"cache, decoding included (target: at most 60 s per 1,000): {embedded}."
    )
    return "\n".join([*lines, "", note, "", provenance(results)])
