import json

from deepcat.cli import main
from deepcat import load


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
