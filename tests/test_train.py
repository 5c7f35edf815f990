import json

import pytest
import torch
from safetensors.torch import load_file

import deepcat
from deepcat.cli import main
from deepcat.errors import DeepcatError

FAST = dict(epochs=2, batch_size=32, progress=False)


def test_digits_run_folder_holds_everything(tmp_path):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", epochs=3, progress=False)
    for name in ("config.yaml", "model.json", "best.safetensors", "last.safetensors", "state.pt", "metrics.csv",
                 "split.csv", "curves.png", "confusion_matrix.png", "test_metrics.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "model.json").read_text())
    assert meta["classes"] == [str(d) for d in range(10)] and meta["preprocess"]["input_size"] == 16
    assert "model: smallcnn" in (run / "config.yaml").read_text()  # `auto` resolved in the saved config
    assert json.loads((run / "test_metrics.json").read_text())["accuracy"] > 0.8
    metrics = deepcat.evaluate(run, quiet=True)
    assert metrics["split"] == "test" and metrics["images"] == 360 and metrics["accuracy"] > 0.8
    assert (run / "evaluation" / "confusion_matrix.png").is_file()


class InterruptAt:
    """Simulates Ctrl-C at the start of an epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, *, epoch: int, **_):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    opts = dict(data="digits", output=str(tmp_path), epochs=3, batch_size=64, ema=0.9, progress=False)
    whole = deepcat.train(name="whole", **opts)
    with pytest.raises(KeyboardInterrupt):
        deepcat.train(name="cut", callbacks=[InterruptAt(1)], **opts)
    assert len((tmp_path / "cut" / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1
    resumed = deepcat.train(resume=tmp_path / "cut", progress=False)
    a, b = load_file(whole / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.csv").read_text().split("\n")[1:][0][:40] == \
        (resumed / "metrics.csv").read_text().split("\n")[1:][0][:40]


def test_early_stopping_ends_the_run(tmp_path):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", epochs=6, lr=1e-9, patience=1,
                        progress=False)
    val_acc = [float(line.split(",")[5]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert len(val_acc) < 6 and val_acc[-1] <= max(val_acc[:-1])  # stopped after the first non-improving epoch


@pytest.mark.parametrize("options", [
    dict(loss="focal", class_weights=True),
    dict(optimizer="adamw", schedule="cosine", accumulate=2),
    dict(augment="strong", mixup=0.2, cutmix=1.0),
    dict(amp="off", channels_last=False, ema=0.99),
])
def test_training_options(tmp_path, options):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", **FAST, **options)
    assert (run / "best.safetensors").is_file()


def test_unreadable_image_is_skipped_with_one_warning(digits_folder, truncated_jpg, tmp_path, capfd):
    broken = digits_folder / "digit0" / "zz_broken.jpg"
    broken.write_bytes(truncated_jpg.read_bytes())
    run = deepcat.train(data=str(digits_folder), model="smallcnn", output=str(tmp_path), name="r", epochs=2,
                        batch_size=16, val_fraction=0.3, workers=0, progress=False)
    err = capfd.readouterr().err
    assert err.count("skipping unreadable image") == 1 and "zz_broken.jpg" in err
    assert (run / "best.safetensors").is_file()


def test_fine_tune_freezes_then_unfreezes(digits_folder, tmp_path):
    """Pretrained EfficientNet-Lite0 (offline weights): epoch 1 trains the head only, epoch 2 everything."""
    from deepcat.models import create_model

    class StemAfterEachEpoch:
        def __init__(self):
            self.stems, self.heads = [], []

        def on_epoch_end(self, *, model, **_):
            self.stems.append(model.conv_stem.weight.detach().clone())
            self.heads.append(model.classifier.weight.detach().clone())

    seen = StemAfterEachEpoch()
    run = deepcat.train(data=str(digits_folder), model="efficientnet_lite0", output=str(tmp_path), name="ft",
                        epochs=2, freeze_epochs=1, image_size=64, batch_size=16, callbacks=[seen], progress=False)
    cfg = (run / "config.yaml").read_text()
    assert "model: tf_efficientnet_lite0" in cfg and "pretrained: true" in cfg and "freeze_epochs: 1" in cfg
    start, _ = create_model(name="tf_efficientnet_lite0", num_classes=3, image_size=64, pretrained=True)
    assert torch.equal(seen.stems[0], start.conv_stem.weight)  # epoch 1: backbone frozen
    assert not torch.equal(seen.heads[0], seen.heads[1])
    assert not torch.equal(seen.stems[1], start.conv_stem.weight)  # epoch 2: everything learns


def test_lr_find_suggests_a_rate(tmp_path):
    result = deepcat.lr_find(data="digits", steps=30, plot=tmp_path / "lr.png", progress=False)
    assert 1e-6 <= result["suggested_lr"] <= 10 and (tmp_path / "lr.png").is_file()


def test_cli_train_evaluate_predict_round_trip(digits_folder, tmp_path, capsys):
    assert main(["train", str(digits_folder), "--model", "smallcnn", "--epochs", "2", "--batch-size", "16",
                 "--output", str(tmp_path), "--name", "cli"]) == 0
    run = tmp_path / "cli"
    assert capsys.readouterr().out.strip() == str(run)
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"
    image = sorted((digits_folder / "digit7").glob("*.png"))[0]
    assert main(["predict", str(run), str(image), "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)["predictions"][0]
    assert out["label"] in ("digit0", "digit1", "digit7") and len(out["top"]) == 2
    assert main(["train", str(digits_folder), "--output", str(tmp_path), "--name", "cli"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_config_file_and_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epoch: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'epoch'" in err and "Did you mean: epochs" in err and "Traceback" not in err
    with pytest.raises(DeepcatError, match="loss must be one of"):
        deepcat.train(data="digits", loss="hinge")


@pytest.mark.parametrize("args, message", [
    (["train", "no/such/folder"], "data not found: no/such/folder"),
    (["train", "digits", "--model", "resnet81"], "unknown model 'resnet81'. Did you mean: resnet18"),
    (["train", "{tmp}/one.csv"], "missing the column(s) label"),
    (["evaluate", "{tmp}"], "is not a deepcat run folder"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "one.csv").write_text("path\nx.png\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_auto_recipe_picks_by_image_size(digits_folder):
    from deepcat.config import resolve_config
    from deepcat.data.sources import resolve_data
    from deepcat.training.recipe import resolve_auto

    splits = resolve_data(str(digits_folder))  # 16 px images: the small-image recipe
    small = resolve_auto(resolve_config(data=str(digits_folder)), splits)
    assert (small.model, small.pretrained, small.image_size, small.optimizer) == ("smallcnn", False, 16, "sgd")
    tuned = resolve_auto(resolve_config(data=str(digits_folder), model="efficientnet_lite0"), splits)
    assert (tuned.model, tuned.pretrained, tuned.image_size, tuned.freeze_epochs) == \
        ("tf_efficientnet_lite0", True, None, 1)  # None: the pretrained model's own 224 px
