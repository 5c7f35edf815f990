import csv
import json

import pytest
import torch
from safetensors.torch import load_file

import deepcat
from deepcat.cli import main
from deepcat.errors import DeepcatError
from deepcat.training.loop import is_better

FAST = dict(epochs=2, batch_size=32, progress=False)


def test_digits_run_folder_holds_everything(tmp_path):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", epochs=3, progress=False)
    for name in (
        "config.yaml",
        "model.json",
        "best.safetensors",
        "last.safetensors",
        "state.pt",
        "metrics.csv",
        "split.csv",
        "curves.png",
        "confusion_matrix.png",
        "test_metrics.json",
    ):
        assert (run / name).is_file(), name
    meta = json.loads((run / "model.json").read_text())
    assert meta["classes"] == [str(d) for d in range(10)] and meta["preprocess"]["input_size"] == 16
    assert "model: smallcnn" in (run / "config.yaml").read_text()  # `auto` resolved in the saved config
    assert json.loads((run / "test_metrics.json").read_text())["accuracy"] > 0.8
    metrics = deepcat.evaluate(run, progress=False)
    assert metrics.split == "test" and metrics.images == 360 and metrics.accuracy > 0.8
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

    def rows(run):  # every column but the wall time, every epoch
        return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]

    assert len(rows(whole)) == 4 and rows(whole) == rows(resumed)


def test_early_stopping_ends_the_run(tmp_path):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", epochs=6, lr=1e-9, patience=1, progress=False)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    scores = [(float(r["val_acc"]), float(r["val_loss"])) for r in rows]
    best = [scores[0]]
    for score in scores[1:]:
        best.append(score if is_better(*score, than=best[-1]) else best[-1])
    assert len(rows) < 6 and best[-1] == best[-2]  # stopped after the first epoch that did not improve the best
    assert all(best[i] != best[i - 1] for i in range(1, len(best) - 1))


def test_best_epoch_breaks_val_accuracy_ties_on_val_loss():
    assert is_better(0.9, 0.5, than=(0.8, 0.1))  # accuracy first
    assert is_better(1.0, 0.04, than=(1.0, 0.20))  # a saturated val split: the surer epoch wins
    assert not is_better(1.0, 0.20, than=(1.0, 0.04)) and not is_better(0.8, 0.01, than=(0.9, 0.5))


def _setup(**options):
    from deepcat.config import resolve_config
    from deepcat.training.distributed import Dist
    from deepcat.training.setup import prepare

    return prepare(resolve_config(data="digits", epochs=2, batch_size=32, **options), Dist())


def test_focal_loss_and_class_weights_reach_the_loss():
    from deepcat.training.losses import FocalLoss, inverse_frequency

    s = _setup(loss="focal", class_weights=True)
    assert isinstance(s.loss_fn, FocalLoss)
    assert torch.allclose(s.loss_fn.weight, inverse_frequency(s.splits.train.labels, 10))
    plain = _setup()
    assert isinstance(plain.loss_fn, torch.nn.CrossEntropyLoss) and plain.loss_fn.weight is None
    logits, target = torch.tensor([[4.0, 0.0] + [0.0] * 8]), torch.tensor([0])
    focal, ce = s.loss_fn(logits, target), torch.nn.functional.cross_entropy(logits, target)
    assert focal < 0.1 * ce * s.loss_fn.weight[0]  # an easy example counts far less under focal loss


def test_mixup_cutmix_and_strong_augmentation_reach_the_batches():
    from torchvision.transforms import v2

    s = _setup(augment="strong", mixup=0.2, cutmix=1.0)
    assert (s.mixup.mixup_alpha, s.mixup.cutmix_alpha) == (0.2, 1.0)
    x, y, _ = next(iter(s.train_loader))
    _, target = s.mixup(x, y)  # (B, C) soft targets
    assert target.shape == (32, 10) and (target.max(1).values < 0.99).all()
    assert any(isinstance(t, v2.RandAugment) for t in s.train_loader.dataset.transform.transforms)
    off = _setup(amp="off", channels_last=False)
    assert off.mixup is None and off.dtype is None
    assert (
        not next(off.model.parameters()).is_contiguous(memory_format=torch.channels_last)
        or next(off.model.parameters()).ndim < 4
    )


