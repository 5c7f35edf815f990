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
