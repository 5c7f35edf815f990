"""Give a thread back its own signal stack after OpenVINO's CPU plugin replaced it.

The plugin, when a `Core` first loads it, maps a signal stack for the calling thread (big enough for AMX register
state) and unmaps it when the `Core` is destroyed, resetting the stack only if that happens on the same thread.
Python frees a `Core` wherever the garbage collector runs, often another thread; the first thread is then left with a
stack that no longer exists, and the next signal it must handle on that stack (Python's handlers ask for it: a
DataLoader's SIGCHLD, Ctrl-C) kills the process with SIGSEGV. deepcat's test run died that way, far from the export
that loaded the plugin. Python's own signal stack (faulthandler's) is at least as large, so putting it back loses
nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["current_signal_stack", "own_signal_stack"]


class _Stack(ctypes.Structure):  # stack_t of <signal.h>
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack(new: _Stack | None) -> _Stack:
    old = _Stack()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.sigaltstack(ctypes.byref(new) if new is not None else None, ctypes.byref(old)) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack failed")
    return old


def current_signal_stack() -> tuple[int, int] | None:
    """This thread's alternate signal stack as (address, size); None where it has none or the OS has no such thing."""
    if not sys.platform.startswith("linux"):
        return None
    stack = _sigaltstack(None)
    return (stack.ss_sp, stack.ss_size) if stack.ss_sp else None


@contextmanager
def own_signal_stack() -> Iterator[None]:
    """Run the body (which may load OpenVINO's CPU plugin), then restore the calling thread's alternate signal stack
    if the body replaced it. A no-op off Linux."""
    if not sys.platform.startswith("linux"):
        yield
        return
    before = _sigaltstack(None)
    try:
        yield
    finally:
        after = _sigaltstack(None)
        if (after.ss_sp, after.ss_size, after.ss_flags) != (before.ss_sp, before.ss_size, before.ss_flags):
            _sigaltstack(before)
