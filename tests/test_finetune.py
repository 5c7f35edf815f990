"""Fine-tuning a pretrained network: the head on features computed once, then the later layers unfrozen (batch
norm included), early parameters from timm's groups, and progressive resizing of the unfrozen epochs."""

from pathlib import Path

import pytest
import torch

import deepcat


@pytest.mark.parametrize("unfreeze", [0.5, 1.0])
def test_fine_tune_freezes_then_unfreezes(digits_folder, tmp_path, unfreeze):
    """Pretrained EfficientNet-Lite0 (offline weights): epoch 1 trains the head only, on backbone features
    computed once in eval mode (batch-norm statistics untouched); epoch 2 the later half of the layer groups by
    default, the early ones (stem to blocks.3) untouched, batch norm included; with `unfreeze=1` everything."""
    from deepcat.models import create_model

    class AfterEachEpoch:
        def __init__(self):
            self.stems, self.heads, self.norms, self.early, self.late = [], [], [], [], []

        def on_epoch_end(self, *, model, **_):
            self.stems.append(model.conv_stem.weight.detach().clone())
            self.heads.append(model.classifier.weight.detach().clone())
            self.norms.append(model.bn1.running_mean.clone())
            self.early.append(model.blocks[3][2].bn3.running_var.clone())
            self.late.append(model.blocks[4][0].conv_pw.weight.detach().clone())

    seen = AfterEachEpoch()
    run = deepcat.train(
        data=str(digits_folder),
        model="efficientnet_lite0",
        output=str(tmp_path),
        name="ft",
        epochs=2,
        freeze_epochs=1,
        image_size=64,
        batch_size=16,
        callbacks=[seen],
        progress=False,
        unfreeze=unfreeze,
    )
    cfg = (run / "config.yaml").read_text()
    assert "model: tf_efficientnet_lite0" in cfg and "pretrained: true" in cfg and "freeze_epochs: 1" in cfg
    assert f"unfreeze: {unfreeze}" in cfg
    start, _ = create_model(name="tf_efficientnet_lite0", num_classes=3, image_size=64, pretrained=True)
    assert torch.equal(seen.stems[0], start.conv_stem.weight)  # epoch 1: backbone frozen
    assert torch.equal(seen.norms[0], start.bn1.running_mean)  # ... and never run in training mode
    assert not torch.equal(seen.heads[0], seen.heads[1]) and seen.heads[0].abs().sum() > 0  # the zero head learnt
    assert not torch.equal(seen.late[1], start.blocks[4][0].conv_pw.weight)  # epoch 2: the later half learns
    everything = unfreeze == 1.0
    assert torch.equal(seen.stems[1], start.conv_stem.weight) != everything  # ... and the early layers only with 1
    assert torch.equal(seen.norms[1], start.bn1.running_mean) != everything
    assert torch.equal(seen.early[1], start.blocks[3][2].bn3.running_var) != everything


def test_early_parameters_follow_timm_groups_and_spare_the_head():
    from deepcat.models import create_model
    from deepcat.models.create import early_parameters

    lite0, _ = create_model(name="tf_efficientnet_lite0", num_classes=3, image_size=64)
    assert early_parameters(lite0, 1.0) == set()
    half = early_parameters(lite0, 0.5)  # 18 groups: the stem, 16 blocks, the head conv with the classifier
    assert "conv_stem.weight" in half and "blocks.3.2.bn3.weight" in half
    assert not any(name.startswith(("blocks.4", "conv_head", "classifier")) for name in half)
    assert not any(name.startswith("classifier") for name in early_parameters(lite0, 0.0))  # the head learns
    vit, _ = create_model(name="vit_tiny_patch16_224", num_classes=3, image_size=224)
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= early_parameters(vit, 0.5)
    cnn, _ = create_model(name="smallcnn", num_classes=3, image_size=28)  # no timm groups: top-level children
    holders = [child for child, module in cnn.named_children() if any(True for _ in module.parameters())]
    early = early_parameters(cnn, 0.5)
    assert {name.split(".")[0] for name in early} == set(holders[: round(len(holders) / 2)])


