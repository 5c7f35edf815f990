"""Which device and which mixed precision: bf16 on CPUs with AMX/AVX-512-BF16 and on GPUs that have it."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import torch

from deepcat.errors import DeepcatError

__all__ = ["amp_dtype", "autocast", "native_bf16", "pick_device"]


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeepcatError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    return device


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
