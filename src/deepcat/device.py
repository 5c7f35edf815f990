"""Which device and which mixed precision: bf16 on CPUs with AMX/AVX-512-BF16 and on GPUs that have it; on a CPU,
freed memory kept for the next batch."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Any, cast

import torch

from deepcat.errors import DeepcatError

__all__ = ["KEEP_MEMORY_ENV", "amp_dtype", "autocast", "keep_freed_memory", "native_bf16", "pick_device"]

KEEP_MEMORY_ENV = "DEEPCAT_MALLOC"  # "system": leave the C allocator as it is
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_ABOVE = 2**31 - 1  # free memory at the heap's top past 2 GB still goes back to the system


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The device for `name` (auto: the local GPU if any); picking the CPU also keeps freed memory for the next
    batch (`keep_freed_memory`)."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeepcatError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    if device.type == "cpu":
        keep_freed_memory()
    return device


def keep_freed_memory() -> bool:
    """On Linux with glibc, serve large allocations from the heap and keep what is freed, as jemalloc and tcmalloc
    do (PyTorch's CPU performance guide recommends them). A network's activations at a batch of photos are tens of
    MB each; glibc maps every block that large afresh and unmaps it when freed, so each layer of each batch faults
    its pages in again, and a 224-px EfficientNet spent half its time in the kernel (benchmarks/cpu_memory.py). The
    cost: a process holds on to its peak memory. Set DEEPCAT_MALLOC=system to leave the allocator as it is.
    Returns whether the setting applies."""
    if sys.platform != "linux" or os.environ.get(KEEP_MEMORY_ENV) == "system":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, for one)
        return False
    return bool(mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE) == 1)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` (auto|bf16|fp16|off) on `device`, or None for fp32."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise DeepcatError("amp fp16 needs a GPU; on a CPU use --amp bf16 or --amp off")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if native_bf16(device) else (torch.float16 if device.type == "cuda" else None)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (CPUs: AVX512-BF16 or AMX); `--amp auto` uses bf16 only then, since
    emulated bf16 runs about 5x slower than fp32. The one place the CPU's kind changes training's arithmetic: tests
    force either answer here (`pytest --bf16 on|off`)."""
    if device.type == "cuda":
        return cast(bool, torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
