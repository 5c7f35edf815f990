"""Memory a request takes goes back to the system when the request ends.

glibc serves a large allocation with its own mapping, unmapped on free, but after the first such free it raises
that threshold (up to 32 MB) and serves the next ones from its heaps, which it keeps. A server decoding a large
image in each of its worker threads then holds every thread's heap at its peak: measured with 32 clients sending
a 6000x6000 PNG, resident memory went from 230 MB to 3.4 GB and stayed there; with the threshold fixed at 1 MB,
it stayed at 193 MB. Images, batches and ONNX Runtime's buffers are far larger than 1 MB, and mapping them costs
microseconds against milliseconds of work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD", "return_large_buffers"]

MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, glibc's malloc.h


def return_large_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process (True), or do nothing where the C library is not glibc (False)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
