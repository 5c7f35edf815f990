"""Teach's feature cache: a changed file is embedded again and an unchanged one never; unreadable files come back
with their reason; a process killed while writing leaves a cache that reads; the backbone answers the same in ONNX
Runtime and PyTorch, and its ImageNet head pre-labels a cat before any label."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepcat.inputs.image import Preprocess
from deepcat.teach.backbone import Backbone
from deepcat.teach.features import FeatureCache, cats_and_dogs

WIDTH = 6


def stub_backbone(calls: list[int]) -> Backbone:
    """A backbone whose features are each channel's mean and spread: the cache's logic without a network."""

    def embed(pixels: np.ndarray) -> np.ndarray:
        calls.append(len(pixels))
        return np.concatenate([pixels.mean((2, 3)), pixels.std((2, 3))], 1).astype(np.float32)

    return Backbone(
        "stub", Preprocess(32, 36), np.zeros((1000, WIDTH), np.float32), np.zeros(1000, np.float32), embed, "stub"
    )


def photo_folder(root: Path, count: int = 5) -> list[Path]:
    """scikit-image's astronaut, cut into `count` overlapping strips saved as JPEG files (up to 7)."""
    from skimage import data

    photo = data.astronaut()  # (512, 512, 3)
    (root / "photos").mkdir(parents=True)
    paths = []
    for i in range(count):
        path = root / "photos" / f"{i}.jpg"
        Image.fromarray(photo[:, i * 50 : i * 50 + 200]).save(path, quality=90)
        paths.append(path)
    return paths


def stub_cache(root: Path, calls: list[int]) -> FeatureCache:
    cache = FeatureCache(root, folder=root / "cache")
    cache._backbone = stub_backbone(calls)
    return cache


def test_a_changed_file_is_embedded_again_and_an_unchanged_one_never(tmp_path):
    paths = photo_folder(tmp_path)
    calls: list[int] = []
    first = stub_cache(tmp_path, calls).features(paths, progress=False)
    assert first.features.shape == (5, WIDTH) and first.ok.all() and first.bad == [] and sum(calls) == 5
    assert len({tuple(row) for row in first.features}) == 5  # five different photos

    Image.fromarray(np.full((200, 200, 3), 30, np.uint8)).save(paths[2], quality=90)  # a new picture, same name
    calls.clear()
    again = stub_cache(tmp_path, calls)  # a new process: everything it knows is on disk
    assert again.cached(paths).tolist() == [True, True, False, True, True]
    second = again.features(paths, progress=False)
    assert sum(calls) == 1  # only the changed file
    assert np.array_equal(np.delete(second.features, 2, 0), np.delete(first.features, 2, 0))
    assert np.allclose(second.features[2, :3], 30, atol=1) and not np.allclose(first.features[2, :3], 30, atol=1)
    calls.clear()
    assert np.array_equal(again.features(paths[::-1], progress=False).features, second.features[::-1])
    assert calls == []  # in any order, read back without embedding


def test_unreadable_files_come_back_with_their_reason(tmp_path, truncated_jpg):
    paths = photo_folder(tmp_path, count=2)
    text = tmp_path / "photos" / "notes.jpg"
    text.write_text("not a picture")
    asked = [paths[0], truncated_jpg, text, tmp_path / "photos" / "gone.jpg", paths[1]]
    calls: list[int] = []
    found = stub_cache(tmp_path, calls).features(asked, progress=False)
    assert found.ok.tolist() == [True, False, False, False, True]
    assert not found.features[~found.ok].any()
    reasons = dict(found.bad)
    assert set(reasons) == {truncated_jpg, text, tmp_path / "photos" / "gone.jpg"}
    assert "truncated" in reasons[truncated_jpg] and "not an image" in reasons[text]
    assert reasons[tmp_path / "photos" / "gone.jpg"] == "file not found"
    calls.clear()
    assert stub_cache(tmp_path, calls).features(asked, progress=False).bad == found.bad and calls == []  # remembered


KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_teach_features import stub_cache
from deepcat.teach import features

features.BATCH_SIZE = features.FLUSH_ROWS = 2
renamed = Path.replace
def replace_then_die(self, target):
    out = renamed(self, target)
    if len(list(Path(target).parent.glob("*.npy"))) == 2:  # the second chunk is in place, its index rows are not
        os.kill(os.getpid(), signal.SIGKILL)
    return out
Path.replace = replace_then_die
stub_cache(Path({root!r}), []).features(sorted(Path({root!r}).glob("photos/*.jpg")), progress=False)
"""


def test_a_process_killed_while_writing_leaves_a_cache_that_reads(tmp_path):
    paths = photo_folder(tmp_path, count=6)
    script = textwrap.dedent(KILLED_WHILE_WRITING).format(tests=str(Path(__file__).parent), root=str(tmp_path))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    calls: list[int] = []
    cache = stub_cache(tmp_path, calls)
    assert cache.cached(paths).tolist() == [True, True, False, False, False, False]  # the first chunk committed
    found = cache.features(paths, progress=False)
    assert found.ok.all() and sum(calls) == 4  # the rest embedded now, the first two not again


@pytest.mark.slow
def test_the_backbone_pre_labels_a_cat_alike_in_onnx_runtime_and_pytorch(tmp_path, chelsea_jpg, coffee_jpg):
    """The default backbone (Lite0, ONNX Runtime on a CPU) against PyTorch on the same files; its own ImageNet
    head on the stored features says cat for Chelsea and neither for the coffee."""
    onnx = FeatureCache(tmp_path, folder=tmp_path / "onnx", runtime="onnxruntime")
    found = onnx.features([chelsea_jpg, coffee_jpg], progress=False)
    assert onnx.backbone.runtime == "onnxruntime" and found.features.shape == (2, 1280)
    torch_cache = FeatureCache(tmp_path, folder=tmp_path / "torch", runtime="torch")
    same = torch_cache.features([chelsea_jpg, coffee_jpg], progress=False)
    np.testing.assert_allclose(found.features, same.features, atol=5e-3, rtol=5e-3)  # float16 on disk
    cat, neither = cats_and_dogs(onnx.imagenet(found.features))
    assert cat.argmax() == 0 and cat[0] > 0.5
    assert neither.argmax() == 2
