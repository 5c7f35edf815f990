"""What every table ends with: the commit, CPU and date that produced its results file; and the
`median [min, max]` cell several tables share."""

from __future__ import annotations


class NoProvenance(Exception):
    """A results file that does not say which commit and CPU produced it: its table is not shown."""


def provenance(results: dict) -> str:
    """One line: which commit, CPU (model and the flags that change behaviour), cores and date produced a file."""
    machine = results["machine"]
    if not machine.get("commit") or not (machine.get("cpu") or {}).get("flags"):
        raise NoProvenance(
            f"benchmarks/results/{results['benchmark']}.json does not name its commit and CPU flags: rerun "
            f"`python benchmarks/{results['benchmark']}.py` before showing its table"
        )
    cpu = machine["cpu"]
    commit = machine["commit"][:10] + (" with local changes" if machine.get("dirty") else "")
    return (
        f"Measured by `benchmarks/{results['benchmark']}.py` at commit {commit} on {machine.get('date', '?')[:10]}: "
        f"{cpu.get('model', '?')} ({', '.join(cpu['flags'])}), "
        f"{machine.get('usable_cores', machine.get('cpu_count'))} cores."
    )


def spread(values: list[float] | None, form: str, unit: str = "") -> str:
    """A [median, min, max] triple as `median [min, max]`; `never` when a contestant never got there."""
    if not values:
        return "never"
    middle, low, high = (format(v, form) + unit for v in values)
    return middle if low == high else f"{middle} [{low}, {high}]"