def test_cosine_schedule_and_accumulation_drive_the_steps(tmp_path):
    import csv

    from deepcat.training.optim import lr_at

    run = deepcat.train(data="digits", output=str(tmp_path), name="r", schedule="cosine", accumulate=2, **FAST)
    state = torch.load(run / "state.pt", weights_only=False)
    steps_per_epoch = len(_setup(accumulate=2).train_loader) // 2
    assert state["step"] == 2 * steps_per_epoch  # one optimiser step per 2 batches
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for epoch, row in enumerate(rows, start=1):  # the lr of each epoch's last step
        expected = lr_at(
            epoch * steps_per_epoch - 1,
            peak=0.1,
            steps_per_epoch=steps_per_epoch,
            epochs=2,
            freeze_epochs=0,
            kind="cosine",
            warmup_epochs=0.3,
        )
        assert float(row["lr"]) == pytest.approx(expected)
    onecycle = lr_at(
        steps_per_epoch - 1,
        peak=0.1,
        steps_per_epoch=steps_per_epoch,
        epochs=2,
        freeze_epochs=0,
        kind="onecycle",
        warmup_epochs=0.3,
    )
    assert float(rows[0]["lr"]) != pytest.approx(onecycle)


def test_ema_weights_are_the_ones_saved(tmp_path):
    run = deepcat.train(data="digits", output=str(tmp_path), name="r", ema=0.9, **FAST)
    state = torch.load(run / "state.pt", weights_only=False)
    saved = load_file(run / "last.safetensors")
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    weight = next(k for k in saved if k.endswith("weight") and saved[k].ndim == 4)
    assert torch.equal(saved[weight], ema[weight])  # the averaged weights are what is kept
    assert not torch.equal(saved[weight], state["model"][weight])  # and they differ from the raw ones


def test_unreadable_image_is_skipped_with_one_warning(digits_folder, truncated_jpg, tmp_path, capfd):
    broken = digits_folder / "digit0" / "zz_broken.jpg"
    broken.write_bytes(truncated_jpg.read_bytes())
    run = deepcat.train(
        data=str(digits_folder),
        model="smallcnn",
        output=str(tmp_path),
        name="r",
        epochs=2,
        batch_size=16,
        val_fraction=0.3,
        workers=0,
        progress=False,
    )
    err = capfd.readouterr().err
    assert err.count("skipping unreadable input") == 1 and "zz_broken.jpg" in err
    assert (run / "best.safetensors").is_file()


def test_lr_find_suggests_a_rate_where_the_loss_falls(tmp_path):
    result = deepcat.lr_find(data="digits", steps=60, plot=tmp_path / "lr.png", progress=False)
    i = result.lrs.index(result.suggested_lr)
    assert 0 < i < len(result.lrs) - 1 and (tmp_path / "lr.png").is_file()
    assert min(result.losses[i:]) < result.losses[i] < result.losses[0]  # mid-descent, not at either end
    assert 1e-3 <= result.suggested_lr <= 1.0  # SGD on this small CNN trains well at 0.1 (the default)


def test_cli_train_evaluate_predict_round_trip(digits_folder, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                str(digits_folder),
                "--model",
                "smallcnn",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--output",
                str(tmp_path),
                "--name",
                "cli",
            ]
        )
        == 0
    )
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
    with pytest.raises(DeepcatError, match="unknown loss 'hinge'"):
        deepcat.train(data="digits", loss="hinge")


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "no/such/folder"], "data not found: no/such/folder"),
        (["train", "digits", "--model", "resnet81"], "unknown model 'resnet81'. Did you mean: resnet18"),
        (["train", "{tmp}/one.csv"], "missing the column(s) label"),
        (["evaluate", "{tmp}"], "is not a deepcat run folder"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "one.csv").write_text("path\nx.png\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_auto_recipe_picks_by_image_size_and_labels_per_class(digits_folder, tmp_path):
    """Small images with enough labelled per class: the small CNN from scratch at their own size; with fewer
    (`few_per_class`, more for 28 px than for tiny 16 px): the pretrained backbone (auto_model.json)."""
    from conftest import write_digits

    from deepcat.config import resolve_config
    from deepcat.data.resolve import resolve_data
    from deepcat.inputs.image_kind import few_per_class
    from deepcat.training.recipe import auto_choice, resolve_auto

    tiny, small = few_per_class(16), few_per_class(28)
    assert few_per_class(8) == tiny < small
    few = write_digits(tmp_path / "few", per_class=tiny)  # 80% to train: fewer than `tiny`
    for folder, side in ((few, 16), (write_digits(tmp_path / "28", per_class=tiny + 10, size=28), 28)):
        splits = resolve_data(str(folder))
        assert splits.train_per_class() < few_per_class(side)
        pretrained = resolve_auto(resolve_config(data=str(folder)), splits)
        assert (pretrained.model, pretrained.pretrained, pretrained.image_size) == ("tf_efficientnet_lite0", True, None)
        reason = auto_choice(resolve_config(data=str(folder)), splits).reason
        assert (
            f"{side}-px images, {splits.train_per_class()} per class to train on (under {few_per_class(side)})"
            in reason
        )
    splits = resolve_data(str(digits_folder))  # 16 px images, 24 per class to train on: the small-image recipe
    assert splits.train_per_class() >= tiny
    small = resolve_auto(resolve_config(data=str(digits_folder)), splits)
    assert (small.model, small.pretrained, small.image_size, small.optimizer) == ("smallcnn", False, 16, "sgd")
    assert (small.epochs, small.augment) == (10, "light")  # sound's auto: 60 epochs of `strong` (test_sound.py)
    tuned = resolve_auto(resolve_config(data=str(digits_folder), model="efficientnet_lite0"), splits)
    assert (tuned.model, tuned.pretrained, tuned.image_size, tuned.freeze_epochs) == (
        "tf_efficientnet_lite0",
        True,
        None,
        1,
    )  # None: the pretrained model's own 224 px


def test_a_run_says_in_one_line_which_model_auto_chose_and_why(digits_folder, tmp_path, capsys):
    from deepcat.config import resolve_config
    from deepcat.training.distributed import Dist
    from deepcat.training.loop import start_run
    from deepcat.training.setup import prepare

    for model in ("auto", "smallcnn"):
        cfg = resolve_config(data=str(digits_folder), model=model, audit=False, output=str(tmp_path), name=model)
        s = prepare(cfg, Dist())
        start_run(s, None, Dist())
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("model: ")]
        if model == "smallcnn":
            assert lines == []  # the user named it: nothing to explain
            continue
        assert s.model_choice is not None and lines == [f"model: {s.cfg.model} (auto: {s.model_choice.reason})"]
        assert "16-px images" in lines[0]
        saved = (tmp_path / model / "config.yaml").read_text()
        assert f"model: {s.cfg.model}" in saved  # the saved config names the model, not `auto`


