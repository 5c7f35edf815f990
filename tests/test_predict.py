import json

from deepcat import load
from deepcat.cli import main


def test_pretrained_cat_dog_neither(chelsea_jpg, coffee_jpg):
    clf = load()
    cat, coffee = clf.predict([chelsea_jpg, coffee_jpg])
    assert cat.label == "cat" and cat.probability > 0.8
    assert coffee.label == "neither"
    assert abs(sum(p for _, p in cat.top) - 1) < 1e-4


def test_cli_predict_without_run_reports_bad_images(chelsea_jpg, truncated_jpg, capsys):
    assert main(["predict", str(chelsea_jpg), str(truncated_jpg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["predictions"]
    assert first["label"] == "cat" and first["error"] is None
    assert second["label"] is None and "truncated.jpg" in second["error"]


def test_cli_predict_missing_file_is_one_line(capsys):
    assert main(["predict", "no/such/file.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such file") and "Traceback" not in err


def test_cli_table_shows_the_part_of_each_path_that_differs(chelsea_jpg, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("COLUMNS", "160")
    deep = tmp_path / "home" / "me" / "photos" / "holidays-2026-summer-by-the-sea" / "day-one"
    for name in ("a/cat.jpg", "b/cat.jpg", "a/another-cat-with-a-long-name.jpg"):
        (deep / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(chelsea_jpg, deep / name)
    assert main(["predict", str(deep)]) == 0
    out = capsys.readouterr().out
    assert "a/cat.jpg" in out and "b/cat.jpg" in out and "another-cat-with-a-long-name.jpg" in out
    assert "holidays" not in out  # the shared start of every path is left out


def test_short_names_keep_just_enough_of_each_path():
    from deepcat.cli.tables import short_names

    assert short_names(["/x/a/img.png", "/x/b/img.png", "/x/a/other.png"]) == ["a/img.png", "b/img.png", "other.png"]
    assert short_names(["img.png"]) == ["img.png"]


def tiny_openvino_ir(folder):
    """An untrained two-class smallcnn as an OpenVINO IR (model.openvino.xml beside model.openvino.bin)."""
    import pytest

    pytest.importorskip("openvino")
    import torch

    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx
    from deepcat.exporting.openvino_files import write_openvino
    from deepcat.inputs import input_kind
    from deepcat.inputs.image import Preprocess
    from deepcat.models import create_model

    torch.manual_seed(0)
    model, _ = create_model(name="smallcnn", num_classes=2, image_size=16)
    pre = Preprocess(input_size=16, resize=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    meta = metadata(name="tiny-ir", classes=["ant", "bee"], pre=pre, version="t", source="smallcnn")
    onnx_file = export_onnx(Deployable(model, pre), input_kind("image").example(pre, 2), folder / "m.onnx", meta)
    return write_openvino(onnx_file, folder / "model.openvino.xml", meta)


def test_predict_with_an_openvino_ir_named_by_its_weights(tmp_path, chelsea_jpg, capsys):
    """`deepcat predict RUN/export/model.openvino.bin photos/` runs the IR (not the zero-shot model on the .bin)."""
    xml = tiny_openvino_ir(tmp_path)
    weights = xml.with_suffix(".bin")
    assert main(["predict", str(weights), str(chelsea_jpg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "tiny-ir" and out["predictions"][0]["label"] in ("ant", "bee", "unknown")
    assert load(weights).classes == ["ant", "bee"]


def test_a_bin_without_its_xml_is_refused_in_one_line(tmp_path, chelsea_jpg, capsys):
    weights = tmp_path / "export" / "model.openvino.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"\0" * 64)
    assert main(["predict", str(weights), str(chelsea_jpg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"its graph {weights.with_suffix('.xml')} is not beside it" in err


def test_a_bin_routes_to_openvino_which_names_its_extra_when_missing(tmp_path, monkeypatch):
    import pytest

    from deepcat.errors import DeepcatError
    from deepcat.inference import runtimes
    from deepcat.run_folder import model_source

    (tmp_path / "m.xml").write_text("<net/>")
    (tmp_path / "m.bin").write_bytes(b"\0")
    assert model_source(tmp_path / "m.bin") == "exported"
    assert runtimes.runtime_for(tmp_path / "m.bin").name == "OpenVINO Runtime"

    def missing(module, extra, purpose):
        raise DeepcatError(f"{purpose} needs {module}, not installed here: pip install 'deepcat[{extra}]'")

    monkeypatch.setattr(runtimes, "need", missing)
    with pytest.raises(DeepcatError, match=r"running m\.xml needs openvino, not installed here: pip install"):
        load(tmp_path / "m.bin")
