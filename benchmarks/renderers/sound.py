"""The tables of sound: the spoken-digits recipes against baselines, over seeds; who is speaking (`voices.py`)."""

from __future__ import annotations

from renderers.provenance import provenance, spread


def sound(results: dict) -> str:
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


def sound_seeds(results: dict) -> str:
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
            f"| {name} | {spread(r['test accuracy (unheard voices)'], '.1%')} | {spread(r[degraded], '.1%')} | "
            f"{spread(r['points lost'], '.1f')} | {r[f'seeds within {aim} points']} of {seeds} |"
        )
    return "\n".join([*lines, "", provenance(results)])


def voices(results: dict) -> str:
    """Who is speaking: per number of labelled clips a voice, the share of the other clips whose speaker the
    page's quick head names, on the speaker encoder's features and on log-mel statistics (median [min, max])."""
    by = {(r["shots"], r["method"]): r for r in results["summary"]}
    shots = sorted({s for s, _ in by})
    lines = [
        "| labelled clips a voice | speaker encoder (`--model speaker`) | log-mel statistics |",
        "|---|---|---|",
    ]
    for n in shots:
        cells = [spread([by[n, m]["median"], by[n, m]["min"], by[n, m]["max"]], ".0%") for m in METHODS]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    note = (
        f"{len(results['voices'])} espeak-ng voices, {results['words']} words each, {len(results['seeds'])} seeds "
        f"(chance: {results['chance']:.0%}); the same quick head on both."
    )
    return "\n".join([*lines, "", f"{note} {provenance(results)}"])


METHODS = ("speaker encoder", "log-mel statistics")
