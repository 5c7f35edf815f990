"""The tables of serving and inference: the server against its baselines, every runtime and format, start-up,
load shedding, drift monitoring and what it costs, many processes."""

from __future__ import annotations

import statistics

from renderers.provenance import provenance


def serve(results: dict) -> str:
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
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {serve_ratio(results, rows, best, c)} |")
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


def serve_ratio(results: dict, rows: dict, best: str, clients: int) -> str:
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


def infer(results: dict) -> str:
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


def infer_headline(results: dict) -> str:
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


def startup(results: dict) -> str:
    lines = ["| command | median seconds |", "|---|---|"]
    lines += [f"| `{r['command']}` | {r['median_seconds']:.2f} |" for r in results["rows"]]
    return "\n".join([*lines, "", provenance(results)])


def scale(results: dict) -> str:
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


def shedding(results: dict) -> str:
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


NORMAL_WINDOWS = 20


def drift(results: dict) -> str:
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


def monitor_cost(results: dict) -> str:
    r = results["rows"][0]
    lines = [
        "| model, per answer | monitor, per answer | monitor's share of an answer | report (each scrape) |",
        "|---|---|---|---|",
        f"| {r['model ms per answer']:.1f} ms | {r['monitor us per answer']:.0f} µs | "
        f"{r['monitor share of an answer']:.2%} | {r['report ms (each scrape)']:.1f} ms |",
    ]
    return "\n".join([*lines, "", f"{results.get('model', '')}, one thread. {provenance(results)}"])


def qat(results: dict) -> str:
    """Per int8 format: every layer post-training against the quantisation-aware file on the search's inputs, what
    the fine-tune cost, which file was written and how the check judged it."""

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.1%}"

    def floated(row: dict) -> str:
        return "NNCF's accuracy control" if row["float segments"] is None else str(row["float segments"])

    lines = [
        "| format | post-training, every layer: agreement | quantisation-aware, every layer: agreement | "
        "fine-tune | written | float segments | check: agreement | accuracy int8 / fp32 | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if "check passed" not in r:
            lines.append(f"| {r['format']} | {r['check']} | | | | | | | no |")
            continue
        seconds = r.get("fine-tune s")
        lines.append(
            f"| {r['format']} | {share(r['post-training every layer: agreement'])} | "
            f"{share(r['tuned every layer: agreement'])} | {'' if seconds is None else f'{seconds / 60:.1f} min'} | "
            f"{r['written']} | {floated(r)} | {share(r['check agreement'])} | "
            f"{share(r['accuracy int8'])} / {share(r['accuracy fp32'])} | {'yes' if r['check passed'] else '**no**'} |"
        )
    rows = results["rows"]
    note = (
        f"EfficientNet-Lite0 fine-tuned on {results.get('per_class')} Fashion-MNIST images a class (3 epochs); "
        f"agreement with fp32 on the export's {rows[0].get('search inputs')} search inputs, the check on "
        f"{rows[0].get('check inputs')} other validation inputs."
    )
    return "\n".join([*lines, "", f"{note} {provenance(results)}"])
