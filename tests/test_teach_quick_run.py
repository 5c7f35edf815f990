"""`deepcat train --quick`: a pretrained backbone with the quick head in its classifier, written as an ordinary run
folder that `evaluate` and `export` take, its training features left in the cache for the next quick run."""

import csv
from pathlib import Path

import pytest
import yaml

import deepcat
from deepcat.errors import DeepcatError
from deepcat.teach.features import FeatureCache


@pytest.mark.slow
def test_a_quick_run_is_an_ordinary_run(digits_folder, tmp_path):
    run = deepcat.train(
        data=str(digits_folder), quick=True, output=str(tmp_path), name="q", audit=False, progress=False
    )
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["quick"] and cfg["model"] == "tf_efficientnet_lite0" and cfg["pretrained"] and cfg["epochs"] == 1
    assert deepcat.evaluate(run, progress=False).accuracy > 0.8  # 3 classes: chance is 0.33
    exported = deepcat.export(run, format="onnx", progress=False)  # checked against PyTorch, or it raises
    assert Path(exported.path).is_file()
    train = [row["item"] for row in csv.DictReader((run / "split.csv").open()) if row["split"] == "train"]
    assert FeatureCache(digits_folder).cached(train).all()  # the next quick run on this DATA embeds nothing
    assert (digits_folder / ".deepcat" / "features" / "tf_efficientnet_lite0" / "index.sqlite").is_file()


def test_a_quick_run_refuses_what_it_cannot_honour(digits_folder, tmp_path):
    with pytest.raises(DeepcatError, match="neither --no-pretrained nor --weights"):
        deepcat.train(data=str(digits_folder), quick=True, pretrained=False, output=str(tmp_path), progress=False)
    with pytest.raises(DeepcatError, match="neither resume nor callbacks"):
        deepcat.train(data=str(digits_folder), quick=True, callbacks=[object()], output=str(tmp_path), progress=False)
