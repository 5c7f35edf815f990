"""The layers import one way: the fronts (api, cli) call the core; only evaluation/finish.py runs the report,
Grad-CAM and label-error code; the torch-free paths stay torch-free."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "deepcat"
JUDGING = ("deepcat.evaluation.report", "deepcat.evaluation.explain", "deepcat.evaluation.label_errors")
FRONTS = ("api.py", "cli/", "evaluation/finish.py", "evaluation/report.py", "evaluation/explain.py",
          "evaluation/label_errors.py")
# (the package's __init__ and __main__ are the fronts' doors)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_finish_imports_the_report_gradcam_and_label_errors():
    offenders = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(FRONTS):
            continue
        bad = {m for m in imports(path) if m.startswith(JUDGING) or m == "deepcat.evaluation.finish"}
        if bad:
            offenders[rel] = sorted(bad)
    assert offenders == {}


def test_the_core_never_imports_the_fronts():
    offenders = {path.relative_to(SRC).as_posix(): sorted(m for m in imports(path)
                                                          if m.startswith(("deepcat.cli", "deepcat.api")))
                 for path in SRC.rglob("*.py") if not path.relative_to(SRC).as_posix().startswith(("cli/", "api.py", "__"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_help_and_the_onnx_path_do_not_import_torch():
    code = ("import sys, deepcat.cli, deepcat.inference.onnx_model, deepcat.inputs.image, deepcat.serving.app, "
            "deepcat.serving.model_file;"
            "deepcat.cli.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
