"""The docs site and the README: the Python snippets the guides include run on the embedded data (as FastAPI tests
its `docs_src/`), the CLI reference holds every verb and flag, the architecture page maps every module, and the
README stays a short front door whose first two commands are what CI runs."""

import importlib.util
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"


def run_snippet(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """Run docs/snippets/NAME as a user would, from a folder that has the repository's examples/."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(SNIPPETS / name), run_name="__main__")
    return capsys.readouterr().out


def test_every_snippet_is_shown_on_a_page():
    included = set()
    for page in DOCS.rglob("*.md"):
        included |= set(re.findall(r'--8<-- "([^"]+)"', page.read_text()))
    snippets = {p.name for p in SNIPPETS.glob("*.py")}
    assert included <= snippets, f"pages include missing snippets: {included - snippets}"
    assert snippets <= included, f"snippets no page shows: {snippets - included}"


@pytest.mark.slow
def test_first_model_snippet(tmp_path, monkeypatch, capsys):
    out = run_snippet("first_model.py", tmp_path, monkeypatch, capsys).splitlines()
    accuracy = float(re.match(r"test accuracy ([\d.]+)%", out[0]).group(1))
    assert accuracy > 80
    rows = [line.split() for line in out[1:-1]]
    assert len(rows) == len(list((ROOT / "examples" / "digits").glob("*.png")))
    right = [row for row in rows if Path(row[0]).stem.removeprefix("digit-") == row[1]]
    assert len(right) >= len(rows) - 1, rows
    assert out[-1] == "7"  # the ONNX file, through ONNX Runtime


def test_cats_and_dogs_snippet(tmp_path, monkeypatch, capsys):
    out = run_snippet("cats_and_dogs.py", tmp_path, monkeypatch, capsys)
    label, probability = out.split()
    assert label == "cat" and float(probability) > 0.5


@pytest.mark.slow
def test_trust_snippet(tmp_path, monkeypatch, capsys):
    out = run_snippet("trust.py", tmp_path, monkeypatch, capsys).splitlines()
    label, probability = out[0].split()
    assert label == "3" and 0 < float(probability) <= 1
    assert "3" in eval(out[1])  # the 90% set holds the true class
    score, threshold = map(float, out[2].split())
    assert score >= threshold  # a digit is no `unknown`
    assert out[3] == "3"  # Grad-CAM explains the predicted class


def test_check_data_snippet(tmp_path, monkeypatch, capsys):
    out = run_snippet("check_data.py", tmp_path, monkeypatch, capsys).splitlines()
    assert out[0].startswith("audit of digits: 1797 images, 10 classes")
    assert Path(out[-1]).name == "audit.json" and (tmp_path / out[-1]).is_file()


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_holds_every_verb_and_flag():
    import argparse

    from deepcat.cli.parser import build_parser

    page = load_hooks().on_page_markdown((DOCS / "reference" / "cli.md").read_text())
    assert "%(" not in page  # argparse's placeholders are expanded, as `--help` prints them
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in verbs.choices.items():
        section = page.split(f"## deepcat {name}\n", 1)[1].split("\n## deepcat ", 1)[0]
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, (name, flag)


def test_the_api_page_documents_every_public_name():
    """Every public function and class of `deepcat` and `deepcat.api` has its section, generated from its
    docstring (whose Args: and Returns: tests/test_api.py requires)."""
    import inspect

    import deepcat
    from deepcat import api

    page = load_hooks().on_page_markdown((DOCS / "reference" / "api.md").read_text())
    shown = {line.rsplit(".", 1)[-1] for line in re.findall(r"^::: (\S+)$", page, re.M)}
    public = [getattr(api, name) for name in dir(api) if not name.startswith("_")]  # what `deepcat.api` re-exports
    public += [getattr(deepcat, name) for name in deepcat.__all__]
    named = {
        obj.__name__
        for obj in public
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("deepcat")
    }
    assert named - shown == set()


def test_the_architecture_page_maps_every_module():
    """One map of the code, and it is whole: every module of src/deepcat is named in its own folder's entry."""
    page = (DOCS / "architecture.md").read_text()
    block = page.split("```\nsrc/deepcat/\n", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    for line in block.splitlines():
        if re.match(r"  \S", line):  # a folder's or a top-level module's entry starts at column 2
            current = line.split()[0]
            entries[current] = line
        else:
            entries[current] += " " + line
    src = ROOT / "src" / "deepcat"
    missing = []
    for path in sorted(src.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        relative = path.relative_to(src)
        folder = f"{relative.parent}/" if relative.parent != Path(".") else path.name
        if folder not in entries or (folder != path.name and path.name not in entries[folder]):
            missing.append(str(relative))
    assert missing == [], f"docs/architecture.md's map does not name, in its folder's entry: {missing}"


def test_the_readme_is_a_short_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert "deepcat train digits" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1] and "'.[test]'" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-e '.[test]'" in ci and ".venv/bin/python -m pytest -q" in ci
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
