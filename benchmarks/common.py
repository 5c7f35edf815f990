"""Helpers shared by the benchmarks: a results table on stdout and a JSON file beside it."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

# the CPU features that change what deepcat and its baselines compute or how fast: bf16 autocast, int8 kernels
BEHAVIOUR_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu() -> dict:
    """The CPU's model and the flags of BEHAVIOUR_FLAGS it has, from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or "unknown", set()
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"model": model, "flags": [f for f in BEHAVIOUR_FLAGS if f in flags]}


def commit() -> dict:
    """The git commit the benchmark ran on, and whether the tree had changes beyond it (results files aside)."""
    root = Path(__file__).parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--", ".", ":!benchmarks/results")),
    }


def machine() -> dict:
    """Provenance for a results file: commit, CPU, cores, threads, versions, date."""
    import torch

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        **commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onnxruntime": version("onnxruntime"),
        "timm": version("timm"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def merged(out: str | Path, new: list[dict], rerun) -> list[dict]:
    """The rows of a benchmark run in parts: the earlier rows of `out` that `rerun` (a row -> bool) does not say
    this part replaces, then `new`; each row keeps the commit that measured it. Rows measured on another CPU (model
    or flags) are dropped, with a line saying so: times from two CPUs are not one table."""
    here = machine()
    rows: list[dict] = []
    if Path(out).is_file():
        earlier = json.loads(Path(out).read_text())
        kept = [r for r in earlier["rows"] if not rerun(r)]
        if earlier["machine"].get("cpu") != here["cpu"]:
            other = earlier["machine"].get("cpu")
            print(f"{out}: its {len(kept)} earlier rows are from another CPU ({other}): dropped")
        else:
            rows = [{**r, "commit": r.get("commit", earlier["machine"]["commit"])} for r in kept]
    return rows + [{**r, "commit": here["commit"]} for r in new]


def report(name: str, rows: list[dict], out: str | Path, *, hide: tuple[str, ...] = (), **extra) -> None:
    """Print `rows` as a table (but the columns in `hide`) and write them, with the machine, to JSON."""
    columns = [c for c in dict.fromkeys(k for row in rows for k in row) if c not in hide]
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for r in rows:
        print(" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"benchmark": name, "machine": machine(), "rows": rows, **extra}, indent=2))
    print(f"\nwrote {out}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return "" if value is None else str(value)
