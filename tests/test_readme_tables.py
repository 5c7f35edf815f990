"""Every result table in README.md is what its results file renders (`benchmarks/readme_tables.py`): a figure
edited by hand, or a results file rewritten without regenerating the README, fails here."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_are_what_their_results_files_say():
    tables = load_tables()
    readme = (ROOT / "README.md").read_text()
    assert tables.render(readme) == readme, "run: python benchmarks/readme_tables.py"


def test_a_figure_edited_by_hand_is_caught():
    tables = load_tables()
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- results:serve -->")
    edited = readme[:start] + readme[start:].replace("/s, p50", "1/s, p50", 1)
    assert edited != readme and tables.render(edited) != edited
