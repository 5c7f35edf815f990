"""The layers import one way, as the table below says (and docs/architecture.md draws): every form of import is
read (top-level, inside functions, `from deepcat.pkg import module`, relative, type-only); no module takes part in
an import circle; only evaluation/finish.py runs the report, Grad-CAM and label-error code; the torch-free paths
stay torch-free."""

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "deepcat"

# Each part of deepcat (a package, or a module at the top) -> the parts it may import. "__init__" is the package's
# lazy front door (`deepcat.train` and the rest load `api` on first use).
ALLOWED = {
    "__init__": {"api", "config", "errors", "version"},
    "__main__": {"cli"},
    "cli": {"api", "config", "errors", "version"},
    "api": {
        "config",
        "data",
        "errors",
        "evaluation",
        "exporting",
        "inference",
        "run_folder",
        "serving",
        "teach",
        "training",
        "tuning",
    },
    "tuning": {"config", "data", "errors", "training"},
    "training": {
        "config",
        "data",
        "device",
        "errors",
        "evaluation",
        "inference",
        "inputs",
        "models",
        "progress",
        "registry",
        "run_folder",
        "run_meta",
    },
    "evaluation": {"data", "device", "errors", "inference", "inputs", "models", "progress", "run_folder", "run_meta"},
    "exporting": {"errors", "inference", "inputs", "registry", "run_folder", "run_meta", "version"},
    "serving": {"errors", "inference", "inputs", "run_folder", "run_meta", "teach"},
    # labelling a folder (the labels' CSV, what to show next) and a first model: features cached on disk, a head
    # refit per label, the same head as a run folder (`train --quick`)
    "teach": {
        "config",
        "data",
        "errors",
        "inference",
        "inputs",
        "models",
        "progress",
        "registry",
        "run_folder",
        "run_meta",
        "training",
    },
    "inference": {"device", "errors", "inputs", "models", "progress", "registry", "run_folder", "run_meta"},
    "run_folder": {"data", "errors", "inputs", "models", "run_meta"},
    "run_meta": {"errors", "inputs"},  # model.json and the export metadata, typed: below every reader
    "models": {"errors", "inputs", "registry", "run_meta"},
    "data": {"errors", "inputs", "progress", "registry"},
    "inputs": {"errors", "registry"},
    "config": {"errors"},
    "registry": {"errors"},
    "device": {"errors"},
    "errors": set(),
    "version": set(),
    "progress": set(),
    # the conformance kit for kinds, models and formats written elsewhere: it reads the core; the core never reads it
    "testing": {"errors", "exporting", "inference", "inputs", "models", "registry", "run_folder"},
    # labelling with the model's help: what to label next, bulk acceptance, review lists (numpy in and out)
}
# Named exceptions, each with its reason: (importing file, part imported).
EXCEPTIONS = {
    ("serving/model_file.py", "exporting"): "a run without an ONNX file is exported in a child process; the "
    "server process never imports it (test_serving checks it has no torch)",
}
# The fronts may name (for type annotations only) the result types of the parts the API calls.
TYPE_ONLY = {"cli": ALLOWED["api"]}
JUDGING = ("deepcat.evaluation.report", "deepcat.evaluation.explain", "deepcat.evaluation.label_errors")
FRONTS = (
    "api/",
    "cli/",
    "evaluation/finish.py",
    "evaluation/report.py",
    "evaluation/explain.py",
    "evaluation/label_errors.py",
)