@pytest.mark.precision
@pytest.mark.parametrize("amp", ["off", "bf16"])  # bf16 is emulated where the CPU lacks it: slower, still exact
def test_cached_features_are_what_the_classifier_sees(digits_folder, amp, tmp_path, monkeypatch):
    """The frozen epochs' features are the backbone's output as a training step computes it (under the run's
    autocast), in the data's order, so the head learns on what every later training step shows it. In bf16 they
    differ from fp32 features by about 5% (Lite0), and a head trained on them still answers as the fp32 model
    (the export, ONNX Runtime) does."""
    from deepcat.config import TrainConfig
    from deepcat.data.loader import BadInputLog, eval_loader
    from deepcat.device import autocast
    from deepcat.evaluation.scores import collect_logits
    from deepcat.inference.unknown_score import WithFeatures
    from deepcat.models.create import classifier_of
    from deepcat.training import head_features
    from deepcat.training.distributed import Dist
    from deepcat.training.setup import prepare

    s = prepare(
        TrainConfig(
            data=str(digits_folder), model="efficientnet_lite0", image_size=64, batch_size=16, epochs=2, amp=amp
        ),
        Dist(),
    )
    assert (s.dtype is None) == (amp == "off")
    assert head_features.applies(s, Dist()) and not head_features.applies(s, Dist(0, 0, 2))  # one process only
    assert s.train_loader.dataset.min_side == 2 * s.pre.resize  # large JPEGs read at reduced scale
    cached = head_features.feature_batches(s, BadInputLog(), progress=False)
    assert cached.features.shape == (len(s.splits.train), 1280) and len(cached) == len(s.train_loader)
    assert cached.labels.tolist() == s.splits.train.labels.tolist()
    x, _, _ = next(iter(eval_loader(s.splits.train, s.pre, batch_size=8)))
    model = s.model.eval()
    with torch.no_grad(), autocast(s.device, s.dtype):
        features, _ = WithFeatures(model, classifier_of(model))(x)
    torch.testing.assert_close(cached.features[:8], features.float(), atol=1e-4, rtol=1e-4)
    monkeypatch.setattr(head_features, "MEMORY_FEATURE_BYTES", 0)  # past the bound: a memory-mapped file
    (run := tmp_path / "run").mkdir()
    mapped = head_features.feature_batches(s, BadInputLog(), progress=False, folder=run)
    assert torch.equal(mapped.features, cached.features) and torch.equal(mapped.labels, cached.labels)
    maps = Path("/proc/self/maps").read_text()
    assert f"{run}/head_features.npy (deleted)" in maps and not list(run.iterdir())  # mapped, and removed

    head = head_features.HeadOnly(model)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(100):  # the head alone, on the cached features, as the frozen epochs train it
        loss = torch.nn.functional.cross_entropy(head(cached.features), cached.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        on_cached = head.eval()(cached.features).argmax(1)
    fp32_logits, _ = collect_logits(
        model,
        eval_loader(s.splits.train, s.pre, batch_size=32),
        device=s.device,
        dtype=None,
        log=BadInputLog(),
        desc="fp32",
        progress=False,
    )
    assert (on_cached == cached.labels).float().mean() > 0.95
    assert (torch.from_numpy(fp32_logits).argmax(1) == on_cached).float().mean() > 0.95  # as the export answers


def test_progressive_resizing_grows_the_unfrozen_epochs_to_full_size():
    from types import SimpleNamespace

    from deepcat.config import TrainConfig
    from deepcat.training.setup import epoch_input_size, forward_loss

    cfg = TrainConfig(epochs=5, freeze_epochs=1, image_size=224, progressive=0.5)
    assert [epoch_input_size(cfg, e) for e in range(5)] == [None, 128, 160, 192, None]
    off = TrainConfig(epochs=5, freeze_epochs=1, image_size=224)
    assert {epoch_input_size(off, e) for e in range(5)} == {None}
    seen = []
    s = SimpleNamespace(
        device=torch.device("cpu"),
        pre=SimpleNamespace(kind="image"),
        cfg=off,
        mixup=None,
        dtype=None,
        loss_fn=torch.nn.CrossEntropyLoss(),
    )
    net = lambda x: seen.append(x.shape) or torch.zeros(len(x), 3, requires_grad=True)  # noqa: E731
    forward_loss(s, net, torch.rand(2, 3, 224, 224), torch.tensor([0, 1]), 128)
    forward_loss(s, net, torch.rand(2, 3, 224, 224), torch.tensor([0, 1]))
    assert seen == [(2, 3, 128, 128), (2, 3, 224, 224)]
