"""Which int8 file an export writes: every layer post-training where it keeps the model's answers, quantisation-aware
fine-tuning where it does not, float segments last; on real digits, with a model built to defeat post-training int8."""

import hashlib
import json
import shutil

import pytest
import torch

import deepcat
from deepcat import export
from deepcat.run_folder import load_model, save_weights


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")  # fp32 training: the same model on every CPU
    return deepcat.train(data="digits", output=str(out), name="digits", epochs=4, amp="off", progress=False)


def with_outlier_channel(run, where, scale: float = 200.0, trust: bool = True):
    """A copy of `run` whose first block's channel 0 is `scale` times larger and the next layer reads it `scale`
    times smaller: the same function in float (ReLU keeps a positive scale), but one int8 step of that activation
    is wider than the other channels' whole range. `trust=False`: the copy has no `unknown` threshold and no
    prediction sets, so only the answers are judged."""
    copy = where / f"outlier{scale:g}{'' if trust else '-answers'}"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    model, _ = load_model(copy)
    with torch.no_grad():
        norm, next_conv = model.features[0][1], model.features[1][0]
        norm.weight[0] *= scale
        norm.bias[0] *= scale
        next_conv.weight[:, 0] /= scale
    save_weights(model, copy / "best.safetensors")
    if not trust:
        meta = json.loads((copy / "model.json").read_text())
        meta["calibration"] |= {"threshold": None, "conformal": None}
        (copy / "model.json").write_text(json.dumps(meta))
    return copy


def test_post_training_int8_that_keeps_the_answers_is_written_alone(digits_run):
    result = export(digits_run, format="onnx-int8", qat="auto", progress=False)
    assert result.check.passed and result.precision["weights"] == "post-training"
    assert result.precision["float_segments"] == 0 and "tried" not in result.precision


def test_a_model_post_training_int8_breaks_gets_a_quantisation_aware_file(digits_run, tmp_path):
    """Every layer post-training: 92% agreement on the search's inputs (misses 97%); the tuned file keeps the
    answers with every layer int8, and passes the export check against the model before tuning."""
    outlier = with_outlier_channel(digits_run, tmp_path, trust=False)
    fp32 = export(outlier, format="onnx", progress=False)
    before = hashlib.sha256(open(fp32.path, "rb").read()).hexdigest()
    result = export(outlier, format="onnx-int8", qat="auto", progress=False)
    tried = result.precision["tried"]
    assert tried["post-training every layer"]["search_kept"] is False
    assert tried["post-training every layer"]["search_agreement"] < 0.97
    tuned = tried["quantisation-aware every layer"]
    assert tuned["search_kept"] and tuned["loss_last"] < tuned["loss_first"] / 10
    assert result.precision["weights"] == "quantisation-aware" and result.precision["float_segments"] == 0
    assert result.check.passed and result.check.accuracy_ratio >= 0.99 and result.check.top1_agreement >= 0.97
    check_file = json.loads(open(result.path + ".check.json").read())  # the check file says how it was made
    assert check_file["precision"]["weights"] == "quantisation-aware"
    # the tuned network's own fp32 file never replaces the model's
    assert hashlib.sha256(open(fp32.path, "rb").read()).hexdigest() == before
    assert not list((outlier / "export").glob(".qat-*"))


def test_float_segments_are_the_last_resort(digits_run, tmp_path):
    """One channel 1,000 times the others': the fine-tune cannot bring them back within 300 batches, so leading
    segments stay float, on the model itself."""
    outlier = with_outlier_channel(digits_run, tmp_path, scale=1000.0, trust=False)
    result = export(outlier, format="onnx-int8", qat="auto", progress=False)
    tried = result.precision["tried"]
    assert list(tried) == ["post-training every layer", "quantisation-aware every layer"]
    assert not tried["quantisation-aware every layer"]["search_kept"]
    assert result.precision["weights"] == "post-training" and result.precision["float_segments"] >= 1
    assert result.check.passed


def test_never_is_the_default_and_a_wrong_choice_is_refused(digits_run, tmp_path):
    """By default no fine-tune is tried (on a fine-tuned Lite0 it did not yet win): a model post-training int8
    breaks gets float segments at once."""
    outlier = with_outlier_channel(digits_run, tmp_path, scale=1000.0, trust=False)
    default = export(outlier, format="onnx-int8", progress=False)
    assert default.precision["weights"] == "post-training" and "tried" not in default.precision
    assert default.precision["float_segments"] >= 1 and default.check.passed
    with pytest.raises(ValueError, match="qat must be one of"):
        export(digits_run, format="onnx-int8", output=tmp_path / "x.onnx", qat="sometimes", progress=False)


def test_a_fine_tune_that_fails_falls_back_to_float_segments(digits_run, tmp_path, monkeypatch):
    def cannot_capture(*_, **__):
        raise RuntimeError("this network cannot be captured")

    monkeypatch.setattr("deepcat.exporting.qat.quantisation_aware", cannot_capture)
    outlier = with_outlier_channel(digits_run, tmp_path, scale=1000.0, trust=False)
    result = export(outlier, format="onnx-int8", qat="auto", progress=False)
    assert "cannot be captured" in result.precision["tried"]["quantisation-aware every layer"]["failed"]
    assert result.precision["float_segments"] >= 1 and result.check.passed