def test_model_json_is_versioned_and_an_old_run_without_a_version_still_loads(tmp_path):
    import json

    from deepcat.errors import DeepcatError
    from deepcat.inputs.image import Preprocess
    from deepcat.models.create import ModelSpec
    from deepcat.run_folder import MODEL_JSON_VERSION, read_model_json, update_model_json, write_model_json
    from deepcat.run_meta import Calibration, RunMeta

    write_model_json(
        tmp_path, RunMeta(model=ModelSpec("smallcnn", 2), classes=("a", "b"), preprocess=Preprocess(16, 16))
    )
    update_model_json(tmp_path, calibration=Calibration(temperature=1.5))
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format_version"] == MODEL_JSON_VERSION and meta["calibration"]["temperature"] == 1.5
    assert read_model_json(tmp_path).calibration == Calibration(temperature=1.5)
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]  # written under a temporary name, then renamed
    del meta["format_version"]  # as runs saved before the version was written
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert read_model_json(tmp_path).classes == ("a", "b")
    (tmp_path / "model.json").write_text(json.dumps({**meta, "format_version": MODEL_JSON_VERSION + 1}))
    with pytest.raises(DeepcatError, match="upgrade deepcat"):
        read_model_json(tmp_path)


def test_a_run_continues_from_an_earlier_one_with_new_classes(tmp_path):
    """--from: six digit classes first, then all ten. The continued run is the earlier one's architecture, weights
    and input size; the classes it knew keep their head rows (at its first step it answers them as the earlier
    run did), and it trains the layers the earlier run trained (all of a network trained from scratch); asking
    for another model is refused."""
    from deepcat.models.create import carry_head, create_model, read_weights_file
    from deepcat.run_folder import load_model, read_config

    old = deepcat.train(data="digits", classes="0,1,2,3,4,5", output=str(tmp_path), name="six", **FAST)
    before, meta = load_model(old)
    ten = [str(d) for d in range(10)]
    weights = str(old / "best.safetensors")
    after, _ = create_model(
        name=meta.model.name, num_classes=10, image_size=meta.image_size, weights=weights, options=meta.model.kwargs
    )
    assert carry_head(after.eval(), read_weights_file(weights), meta.classes, ten) == 6
    x = torch.randn(4, 3, meta.image_size, meta.image_size)
    with torch.no_grad():
        assert torch.allclose(before(x), after(x)[:, :6], atol=1e-5) and not after(x)[:, 6:].any()

    new = deepcat.train(data="digits", from_run=str(old), output=str(tmp_path), name="ten", **FAST)
    saved = json.loads((new / "model.json").read_text())
    assert saved["model"]["name"] == meta.model.name and saved["classes"] == ten
    assert saved["preprocess"]["input_size"] == meta.image_size
    assert read_config(new)["unfreeze"] == read_config(old)["unfreeze"] == 1.0  # trained whole, continued whole
    assert deepcat.evaluate(new, progress=False).accuracy > 0.8
    with pytest.raises(DeepcatError, match="continues its smallcnn: drop --model resnet18"):
        deepcat.train(data="digits", from_run=str(old), model="resnet18", output=str(tmp_path), name="x", **FAST)
