"""Predictions for millions of inputs, written as they come: `deepcat predict RUN SOURCE --output preds.csv`.

Rows go to OUTPUT.parts/ in parts of `CHUNK` inputs, each written whole (a temporary name, then renamed), so
memory holds one part, a killed run loses at most the part in hand, and running the command again skips every
input a part (or a finished OUTPUT) already holds. Several processes (torchrun) each predict a contiguous share
of what is left and write their own parts; when all are done, the first joins the parts into OUTPUT (.csv or
.parquet) in the inputs' order, one part in memory at a time.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcat.errors import DeepcatError
from deepcat.inference.answers import InputItem, Prediction

__all__ = ["CHUNK", "FORMATS", "PredictionFile", "Share", "predict_to_file"]

CHUNK = 1024  # inputs per part: its inputs (a shard member's bytes) and rows in memory, seconds of work
FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class Share:
    """This process's place among those splitting the work, and how they wait for each other."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None


@dataclass
class PredictionFile:
    """What `predict(..., output=...)` wrote."""

    path: Path
    predicted: int  # inputs predicted by this process in this call
    skipped: int  # inputs the output already held
    errors: int  # unreadable inputs among those predicted (their row has `error`)
    seconds: float


def columns(top_k: int) -> list[str]:
    tops = [name for k in range(1, top_k + 1) for name in (f"top{k}", f"p{k}")]
    return ["source", "label", "probability", "score", "threshold", *tops, "set", "error"]


def _row(source: str, p: Prediction, top_k: int) -> list[Any]:
    tops: list[Any] = []
    for k in range(top_k):
        tops += list(p.top[k]) if k < len(p.top) else [None, None]
    answer_set = None if p.set is None else "|".join(p.set)
    return [source, p.label, p.probability, p.score, p.threshold, *tops, answer_set, p.error]


def predict_to_file(
    predict: Callable[[list[InputItem]], list[Prediction]],
    names: Sequence[str],
    read: Callable[[int], InputItem],
    output: Path,
    *,
    top_k: int,
    share: Share = Share(),
    progress: bool = False,
) -> PredictionFile:
    """Predict every input `names` lists that `output` does not hold yet (`read(i)` gives input i to `predict`),
    this process's share of them, and join every process's parts into `output` at the end."""
    from deepcat.progress import progress_bar

    started = time.perf_counter()
    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise DeepcatError(f"--output must end in {' or '.join(FORMATS)}; received {output}")
    parts = output.with_name(output.name + ".parts")
    if share.rank == 0:
        parts.mkdir(parents=True, exist_ok=True)
        if output.exists():  # a finished output: its rows are the first part, and new inputs follow
            output.rename(parts / f"-earlier{suffix}")  # sorts first
    share.barrier()
    done = set().union(*(_sources(p) for p in _parts(parts, suffix)))
    pending = [i for i, name in enumerate(names) if name not in done]
    mine = pending[share.rank * len(pending) // share.world_size : (share.rank + 1) * len(pending) // share.world_size]
    errors = 0
    bar = progress_bar(total=len(mine), desc="predict", unit="input", enabled=progress)
    for start in range(0, len(mine), CHUNK):
        chunk = mine[start : start + CHUNK]
        predictions = predict([read(i) for i in chunk])
        errors += sum(p.error is not None for p in predictions)
        rows = [_row(names[i], p, top_k) for i, p in zip(chunk, predictions)]
        # named by its first input's place in the listing: parts sort in input order, across reruns too
        _write(parts / f"{chunk[0]:012d}{suffix}", columns(top_k), rows)
        bar.update(len(chunk))
    bar.close()
    share.barrier()
    if share.rank == 0:
        _join(_parts(parts, suffix), output, columns(top_k))
        shutil.rmtree(parts)
    share.barrier()
    return PredictionFile(output, len(mine), len(names) - len(pending), errors, time.perf_counter() - started)


def _parts(folder: Path, suffix: str) -> list[Path]:
    return sorted(folder.glob(f"*{suffix}"))


def _sources(path: Path) -> set[str]:
    if path.suffix == ".parquet":
        return set(_parquet().read_table(path, columns=["source"]).column("source").to_pylist())
    with path.open(newline="") as f:
        return {row["source"] for row in csv.DictReader(f)}


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa

        table = pa.table({name: [r[k] for r in rows] for k, name in enumerate(header)}, schema=_schema(header))
        _parquet().write_table(table, tmp)
    else:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    tmp.replace(path)


def _join(parts: list[Path], output: Path, header: list[str]) -> None:
    tmp = output.with_name(output.name + ".tmp")
    if output.suffix == ".parquet":
        pq = _parquet()
        with pq.ParquetWriter(tmp, _schema(header)) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part).cast(_schema(header)))
    else:
        with tmp.open("w", newline="") as out:
            out.write(",".join(header) + "\n")
            for part in parts:
                with part.open(newline="") as f:
                    next(f)
                    shutil.copyfileobj(f, out)
    tmp.replace(output)


def _schema(header: list[str]) -> Any:
    import pyarrow as pa

    numbers = {"probability", "score", "threshold"} | {h for h in header if h[0] == "p" and h[1:].isdigit()}
    return pa.schema([(h, pa.float64() if h in numbers else pa.string()) for h in header])


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DeepcatError("writing .parquet needs pyarrow: pip install 'deepcat[parquet]', or write .csv") from None
    return pq
