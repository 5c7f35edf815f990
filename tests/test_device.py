"""The CPU's memory: activations freed after one batch are reused by the next, not mapped and faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

SECOND_PASS_FAULTS = """
import resource, torch
{setup}
conv = torch.nn.Conv2d(3, 32, 3, padding=1)
x = torch.randn(16, 3, 224, 224)  # a 100 MB activation: past glibc's mmap threshold
with torch.no_grad():
    conv(x).relu()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    conv(x).relu()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


PICK_CPU = "from deepcat.device import pick_device; pick_device('cpu')"
LOAD_CLASSIFIER = "import deepcat; deepcat.load()"  # predict through PyTorch: the pretrained cat / dog / neither


def second_pass_faults(setup: str, allocator: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DEEPCAT_MALLOC"}
    if allocator:
        env["DEEPCAT_MALLOC"] = allocator
    out = subprocess.run(
        [sys.executable, "-c", SECOND_PASS_FAULTS.format(setup=setup)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("setup", [PICK_CPU, LOAD_CLASSIFIER], ids=["pick_device", "torch-classifier"])
def test_a_cpu_pass_reuses_the_memory_the_last_one_freed_unless_told_not_to(setup):
    """Once a run picks the CPU, or a PyTorch classifier is loaded to predict, the second pass faults in (almost) no
    page; with DEEPCAT_MALLOC=system, glibc's own behaviour, it faults the 100 MB activation's pages in again
    (about 25,000 of 4 KB)."""
    kept, system = second_pass_faults(setup, None), second_pass_faults(setup, "system")
    assert kept < 1_000 and system >= 20 * (kept + 1)
