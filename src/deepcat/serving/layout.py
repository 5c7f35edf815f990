"""How a server spreads one model over the machine's cores, chosen at start from the cores it may use and the
measured cost of a batch, so that the layout that suits one CPU is not forced on another.

- While the server holds at most one input per core, its batches run on a session with one thread per core: a
  lone request uses every core, as a plain per-request server's does. That session's threads spin for
  `runtimes.SPIN_US` after a run, long enough for a lone client's next request. Its decoding stays on one core:
  ONNX Runtime's other thread spins on the other, and a second decoding thread measured slower.
- Under load, up to `workers` batches run at once on one-thread sessions, one more batch than cores so that one
  decodes its inputs while the others are inside ONNX Runtime (one batch at a time on every core oversubscribes
  them).
- The model is timed at batch 1, 2, 4, ... LARGEST on one thread (ROUNDS turns over the sizes), and `max_batch` is the
  largest size whose input costs at most NEAR more than the cheapest, among batches lasting at most MAX_BATCH_S (the
  first input of a batch waits for its last). A larger batch that costs the same in the model is chosen, since it
  also shares the server's own costs per batch (thread hops, stacking, the answers); one that costs more loses.
  NEAR is about the timing's own noise.

The trials behind each of these, with their figures, are in docs/design-notes.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LARGEST",
    "LARGEST_GPU",
    "MAX_BATCH_S",
    "NEAR",
    "ROUNDS",
    "Layout",
    "batch_costs",
    "choose_layout",
    "usable_cores",
]

LARGEST = 16  # the largest batch tried on a CPU
LARGEST_GPU = 64  # ... and on a GPU
MAX_BATCH_S = 0.05  # a batch never lasts longer than this on one thread: its first input waits for its last
ROUNDS = 5  # turns over every batch size when timing them
# A larger batch is chosen while its cost per input is within this share of the cheapest: a size's best of ROUNDS
# moved up to 3% between starts, and at 10% a batch that answered 4-6% fewer requests/s got in.
NEAR = 0.03


@dataclass(frozen=True)
class Layout:
    cores: int  # threads of the session a lone batch runs on
    workers: int  # batches running at once under load, each on one thread
    max_batch: int  # most inputs in one batch
    seconds_per_input: dict[int, float]  # the measured cost at each batch size tried (empty: not measured)
    device: str = "cpu"  # where the model runs: cpu or cuda


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def batch_costs(
    infer: Callable[[np.ndarray], Any], shape: tuple[int, ...], largest: int = LARGEST, rounds: int = ROUNDS
) -> dict[int, float]:
    """Seconds per input at batch 1, 2, 4, ... `largest`, stopping after the first batch that lasts over
    MAX_BATCH_S: each size's best of `rounds` runs, the sizes taking turns, so that a slow spell of a shared
    machine falls on all of them rather than on one size (docs/design-notes.md, "Timing batch sizes in turns")."""
    batches: list[np.ndarray] = []
    size = 1
    while size <= largest:
        batch = np.zeros((size, *shape), np.float32)
        infer(batch)  # warm-up
        started = time.perf_counter()
        infer(batch)
        batches.append(batch)
        if time.perf_counter() - started > MAX_BATCH_S:
            break
        size *= 2
    best = {len(batch): math.inf for batch in batches}
    for _ in range(rounds):
        for batch in batches:
            started = time.perf_counter()
            infer(batch)
            best[len(batch)] = min(best[len(batch)], time.perf_counter() - started)
    return {size: seconds / size for size, seconds in best.items()}


def choose_layout(
    infer_one_thread: Callable[[np.ndarray], Any],
    shape: tuple[int, ...],
    *,
    cores: int,
    workers: int = 0,
    max_batch: int = 0,
    device: str = "cpu",
) -> Layout:
    """The layout for `cores` and a model on `device` (`infer_one_thread`: the model on one CPU thread, or on the
    GPU); `workers` or `max_batch` given (not 0) are kept, the others chosen."""
    costs: dict[int, float] = {}
    if max_batch <= 0:
        costs = batch_costs(infer_one_thread, shape, LARGEST_GPU if device == "cuda" else LARGEST)
        short = [size for size, cost in costs.items() if size == 1 or cost * size <= MAX_BATCH_S]
        cheapest = min(costs[size] for size in short)
        max_batch = max(size for size in short if costs[size] <= cheapest * (1 + NEAR))
    if workers <= 0:
        workers = cores if device == "cuda" else cores + 1
    return Layout(cores=cores, workers=workers, max_batch=max_batch, seconds_per_input=costs, device=device)
