"""The result tables of the README and the docs site, written from the results files: each table sits between
`<!-- results:NAME -->` and `<!-- /results:NAME -->` in README.md or a page under docs/ and is rendered from
`benchmarks/results/NAME.json` (or the file `SOURCES` names for it), so no figure is copied by hand. A results file
that does not name its commit and CPU renders no table: rerun its benchmark. `tests/test_readme_tables.py` fails
when a table differs from what its file renders. The renderers live in `renderers/`, a module per page topic.

    python benchmarks/readme_tables.py          # rewrite the tables in README.md and docs/
    python benchmarks/readme_tables.py --check  # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from renderers import serving, sound, training, trust  # noqa: E402
from renderers.provenance import NoProvenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"


RENDERERS: dict[str, Callable[[dict], str]] = {  # results file -> its table, by the page topic it belongs to
    "active": training.active,
    "audit": trust.audit,
    "auto_model": training.auto_model,
    "conformal": trust.conformal,
    "continue_run": training.continue_run,
    "cpu_memory": training.cpu_memory,
    "data": trust.data,
    "drift_fashion-mnist": serving.drift,
    "drift_spoken-digits": serving.drift,
    "qat": serving.qat,
    "gpu": training.gpu,
    "monitor_cost": serving.monitor_cost,
    "finetune": training.finetune,
    "profile_epoch": training.profile_epoch,
    "scale": serving.scale,
    "train_speed": training.train_speed,
    "infer": serving.infer,
    "infer_headline": serving.infer_headline,
    "open_set_digits": trust.open_set,
    "open_set_fashion-mnist": trust.open_set,
    "serve": serving.serve,
    "shedding": serving.shedding,
    "sound": sound.sound,
    "sound_seeds": sound.sound_seeds,
    "startup": serving.startup,
    "teach_head": training.teach_head,
    "tune": training.tune,
    "voices": sound.voices,
}

SOURCES = {"infer_headline": "infer"}  # a table rendered from another name's results file


def render(text: str, *, where: str = "README.md") -> str:
    """`text` with every marked table in it rendered afresh from its results file."""
    for name, renderer in RENDERERS.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(text):
            continue
        results = json.loads((RESULTS / f"{SOURCES.get(name, name)}.json").read_text())
        try:
            table = renderer(results)
        except NoProvenance as e:
            raise SystemExit(f"{where} shows the table {name}, but {e}") from None
        text = pattern.sub(lambda m, table=table: m.group(1) + table + "\n" + m.group(2), text)
    return text


def pages() -> list[Path]:
    """Every file that may hold tables: the README and the docs site's pages."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a table differs from its results file")
    args = parser.parse_args()
    stale = []
    for page in pages():
        current = page.read_text()
        fresh = render(current, where=str(page.relative_to(ROOT)))
        if fresh != current:
            stale.append(page)
            if not args.check:
                page.write_text(fresh)
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"result tables are stale in {names}: run python benchmarks/readme_tables.py", file=sys.stderr)
        sys.exit(1)
    if not args.check:
        print(f"rewrote the tables in {len(stale)} file(s)")


if __name__ == "__main__":
    main()
