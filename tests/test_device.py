"""The CPU's memory: activations freed after one batch are reused by the next, not mapped and faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

PASSES_FAULTS = """
import resource, torch
{setup}
conv = torch.nn.Conv2d(3, 32, 3, padding=1)
x = torch.randn(16, 3, 224, 224)  # 100 MB activations (the conv's, the relu's): past the mmap threshold
with torch.no_grad():
    conv(x).relu()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):
        conv(x).relu()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


PICK_CPU = "from deepcat.device import pick_device; pick_device('cpu')"
LOAD_CLASSIFIER = "import deepcat; deepcat.load()"  # predict through PyTorch: the pretrained cat / dog / neither


def later_passes_faults(setup: str, allocator: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DEEPCAT_MALLOC"}
    if allocator:
        env["DEEPCAT_MALLOC"] = allocator
    out = subprocess.run(
        [sys.executable, "-c", PASSES_FAULTS.format(setup=setup)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("setup", [PICK_CPU, LOAD_CLASSIFIER], ids=["pick_device", "torch-classifier"])
def test_a_cpu_pass_reuses_the_memory_the_last_one_freed_unless_told_not_to(setup):
    """Once a run picks the CPU, or a PyTorch classifier is loaded to predict, six passes after the first fault in
    at most a heap's growth (where a small allocation took a freed block first, 25,088 pages once); with
    DEEPCAT_MALLOC=system, glibc's own behaviour, every pass faults the 100 MB activations in again (about 75,000
    pages of 4 KB each)."""
    kept, system = later_passes_faults(setup, None), later_passes_faults(setup, "system")
    assert 5 * kept < system