@dataclass(frozen=True)
class Import:
    target: str  # the deepcat module imported (a module when `from pkg import module` names one)
    line: int
    type_only: bool  # inside `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def imports(source: str, module: str, is_package: bool = False, modules=MODULES) -> list[Import]:
    """Every deepcat import in `source` (the text of `module`): plain, from, relative, in functions, type-only."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, type_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in modules else base, node.lineno, type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), False)
    return [i for i in found if i.target == "deepcat" or i.target.startswith("deepcat.")]


def imports_of(path: Path) -> list[Import]:
    return imports(path.read_text(), module_name(path), path.name == "__init__.py")


def part(module: str) -> str:
    """deepcat.data.sources -> data; deepcat.api -> api; deepcat -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_reader_sees_every_form_of_import():
    source = textwrap.dedent("""
        import deepcat.errors
        from deepcat.data import sources
        from deepcat.data.loader import make_loader
        from . import limits
        from ..inputs import image
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from deepcat.training.loop import fit
        def later():
            from deepcat.models import create
            import numpy
    """)
    modules = {"deepcat.data.sources", "deepcat.serving.limits", "deepcat.inputs.image", "deepcat.models.create"}
    found = {(i.target, i.type_only) for i in imports(source, "deepcat.serving.app", modules=modules)}
    assert found == {
        ("deepcat.errors", False),
        ("deepcat.data.sources", False),
        ("deepcat.data.loader", False),
        ("deepcat.serving.limits", False),
        ("deepcat.inputs.image", False),
        ("deepcat.training.loop", True),
        ("deepcat.models.create", False),
    }


def test_every_import_follows_the_table():
    assert set(ALLOWED) >= {part(m) for m in MODULES}, "a new part of deepcat needs its row in ALLOWED"
    offenders = []
    for module, path in MODULES.items():
        rel, me = path.relative_to(SRC).as_posix(), part(module)
        for imp in imports_of(path):
            them = part(imp.target)
            if them == me or them in ALLOWED[me] or (rel, them) in EXCEPTIONS:
                continue
            if imp.type_only and them in TYPE_ONLY.get(me, ()):
                continue
            offenders.append(f"{rel}:{imp.line} imports {imp.target} ({me} -> {them} is not in the table)")
    assert offenders == []


def test_the_table_has_no_circles():
    seen: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"a circle: {' -> '.join(trail[trail.index(name) :] + (name,))}"
        if seen.get(name):
            return
        for other in ALLOWED[name]:
            visit(other, trail + (name,))
        seen[name] = 1

    for name in ALLOWED:
        visit(name, ())


def test_no_module_takes_part_in_an_import_circle():
    """Module by module, lazy imports included; a type-only import runs nothing and a submodule reading its own
    package's door (`from deepcat.inputs import BadInput` in inputs/image.py) is how Python packages work."""
    graph = {
        m: {
            i.target
            for i in imports_of(p)
            if not i.type_only
            and i.target in MODULES
            and i.target != m
            and not (MODULES[i.target].name == "__init__.py" and m.startswith(i.target + "."))
        }
        for m, p in MODULES.items()
    }
    state: dict[str, str] = {}
    circles = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                circles.append(" -> ".join(trail[trail.index(n) :] + [n]))
            elif n not in state:
                visit(n, trail + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_only_finish_imports_the_report_gradcam_and_label_errors():
    offenders = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(FRONTS):
            continue
        bad = {
            i.target
            for i in imports_of(path)
            if i.target.startswith(JUDGING) or i.target == "deepcat.evaluation.finish"
        }
        if bad:
            offenders[rel] = sorted(bad)
    assert offenders == {}


def test_cli_help_and_the_onnx_path_do_not_import_torch():
    code = (
        "import sys, deepcat.cli, deepcat.inference.exported, deepcat.inputs.image, deepcat.serving.app, "
        "deepcat.serving.model_file, deepcat.run_folder; from deepcat.inputs import input_kind; input_kind();"
        "deepcat.cli.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_module_says_what_it_exports():
    """Each module's `__all__` names what it offers the rest of deepcat, and each name exists."""
    import importlib

    missing = []
    for module, path in MODULES.items():
        if path.name == "__main__.py":
            continue
        loaded = importlib.import_module(module)
        if not hasattr(loaded, "__all__"):
            missing.append(module)
        missing += [f"{module}.{name}" for name in getattr(loaded, "__all__", []) if not hasattr(loaded, name)]
    assert missing == []


def test_the_architecture_page_draws_this_table():
    """docs/architecture.md shows the same table, so the map a reader trusts is the one this test enforces."""
    import re

    page = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    drawn = {}
    for part, allowed in re.findall(r"^\| `([a-z_]+)` \| (.+) \|$", page, re.M):
        drawn[part] = set(re.findall(r"`([a-z_]+)`", allowed))
    assert drawn == {part: allowed for part, allowed in ALLOWED.items() if not part.startswith("__")}
