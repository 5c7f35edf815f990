"""Memory a request takes goes back to the system when the request ends.

glibc serves a large allocation with its own mapping, unmapped on free, but after the first such free it raises
that threshold (up to 32 MB) and serves the next ones from its heaps, which it keeps. A server decoding a large
image in each of its worker threads then holds every thread's heap at its peak.

Fixing the threshold at MMAP_THRESHOLD keeps resident memory flat. Not lower: below it, the few-MB buffers ONNX
Runtime takes on every run would be mapped, zeroed and unmapped each time, which made requests slower. Fixing it
also fixes the heap's trim threshold at glibc's 128 KB default, so that is raised to TRIM_THRESHOLD: the heap is
not shrunk and grown again on every request. docs/design-notes.md has the figures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "return_large_buffers"]

MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, glibc's malloc.h


def return_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (True), or do nothing where the C library is not glibc
    (False)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
