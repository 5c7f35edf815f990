"""Every result table in README.md and on the docs site is what its results file renders
(`benchmarks/readme_tables.py`): a figure edited by hand, a results file rewritten without regenerating the pages, or
a table whose results file does not name its commit and CPU fails here."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_table_is_what_its_results_file_says():
    tables = load_tables()
    for page in tables.pages():
        text = page.read_text()
        assert tables.render(text, where=str(page)) == text, f"{page}: run python benchmarks/readme_tables.py"


def test_a_figure_edited_by_hand_is_caught():
    tables = load_tables()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    start = page.index("<!-- results:serve -->")
    edited = page[:start] + page[start:].replace("/s, p50", "1/s, p50", 1)
    assert edited != page and tables.render(edited) != edited


def test_a_results_file_without_commit_and_cpu_shows_no_table(tmp_path, monkeypatch):
    tables = load_tables()
    startup = json.loads((tables.RESULTS / "startup.json").read_text())
    del startup["machine"]["commit"]
    (tmp_path / "startup.json").write_text(json.dumps(startup))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    with pytest.raises(SystemExit, match="does not name its commit and CPU flags"):
        tables.render("<!-- results:startup -->\n<!-- /results:startup -->\n", where="page.md")


def test_every_results_file_with_its_provenance_is_shown_somewhere():
    """A table deleted by mistake is caught: each renderer whose results file names its commit and CPU has a
    marked place in the README or on the site (the others wait for their benchmark to be rerun)."""
    tables = load_tables()
    text = "".join(page.read_text() for page in tables.pages())
    for name, renderer in tables.RENDERERS.items():
        results = json.loads((tables.RESULTS / f"{tables.SOURCES.get(name, name)}.json").read_text())
        try:
            renderer(results)
        except tables.NoProvenance:
            continue
        assert f"<!-- results:{name} -->" in text, name
