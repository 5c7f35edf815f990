"""One pass over every input: what its kind's `inspect_*` learns (content hash, perceptual hash and thumbnail,
kind-specific traits), or why it could not be read. Two processes, a progress bar."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepcat.inputs import Facts, InputKind

__all__ = ["scan"]


def _facts_chunk(args: tuple[str, str, Any]) -> list[Facts]:
    from deepcat.inputs import input_kind

    kind_name, source, chunk = args
    kind = input_kind(kind_name)
    return [kind.inspect_file(p) for p in chunk] if source == "files" else [kind.inspect_array(a) for a in chunk]


def scan(items: list[str] | np.ndarray, kind: InputKind, *, workers: int = 2, progress: bool = True) -> list[Facts]:
    """Facts for every item, in order, over `workers` processes."""
    from deepcat.progress import progress_bar

    source = "arrays" if isinstance(items, np.ndarray) else "files"
    size = 256
    chunks = [(kind.name, source, items[i : i + size]) for i in range(0, len(items), size)]
    out: list[Facts] = []
    bar = progress_bar(total=len(items), desc="audit", unit="file", enabled=progress, leave=False)
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:  # as DataLoader workers do on Linux
            for part in pool.imap(_facts_chunk, chunks):
                out += part
                bar.update(len(part))
    else:
        for chunk in chunks:
            out += _facts_chunk(chunk)
            bar.update(len(chunk[2]))
    bar.close()
    return out
