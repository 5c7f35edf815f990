"""Export round trips: every format written, loaded back and checked against PyTorch on real images."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepcat
from deepcat.cli import main
from deepcat.errors import DeepcatError
from deepcat.export import export
from deepcat.export.check import compare
from deepcat.runtime import load_onnx

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return deepcat.train(data="digits", output=str(out), name="digits", epochs=4, progress=False)


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8", "ort", "torchscript"])
def test_every_format_matches_pytorch(digits_run, fmt):
    result = export(digits_run, format=fmt, quiet=True)
    check = result["check"]
    assert check["passed"] and check["images"] == 288
    if fmt in ("onnx", "torchscript"):
        assert check["max_abs_diff"] <= 1e-4
    else:
        assert check["top1_agreement"] >= 0.99
        assert check["accuracy_pytorch"] - check["accuracy_exported"] <= 0.01
    if fmt != "torchscript":  # the file describes itself: classes and preprocessing in its metadata
        clf = load_onnx(result["path"])
        assert clf.classes == [str(d) for d in range(10)]
        assert (clf.meta["input_size"], clf.meta["resize"]) == (16, 16) and clf.meta["mean"] == [0.5] * 3
        batch = clf.session.get_inputs()[0]
        assert batch.shape[0] != 1 and not isinstance(batch.shape[0], int)  # dynamic batch axis


def test_onnx_and_pytorch_predict_the_same_labels(digits_run):
    path = export(digits_run, format="onnx", quiet=True)["path"]
    images = sorted((ROOT / "examples" / "digits").glob("*.png"))
    torch_side = deepcat.load(digits_run).predict(images, reject=False)  # labels, not the `unknown` rule
    onnx_side = load_onnx(path).predict(images, reject=False)
    assert [p.label for p in torch_side] == [p.label for p in onnx_side] == ["0", "3", "5", "7", "9"]
    assert max(abs(a.probability - b.probability) for a, b in zip(torch_side, onnx_side)) < 1e-4


def test_failed_check_is_an_error():
    labels = np.array([0, 1, 0, 1])
    reference = np.eye(2)[labels].astype(np.float32)
    with pytest.raises(DeepcatError, match="disagrees with PyTorch"):
        compare(reference, reference[:, ::-1], labels, kind="int8")
    with pytest.raises(DeepcatError, match="max \\|diff\\|"):
        compare(reference, reference * 0.999, labels, kind="fp32")


def test_cli_predict_with_onnx_never_imports_torch(digits_run):
    path = export(digits_run, format="onnx", quiet=True)["path"]
    code = ("import sys, runpy; sys.argv = ['deepcat', 'predict', %r, 'examples/digits', '--json', '--no-reject'];"
            "from deepcat.cli import main; rc = main(sys.argv[1:]);"
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)") % path
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    labels = [p["label"] for p in json.loads(done.stdout)["predictions"]]
    assert labels == ["0", "3", "5", "7", "9"]


def test_cli_export_prints_the_check(digits_run, capsys):
    assert main(["export", str(digits_run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 100.00%" in out and "model.onnx" in out
