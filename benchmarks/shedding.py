"""`deepcat serve`'s load shedding at the edges, in one run: a burst on a rested server, and sustained load past
capacity (issue 54).

The server is what a plain `deepcat serve` runs with no run folder: the zero-shot ImageNet Lite0 (cat / dog /
neither) in fp32, pinned to this machine's cores, at its default wait budget (`--max-queue-ms 1000`) and at 250 ms.
For each budget, in turn:

- a burst of 96 requests, each on its own connection, on a server that has measured its rate and then rested
  2.5 s: every one should be answered (the burst allowance admits up to `--queue-depth` 100 whatever the wait);
- closed-loop clients that honour `Retry-After` (1 s), one keep-alive connection each (`load.closed_loop`), at 8,
  32, 64 and 128 clients, each level `--seconds` long after `--warmup` seconds left out: the first second of a
  level is a burst, admitted up to the depth; what the budget bounds is the queue that stands after it. The levels
  take `--rounds` turns, each round in another order, and each level's figures pool its turns: a shared machine's
  speed drifts by 10-20% over minutes, which measured one after another made 32 clients look 14% slower than 8.

Done when, at 64 and 128 clients, the answered requests' p99 is within the budget plus one batch's service time,
and the answered rate is at least 90% of the best level's. One batch's service time is the layout's largest batch
on one worker core: `max_batch * workers / best rate` (the workers run batches side by side, one core each).
Each figure has its 95% interval from the run itself, by bootstrap: the p99 over the level's answered latencies,
the share of the best rate over its whole seconds' answered counts (each level's resampled on its own). A target
the point figure misses but its interval reaches is a tie within the machine's noise, and says so.

    python benchmarks/shedding.py          # ~9 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402
from load import closed_loop, post, request_bytes  # noqa: E402
from serve import free_port, photo, start  # noqa: E402

BUDGETS_MS = (1000, 250)
LEVELS = (8, 32, 64, 128)
SUSTAINED = (64, 128)  # the levels the targets are judged at
BURST = 96
DRAWS = 2000  # bootstrap resamples for each 95% interval
REST_S = 2.5  # longer than the burst window (`admission.BURST_WINDOW_S`): the server is rested


async def burst(url: str, body: bytes, count: int) -> list[int]:
    """`count` requests at once, each on a connection of its own: their statuses."""
    host, port = url.removeprefix("http://").split(":")
    request = request_bytes(url, body)

    async def one() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            status, _, _ = await post(reader, writer, request)
            return status
        finally:
            writer.close()

    return list(await asyncio.gather(*(one() for _ in range(count))))


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.99 * (len(ordered) - 1))]


def per_second(finished: list[float], seconds: float) -> np.ndarray:
    """Answered requests in each whole second of a level's measured span."""
    return np.histogram(finished, bins=int(seconds), range=(0, int(seconds)))[0].astype(float)


def interval(draws: np.ndarray) -> list[float]:
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def bootstrap_p99(latencies: list[float], rng: np.random.Generator) -> list[float]:
    """The 95% interval of the p99 (ms), resampling the answered latencies."""
    values = 1000 * np.asarray(latencies)
    draws = [p99(list(rng.choice(values, len(values)))) for _ in range(DRAWS)]
    return interval(np.asarray(draws))


def bootstrap_share(level: np.ndarray, best: np.ndarray, rng: np.random.Generator) -> list[float]:
    """The 95% interval of a level's answered rate over the best level's, resampling each one's seconds."""
    ratio = [rng.choice(level, len(level)).mean() / rng.choice(best, len(best)).mean() for _ in range(DRAWS)]
    return interval(np.asarray(ratio))


def measure(budget_ms: int, body: bytes, args: argparse.Namespace) -> list[dict]:
    from deepcat.serving.model_file import serving_model

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "deepcat", "serve", str(serving_model(None)), "--device", "cpu"]
    server = start([*command, "--port", str(port), "--max-queue-ms", str(budget_ms)], url, os.sched_getaffinity(0))
    rng = np.random.default_rng(budget_ms)
    try:
        layout = httpx.get(f"{url}/v1/model").json()["layout"]
        asyncio.run(closed_loop(url, body, clients=1, seconds=2))  # warm-up: the server measures its rate
        time.sleep(REST_S)
        statuses = asyncio.run(burst(url, body, BURST))
        rows = [
            {
                "budget_ms": budget_ms,
                "load": f"burst of {BURST} after {REST_S} s idle",
                "answered": statuses.count(200),
                "refused": statuses.count(503),
            }
        ]
        runs: dict[int, list[dict]] = {clients: [] for clients in LEVELS}
        for round_ in range(args.rounds):  # the levels take turns, each round in another order: drift is shared
            for clients in LEVELS[round_ % len(LEVELS) :] + LEVELS[: round_ % len(LEVELS)]:
                time.sleep(REST_S)
                run = asyncio.run(closed_loop(url, body, clients=clients, seconds=args.seconds, warmup_s=args.warmup))
                runs[clients].append(run)
        for clients, level in runs.items():
            latencies = [x for run in level for x in run["latencies"]]
            seconds = np.concatenate([per_second(run["finished"], args.seconds) for run in level])
            rows.append(
                {
                    "budget_ms": budget_ms,
                    "load": f"{clients} clients",
                    "clients": clients,
                    "answered": len(latencies),
                    "refused": sum(run["refused"] for run in level),
                    "answered_per_s": float(seconds.mean()),
                    "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
                    "p99_ms": 1000 * p99(latencies) if latencies else None,
                    "per_second": seconds.tolist(),
                    "p99_interval_ms": bootstrap_p99(latencies, rng) if latencies else None,
                }
            )
    finally:
        server.kill()
        server.wait()
    best_row = max((r for r in rows if "clients" in r), key=lambda r: r["answered_per_s"])
    best = max(best_row["answered_per_s"], 1e-9)
    batch_ms = 1000 * layout["max_batch"] * layout["workers"] / best
    for r in rows:
        r["layout"] = f"{layout['workers']} workers x batch {layout['max_batch']}"
        if r.get("clients") in SUSTAINED:
            r["bound_ms"] = budget_ms + batch_ms
            r["share_of_best"] = r["answered_per_s"] / best
            level, best_seconds = np.asarray(r["per_second"]), np.asarray(best_row["per_second"])
            r["share_interval"] = bootstrap_share(level, best_seconds, rng)
            answered = r["p99_ms"] is not None
            r["met"] = answered and r["p99_ms"] <= r["bound_ms"] and r["share_of_best"] >= 0.9
            r["met_within_noise"] = (
                answered and r["p99_interval_ms"][0] <= r["bound_ms"] and r["share_interval"][1] >= 0.9
            )
        elif "clients" not in r:
            r["met"] = r["answered"] == BURST
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="how long each level is measured in a round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each level takes, in rotated order")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of each level left out before measuring")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shedding.json"))
    args = parser.parse_args()
    body = photo()
    rows = [row for budget_ms in BUDGETS_MS for row in measure(budget_ms, body, args)]
    report(
        "shedding",
        rows,
        args.out,
        model="zero-shot ImageNet EfficientNet-Lite0, fp32 (cat / dog / neither)",
        seconds=args.seconds,
        rounds=args.rounds,
        warmup_s=args.warmup,
        all_met=all(r["met"] for r in rows if "met" in r),
        all_met_within_noise=all(r.get("met_within_noise", r["met"]) for r in rows if "met" in r),
    )


if __name__ == "__main__":
    main()
