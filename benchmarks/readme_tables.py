"""The result tables of the README and the docs site, written from the results files: each table sits between
`<!-- results:NAME -->` and `<!-- /results:NAME -->` in README.md or a page under docs/ and is rendered from
`benchmarks/results/NAME.json` (or the file `SOURCES` names for it), so no figure is copied by hand. A results file
that does not name its commit and CPU renders no table: rerun its benchmark. `tests/test_readme_tables.py` fails
when a table differs from what its file renders.

    python benchmarks/readme_tables.py          # rewrite the tables in README.md and docs/
    python benchmarks/readme_tables.py --check  # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"


class NoProvenance(Exception):
    """A results file that does not say which commit and CPU produced it: its table is not shown."""


def provenance(results: dict) -> str:
    """One line: which commit, CPU (model and the flags that change behaviour), cores and date produced a file."""
    machine = results["machine"]
    if not machine.get("commit") or not (machine.get("cpu") or {}).get("flags"):
        raise NoProvenance(
            f"benchmarks/results/{results['benchmark']}.json does not name its commit and CPU flags: rerun "
            f"`python benchmarks/{results['benchmark']}.py` before showing its table"
        )
    cpu = machine["cpu"]
    commit = machine["commit"][:10] + (" with local changes" if machine.get("dirty") else "")
    return (
        f"Measured by `benchmarks/{results['benchmark']}.py` at commit {commit} on {machine.get('date', '?')[:10]}: "
        f"{cpu.get('model', '?')} ({', '.join(cpu['flags'])}), "
        f"{machine.get('usable_cores', machine.get('cpu_count'))} cores."
    )


def _serve(results: dict) -> str:
    rows = {(r["key"], r["clients"]): r for r in results["rows"]}
    keys = list(dict.fromkeys(r["key"] for r in results["rows"]))
    names = {r["key"]: r["server"] for r in results["rows"]}
    levels = sorted({r["clients"] for r in results["rows"]})
    baselines = [k for k in keys if not k.startswith("deepcat")]
    header = "| clients | " + " | ".join(names[k] for k in keys) + " | deepcat int8 / best baseline |"
    lines = [header, "|---" * (len(keys) + 2) + "|"]
    for c in levels:
        cells = []
        for k in keys:
            r = rows[(k, c)]
            refused = f", {r['refused_503']:,} refused" if r["refused_503"] else ""
            cells.append(f"{r['requests_per_s']:.1f}/s, p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms{refused}")
        best = max(baselines, key=lambda b: rows[(b, c)]["requests_per_s"])
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {_serve_ratio(results, rows, best, c)} |")
    capacity = results["open_loop"]["capacity_requests_per_s"]
    lines.append(
        "| open loop: highest Poisson rate with p99 under "
        f"{results['open_loop']['p99_target_ms']:.0f} ms (failures count) | "
        + " | ".join(f"{capacity[k]:.0f}/s" if k in capacity else "none tried passed" for k in keys)
        + " | |"
    )
    cpu = {key: row["server_cpu_ms_per_answer"] for key, row in rows.items()}
    lines.append(
        f"| server CPU per answer, {' / '.join(map(str, levels))} clients | "
        + " | ".join(" / ".join(f"{cpu[(k, c)]:.1f}" for c in levels) + " ms" for k in keys)
        + " | |"
    )
    lines.append(
        "| memory when ready / peak | "
        + " | ".join(f"{results['memory_when_ready_mb'][k]:.0f} / {results['peak_memory_mb'][k]:.0f} MB" for k in keys)
        + " | |"
    )
    layout = results.get("deepcat_layout") or {}
    past = results["past_capacity"]
    lines += [
        "",
        f"deepcat's layout, chosen at start: {layout.get('workers')} one-thread workers, batches of up to "
        f"{layout.get('max_batch')}, a lone request on {layout.get('cores')} threads. At {levels[-1]} clients it "
        f"answered {past['most_clients_share_of_best']:.0%} of its best requests/s ({past['best_clients']} clients). "
        f"int8 check: {results['int8_check']['top1_agreement']:.1%} top-1 agreement with fp32 on "
        f"{results['int8_check']['images']} crops. {provenance(results)}",
    ]
    return "\n".join(lines)


def _serve_ratio(results: dict, rows: dict, best: str, clients: int) -> str:
    """A lone client: deepcat's p50 and p99 over the best baseline's, with their 95% intervals; more clients: its
    requests/s over the baseline's, with the range of the turns' ratios."""
    if clients == 1:
        lone = results["lone_request_latency_over"][best]
        return (
            f"p50 **{lone['p50']:.2f}x** [{lone['interval_95']['p50'][0]:.2f}, {lone['interval_95']['p50'][1]:.2f}], "
            f"p99 **{lone['p99']:.2f}x** [{lone['interval_95']['p99'][0]:.2f}, {lone['interval_95']['p99'][1]:.2f}] "
            f"({best}; 95% intervals)"
        )
    ratio = rows[("deepcat", clients)]["requests_per_s"] / rows[(best, clients)]["requests_per_s"]
    turns = results["deepcat_over_by_turn"][best][f"{clients}_clients"]
    return f"**{ratio:.2f}x** ({best}; turns {min(turns):.2f}-{max(turns):.2f})"


def _sound(results: dict) -> str:
    degraded = "test accuracy (degraded: 8 kHz, room)"
    hard = degraded in results["rows"][0]
    rows = sorted(results["rows"], key=lambda r: -(r[degraded] if hard else r["test accuracy (unheard voices)"]))
    first = results["rows"][0]
    lines = [
        f"Every method trained on the same {first['train clips']:,} clips and tested on the "
        f"{first['test clips']:,} clips of the test voices, which training never hears"
        + (", clean and degraded (an 8 kHz recording in a room, as no training clip is):" if hard else ":"),
        "",
        "| method | test accuracy (unheard voices) | "
        + ("degraded: 8 kHz, room | points lost | " if hard else "")
        + "training |",
        "|---|---|---|" + ("---|---|" if hard else ""),
    ]
    for r in rows:
        ours = r["method"].startswith("deepcat")
        accuracy = f"{r['test accuracy (unheard voices)']:.1%}"
        finished = f" ({r['finished run s']:.0f} s with calibration, evaluation and the report)" if ours else ""
        library = "" if "PocketSphinx" in r["method"] else " (scikit-learn)"
        name = "`" + r["method"] + "`" if ours else r["method"] + library
        cells = [name, "**" + accuracy + "**" if ours else accuracy]
        if hard:
            cells += [f"{r[degraded]:.1%}", f"{r['points lost']:.1f}"]
        cells.append(f"{r['training s']:.0f} s{finished}" if r["train clips"] else "none (pretrained)")
        lines.append("| " + " | ".join(cells) + " |")
    int8 = results["onnx_int8_check"]
    if "refused" in int8:
        verdict = "was **refused** by its own check (" + int8["refused"].split("{", 1)[1].split("}")[0] + ")"
    else:
        verdict = (
            f"passed its check: {int8['top1_agreement']:.1%} top-1 agreement on {int8['images']} clips of voices "
            f"training never heard, accuracy {int8['accuracy_pytorch']:.1%} in PyTorch and "
            f"{int8['accuracy_exported']:.1%} in int8"
        )
    spotting = results.get("keyword_spotting")
    heard = (
        f"`deepcat listen` with that run, over {spotting['recording_minutes']:.0f} minutes of the test voices' "
        f"{spotting['digits_spoken']:,} digits between {spotting['other_words_spoken']} other spoken words, under "
        f"noise: {spotting['detection_rate']:.1%} of the digits reported in time, "
        f"{spotting['false_activations_per_hour']:.0f} false activations per hour, a median latency of "
        f"{spotting['median_latency_s']:+.2f} s from the end of the word. "
        if spotting
        else ""
    )
    commands = results.get("keyword_spotting_with_non_word_classes")
    if commands:
        model = commands["model"]
        heard += (
            f"The same recording with a model trained on `spoken-commands` (the digits, `_silence_` and `_unknown_`; "
            f"{model['test accuracy (unheard voices)']:.1%} on its own test clips): "
            f"{commands['detection_rate']:.1%} of the digits, {commands['false_activations_per_hour']:.0f} false "
            f"activations per hour. "
        )
    lines += [
        "",
        f"ONNX fp32 agrees with PyTorch to {results['onnx_fp32_max_abs_diff_test_clips']:.1e} (largest probability "
        f"difference over the {results['onnx_fp32_test_clips']:,} test clips). The int8 export of that run {verdict}. "
        + heard
        + provenance(results),
    ]
    return "\n".join(lines)


def _sound_seeds(results: dict) -> str:
    seeds, aim = results["seeds"], results["aim_points_lost"]
    degraded = "test accuracy (degraded: 8 kHz, room)"
    lines = [
        f"| method ({seeds} seeds: median [min, max]) | test accuracy (unheard voices) | degraded: 8 kHz, room | "
        f"points lost | seeds within {aim} points |",
        "|---|---|---|---|---|",
    ]
    for r in results["summary_median_min_max"]:
        name = f"`{r['method']}`" if r["method"].startswith("deepcat") else r["method"] + " (scikit-learn)"
        lines.append(
            f"| {name} | {_spread(r['test accuracy (unheard voices)'], '.1%')} | {_spread(r[degraded], '.1%')} | "
            f"{_spread(r['points lost'], '.1f')} | {r[f'seeds within {aim} points']} of {seeds} |"
        )
    return "\n".join([*lines, "", provenance(results)])


def _infer(results: dict) -> str:
    def cell(value: float | None, form: str) -> str:
        return "" if value is None else format(value, form)

    lines = [
        "| model | runtime | images/s, batch 32 | / PyTorch's best | ms, batch 1 | top-1 agreement with PyTorch | "
        "top-1 accuracy (labelled) | passes deepcat's check | share of peak | file MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    passes = {True: "yes", False: "**no**"}
    for r in results["rows"]:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['images_per_s_batch32']:.1f} | "
            f"{r['over_best_pytorch_batch32']:.2f}x | {r['ms_batch1']:.1f} | {cell(r['top1_agreement'], '.1%')} | "
            f"{cell(r['top1_accuracy'], '.1%')} | {passes.get(r.get('passes_check'), '')} | "
            f"{cell(r['peak_share'], '.1%')} | {cell(r['file_mb'], '.1f')} |"
        )
    checked = {r["model"]: r["check_images"] for r in results["rows"]}
    fastest = []
    for model in checked:
        passing = [r for r in results["rows"] if r["model"] == model and r.get("passes_check")]
        if passing:
            best = max(passing, key=lambda r: r["images_per_s_batch32"])
            fastest.append(f"{model}: {best['runtime']}, {best['over_best_pytorch_batch32']:.2f}x")
    if fastest:
        lines += ["", "The fastest file that passes its check, over PyTorch's best: " + "; ".join(fastest) + "."]
    lines += [
        "",
        "Check images: " + "; ".join(f"{n:,} for {model}" for model, n in checked.items()) + ". "
        f"{results['threads']} threads for every runtime. {provenance(results)}",
    ]
    return "\n".join(lines)


def _infer_headline(results: dict) -> str:
    """Per model: PyTorch's best path, then the fastest exported file that passes deepcat's check."""
    lines = [
        "| model | PyTorch's best (images/s, batch 32) | fastest file that passes the check | images/s | speed-up "
        "| top-1 accuracy, PyTorch / file |",
        "|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["model"] == model]
        torch_rows = [r for r in rows if r["runtime"].startswith("PyTorch")]
        best_torch = max(torch_rows, key=lambda r: r["images_per_s_batch32"])
        passing = [r for r in rows if r.get("passes_check")]
        if not passing:
            continue
        fastest = max(passing, key=lambda r: r["images_per_s_batch32"])
        torch_accuracy = next((r["top1_accuracy"] for r in torch_rows if r["top1_accuracy"]), None)
        accuracy = "unlabelled"
        if torch_accuracy and fastest["top1_accuracy"]:
            accuracy = f"{torch_accuracy:.1%} / {fastest['top1_accuracy']:.1%}"
        lines.append(
            f"| {model} | {best_torch['images_per_s_batch32']:.0f} | {fastest['runtime']} | "
            f"{fastest['images_per_s_batch32']:.0f} | **{fastest['over_best_pytorch_batch32']:.2f}x** | {accuracy} |"
        )
    return "\n".join([*lines, "", f"{results['threads']} threads for every runtime. {provenance(results)}"])


def _startup(results: dict) -> str:
    lines = ["| command | median seconds |", "|---|---|"]
    lines += [f"| `{r['command']}` | {r['median_seconds']:.2f} |" for r in results["rows"]]
    return "\n".join([*lines, "", provenance(results)])


def _data(results: dict) -> str:
    lines = ["| pipeline | images/s |", "|---|---|"]
    lines += [f"| {r['pipeline']} | {r['images_per_s']:,.1f} |" for r in results["rows"]]
    return "\n".join([*lines, "", provenance(results)])


def _tune(results: dict) -> str:
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


def _spread(values: list[float] | None, form: str, unit: str = "") -> str:
    """A [median, min, max] triple as `median [min, max]`; `never` when a contestant never got there."""
    if not values:
        return "never"
    middle, low, high = (format(v, form) + unit for v in values)
    return middle if low == high else f"{middle} [{low}, {high}]"


def _finetune(results: dict) -> str:
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
            f"| {r['contestant']} | {r['seeds']} | {_spread(r['final_test_accuracy'], '.1%')} | "
            f"{r['frozen_images_per_s']:.1f} | {r['unfrozen_images_per_s']:.1f} | {r['training_seconds']:.0f} | "
            + " | ".join(reached)
            + " |"
        )
    first = results["rows"][0]
    lines += [
        "",
        f"{first['per_class']} training and {first['test_per_class']} test images per class, 1 frozen + "
        f"{first['unfrozen']} unfrozen epochs. " + provenance(results),
    ]
    return "\n".join(lines)


def _active(results: dict) -> str:
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


def _train_speed(results: dict) -> str:
    """Each contestant's runs (the rows without a summary in their name) as median [min, max]."""
    runs: dict[str, list[dict]] = {}
    for r in results["rows"]:
        if "median [min, max]" not in r["contestant"]:
            runs.setdefault(r["contestant"], []).append(r)
    targets = sorted(k for k in results["rows"][0] if k.startswith("s_to_"))

    def spread(rows: list[dict], key: str, form: str) -> str:
        values = [r[key] for r in rows]
        if any(v is None for v in values):
            reached = sum(v is not None for v in values)
            return "never" if not reached else f"{reached} of {len(values)} runs"
        return _spread([statistics.median(values), min(values), max(values)], form)

    lines = [
        "| contestant (median [min, max] over its runs) | runs | best test accuracy | "
        + " | ".join(f"s to {k.removeprefix('s_to_')}%" for k in targets)
        + " |",
        "|---" * (len(targets) + 3) + "|",
    ]
    for name, rows in runs.items():
        cells = [str(len(rows)), spread(rows, "best_test_accuracy", ".2%")] + [spread(rows, k, ".0f") for k in targets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", provenance(results)])


def _profile_epoch(results: dict) -> str:
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


def _gpu(results: dict) -> str:
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


def _open_set(results: dict) -> str:
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


def _conformal(results: dict) -> str:
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


def _audit(results: dict) -> str:
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


def _scale(results: dict) -> str:
    lines = [
        "| what | images | seconds | images/s | peak memory, all processes (PSS) | main process (RSS) | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        speed = r.get("train_images_per_s", r.get("images_per_s"))
        what = f"{r['part']}: {r['run']}" + (f" (val acc {r['val_acc']:.3f})" if "val_acc" in r else "")
        lines.append(
            f"| {what} | {r['images']:,} | {r['seconds']:,.0f} | {speed:.1f} | {r['peak_tree_gb']:.2f} GB | "
            f"{r['peak_main_gb']:.2f} GB | {r.get('commit', results['machine']['commit'])[:7]} |"
        )
    return "\n".join([*lines, "", provenance(results)])


def _auto_model(results: dict) -> str:
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


def _shedding(results: dict) -> str:
    """Per wait budget: the burst, then each sustained level (answered p99 against its bound)."""
    lines = [
        "| budget | load | answered | refused (503) | answered/s | p50 ms | p99 ms | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        share = r.get("share_of_best")
        if "clients" not in r:
            target = "all answered"
        elif "share_interval" in r:
            low, high = r["share_interval"]
            target = f"p99 ≤ {r['bound_ms']:,.0f} ms, rate ≥ 90% of best ({share:.0%} [{low:.0%}, {high:.0%}])"
        elif "bound_ms" in r:
            target = f"p99 ≤ {r['bound_ms']:,.0f} ms, rate ≥ 90% of best ({share:.0%})"
        else:
            target = ""
        speed = f"{r['answered_per_s']:.1f}" if "answered_per_s" in r else ""
        p50 = f"{r['p50_ms']:,.0f}" if r.get("p50_ms") is not None else ""
        p99 = f"{r['p99_ms']:,.0f}" if r.get("p99_ms") is not None else ""
        if r.get("p99_interval_ms") and "bound_ms" in r:
            p99 += " [{:,.0f}, {:,.0f}]".format(*r["p99_interval_ms"])
        met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
        if r.get("met") is False and r.get("met_within_noise"):
            met = "tie within the 95% interval"
        lines.append(
            f"| {r['budget_ms']:,} ms | {r['load']} | {r['answered']:,} | {r['refused']:,} | {speed} | {p50} | "
            f"{p99} | {target} | {met} |"
        )
    layouts = {f"{r['budget_ms']:,} ms: {r['layout']}": None for r in results["rows"] if "layout" in r}
    intervals = " Brackets: 95% intervals (bootstrap within the run)." if "all_met_within_noise" in results else ""
    rounds = results.get("rounds")
    pooled = f" Each level pooled over {rounds} turns of {results['seconds']:g} s, in rotated order." if rounds else ""
    footer = f"{results.get('model', '')}; {'; '.join(layouts)}.{pooled}{intervals} {provenance(results)}"
    return "\n".join([*lines, "", footer])


def _drift(results: dict) -> str:
    """Per shift (medians over seeds): the monitor's requests to the alarm, the accuracy it estimates against the
    true one, and the MMD baseline's requests to detection; false alarms over normal windows first."""
    rows = results["rows"]
    normal = [r for r in rows if r["shift"].startswith("none")]
    shifts = list(dict.fromkeys(r["shift"] for r in rows if not r["shift"].startswith("none")))

    def median(values: list) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def requests(values: list) -> str:
        never = sum(v is None for v in values)
        found = median(values)
        shown = "never" if found is None else f"{found:,.0f}"
        return shown + (f" ({never} of {len(values)} never)" if never and found is not None else "")

    seeds = len(normal)
    false = median([r["false alarms"] for r in normal])
    mmd_false = median([r.get("mmd false alarms") for r in normal])
    lines = [
        "| shift | monitor: requests to alarm | accuracy | estimated (ATC) | error (points) | CBPE's error | "
        "MMD (Alibi Detect): requests to detection |",
        "|---|---|---|---|---|---|---|",
        f"| none: false alarms over {NORMAL_WINDOWS} windows | {false:.0%} | | | | | "
        + ("" if mmd_false is None else f"{mmd_false:.0%}")
        + " |",
    ]
    for name in shifts:
        picked = [r for r in rows if r["shift"] == name]
        lines.append(
            f"| {name} | {requests([r['alarm after'] for r in picked])} | "
            f"{median([r['accuracy'] for r in picked]):.1%} | {median([r['estimated'] for r in picked]):.1%} | "
            f"{median([r['error (points)'] for r in picked]):+.1f} | "
            f"{median([100 * (r['cbpe'] - r['accuracy']) for r in picked]):+.1f} | "
            f"{requests([r.get('mmd alarm after') for r in picked])} |"
        )
    data = normal[0]["data"]
    note = (
        f"{data}, the default recipe trained on all classes but two, {seeds} seed{'s' if seeds > 1 else ''} "
        f"(medians); the monitor's window {results.get('window', 500)}, looked at every {results.get('check_every')} "
        f"requests, alarming at p < 0.01 over its three tests; MMD every {results.get('mmd_every')}, at its own "
        "default p < 0.05. False alarms: one look at each of 20 windows of normal traffic."
    )
    return "\n".join([*lines, "", note + " " + provenance(results)])


def _cpu_memory(results: dict) -> str:
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


NORMAL_WINDOWS = 20


def _monitor_cost(results: dict) -> str:
    r = results["rows"][0]
    lines = [
        "| model, per answer | monitor, per answer | monitor's share of an answer | report (each scrape) |",
        "|---|---|---|---|",
        f"| {r['model ms per answer']:.1f} ms | {r['monitor us per answer']:.0f} µs | "
        f"{r['monitor share of an answer']:.2%} | {r['report ms (each scrape)']:.1f} ms |",
    ]
    return "\n".join([*lines, "", f"{results.get('model', '')}, one thread. {provenance(results)}"])


RENDERERS: dict[str, Callable[[dict], str]] = {
    "active": _active,
    "audit": _audit,
    "auto_model": _auto_model,
    "conformal": _conformal,
    "cpu_memory": _cpu_memory,
    "data": _data,
    "drift_fashion-mnist": _drift,
    "gpu": _gpu,
    "monitor_cost": _monitor_cost,
    "finetune": _finetune,
    "profile_epoch": _profile_epoch,
    "scale": _scale,
    "train_speed": _train_speed,
    "infer": _infer,
    "infer_headline": _infer_headline,
    "open_set_digits": _open_set,
    "open_set_fashion-mnist": _open_set,
    "serve": _serve,
    "shedding": _shedding,
    "sound": _sound,
    "sound_seeds": _sound_seeds,
    "startup": _startup,
    "tune": _tune,
}

SOURCES = {"infer_headline": "infer"}  # a table rendered from another name's results file


def render(text: str, *, where: str = "README.md") -> str:
    """`text` with every marked table in it rendered afresh from its results file."""
    for name, renderer in RENDERERS.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(text):
            continue
        results = json.loads((RESULTS / f"{SOURCES.get(name, name)}.json").read_text())
        try:
            table = renderer(results)
        except NoProvenance as e:
            raise SystemExit(f"{where} shows the table {name}, but {e}") from None
        text = pattern.sub(lambda m, table=table: m.group(1) + table + "\n" + m.group(2), text)
    return text


def pages() -> list[Path]:
    """Every file that may hold tables: the README and the docs site's pages."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a table differs from its results file")
    args = parser.parse_args()
    stale = []
    for page in pages():
        current = page.read_text()
        fresh = render(current, where=str(page.relative_to(ROOT)))
        if fresh != current:
            stale.append(page)
            if not args.check:
                page.write_text(fresh)
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"result tables are stale in {names}: run python benchmarks/readme_tables.py", file=sys.stderr)
        sys.exit(1)
    if not args.check:
        print(f"rewrote the tables in {len(stale)} file(s)")


if __name__ == "__main__":
    main()
