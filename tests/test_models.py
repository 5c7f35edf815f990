import pytest
import torch
from PIL import Image

from deepcat.errors import DeepcatError
from deepcat.inference.imagenet import CAT_CLASSES
from deepcat.inputs.image_tensors import eval_transform
from deepcat.models import create_model, default_preprocess
from deepcat.models.efficientnet_lite0 import STAGE_SIZES, to_timm_keys


@pytest.mark.parametrize("name", ["smallcnn", "resnet18", "mobilenetv3_small_050", "googlenet"])
def test_models_build_with_a_new_head(name):
    model, spec = create_model(name=name, num_classes=3, image_size=64)
    out = model.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 3)


def test_layer_stack_from_yaml(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(
        "activation: gelu\nlayers:\n  - conv: 8\n  - pool: max\n  - conv: {channels: 16, stride: 2}\n"
        "  - linear: 32\n  - dropout: 0.1\n"
    )
    model, spec = create_model(name=str(path), num_classes=4, image_size=16)
    assert spec.name == "layers" and spec.layers["activation"] == "gelu"
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 4)
    path.write_text("layers:\n  - conv2d: 8\n")
    with pytest.raises(DeepcatError, match="Did you mean: conv"):
        create_model(name=str(path), num_classes=4, image_size=16)


def test_unknown_model_suggests_names():
    with pytest.raises(DeepcatError, match="Did you mean: .*resnet18"):
        create_model(name="resnet81", num_classes=2, image_size=32)


def test_efficientnet_lite0_key_mapping_is_complete():
    import timm

    from deepcat.models.efficientnet_lite0 import weights_path

    timm_keys = set(timm.create_model("tf_efficientnet_lite0").state_dict())
    packaged = torch.load(weights_path(), map_location="cpu", weights_only=True)
    mapped = to_timm_keys(packaged)
    assert set(mapped) == timm_keys and sum(STAGE_SIZES) == 16


def test_offline_pretrained_efficientnet_recognises_chelsea_the_cat(chelsea_jpg):
    model, spec = create_model(name="efficientnet_lite0", num_classes=1000, image_size=224, pretrained=True)
    pre = default_preprocess(model, spec, image_size=None, native_size=None)
    assert (pre.input_size, pre.resize, pre.interpolation, pre.mean) == (224, 256, "bicubic", (0.5, 0.5, 0.5))
    x = eval_transform(pre)(Image.open(chelsea_jpg).convert("RGB"))[None]
    with torch.no_grad():
        probs = model.eval()(x).softmax(-1)[0]
    assert int(probs.argmax()) in CAT_CLASSES
    assert float(probs[CAT_CLASSES.start : CAT_CLASSES.stop].sum()) > 0.8


def test_local_weights_file_loads_all_but_the_head(tmp_path):
    source, _ = create_model(name="resnet18", num_classes=10, image_size=64)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    model, _ = create_model(name="resnet18", num_classes=3, image_size=64, weights=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3
    with pytest.raises(DeepcatError, match="does not fit this model"):
        create_model(name="smallcnn", num_classes=3, image_size=64, weights=str(tmp_path / "w.pth"))


def test_new_head_on_pretrained_body_starts_at_zero(tmp_path):
    model, _ = create_model(name="tf_efficientnet_lite0", num_classes=3, image_size=64, pretrained=True)
    assert not model.classifier.weight.any() and not model.classifier.bias.any()
    imagenet, _ = create_model(name="tf_efficientnet_lite0", num_classes=1000, image_size=64, pretrained=True)
    assert imagenet.classifier.weight.abs().sum() > 0  # the ImageNet head is kept when it fits


def test_new_smallcnn_runs_record_relu_and_older_specs_rebuild_with_gelu():
    from deepcat.models.create import ModelSpec, build

    def activations(model):
        return {type(m).__name__ for m in model.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.GELU))}

    model, spec = create_model(name="smallcnn", num_classes=3, image_size=16)
    assert spec.kwargs == {"activation": "relu"} and activations(model) == {"ReLU"}
    saved_before_the_switch = ModelSpec("smallcnn", 3)  # model.json of a run trained with GELU
    assert activations(build(saved_before_the_switch, image_size=16)) == {"GELU"}


def test_smallcnn_test_time_flip_averages_the_mirror_only_at_inference():
    from deepcat.models.small_cnn import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(4, flip_average=True).eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        averaged = model(x)
        model.flip_average = False
        one_view, mirror = model(x), model(x.flip(-1))
        model.flip_average = True
    torch.testing.assert_close(averaged, (one_view + mirror) / 2, rtol=1e-5, atol=1e-6)  # linear head
    assert not torch.allclose(averaged, one_view)
    torch.testing.assert_close(model(x), one_view, rtol=1e-5, atol=1e-6)  # gradients on (Grad-CAM): one view
