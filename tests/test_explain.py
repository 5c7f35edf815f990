"""Grad-CAM: it points at the cat in a real photo, works for a ViT, and the CLI writes heatmaps."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import deepcat
from deepcat.cli import main
from deepcat.evaluation.explain import grad_cam
from deepcat.inference.torch_model import pretrained_cat_dog
from deepcat.inputs.image_tensors import eval_transform


def test_heatmap_lands_on_the_cat(chelsea_jpg):
    """Chelsea pasted on the left of a grey canvas: ImageNet EfficientNet-Lite0's cat evidence is on the left."""
    clf = pretrained_cat_dog()
    cat = Image.open(chelsea_jpg).convert("RGB").resize((224, 224))
    canvas = Image.new("RGB", (448, 448), (128, 128, 128))
    canvas.paste(cat, (0, 112))
    pre = clf.preprocess
    transform = eval_transform(type(pre)(pre.input_size, pre.input_size, pre.interpolation, pre.mean, pre.std))
    heat, probs = grad_cam(clf.model, transform(canvas)[None])
    assert 281 <= probs[0].argmax() <= 285  # a domestic cat class
    left, right = heat[0][:, :112].sum(), heat[0][:, 112:].sum()
    assert heat.shape == (1, 224, 224) and 0 <= heat.min() and heat.max() == pytest.approx(1.0)
    assert left > 3 * right


def test_vit_heatmap_comes_from_patch_tokens():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=64)
    heat, _ = grad_cam(vit, torch.randn(2, 3, 64, 64))
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all()
    assert heat.std() > 0.01  # gradients reach the patch tokens (a cls-pooled last block would give zeros)


def test_explain_cli_writes_a_png_per_image(tmp_path, digits_folder):
    run = deepcat.train(data=str(digits_folder), output=str(tmp_path), name="r", epochs=2, progress=False)
    image = min((digits_folder / "digit7").glob("*.png"))
    assert main(["explain", str(run), str(image), "--target", "digit7", "--output", str(tmp_path / "cam")]) == 0
    png = tmp_path / "cam" / f"{image.stem}-gradcam.png"
    assert png.is_file() and Image.open(png).size[0] > 200
    assert main(["explain", str(run), str(image), "--target", "digit8"]) == 2  # a class the run does not know
