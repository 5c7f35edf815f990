import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_digits

from deepcat.data.builtin import DEBIAN_FASHION_MNIST, read_idx
from deepcat.data.resolve import resolve_data
from deepcat.errors import DeepcatError


def test_class_folder_split_is_stratified_and_seeded(digits_folder):
    a = resolve_data(str(digits_folder), val_fraction=0.2, seed=3)
    b = resolve_data(str(digits_folder), val_fraction=0.2, seed=3)
    assert a.classes == ["digit0", "digit1", "digit7"]
    assert len(a.train) == 72 and len(a.val) == 18
    assert np.bincount(a.val.labels).tolist() == [6, 6, 6]
    assert a.val.items == b.val.items
    assert a.val.items != resolve_data(str(digits_folder), val_fraction=0.2, seed=4).val.items


def test_train_val_test_folders(tmp_path):
    for split in ("train", "val", "test"):
        write_digits(tmp_path / "ds" / split, per_class=5)
    splits = resolve_data(str(tmp_path / "ds"))
    assert [len(splits.train), len(splits.val), len(splits.test)] == [15, 15, 15]


def test_csv_of_path_label(digits_folder):
    rows = ["path,label"] + [
        f"{p.relative_to(digits_folder)},{p.parent.name}" for p in sorted(digits_folder.rglob("*.png"))
    ]
    (digits_folder / "labels.csv").write_text("\n".join(rows))
    splits = resolve_data(str(digits_folder / "labels.csv"), val_fraction=0.5)
    assert splits.classes == ["digit0", "digit1", "digit7"] and len(splits.train) == 45
    assert Path(splits.train.items[0]).is_file()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "data not found"),
        ("empty_class", "has no images"),
        ("single_class", "single class"),
        ("no_classes", "no class subfolders"),
        ("csv_missing_column", "missing the column"),
    ],
)
def test_bad_data_says_what_to_do(tmp_path, digits_folder, case, message):
    if case == "missing":
        data = tmp_path / "nope"
    elif case == "empty_class":
        (digits_folder / "empty").mkdir()
        data = digits_folder
    elif case == "single_class":
        data = tmp_path / "one"
        shutil.copytree(digits_folder / "digit0", data / "digit0")
    elif case == "no_classes":
        data = tmp_path / "flat"
        data.mkdir()
    else:
        data = tmp_path / "bad.csv"
        data.write_text("file,label\na.png,cat\n")
    with pytest.raises(DeepcatError, match=message):
        resolve_data(str(data))


def test_digits_builtin_has_fixed_test_split():
    splits = resolve_data("digits", seed=1)
    assert splits.test is not None and len(splits.test) == 360
    assert np.array_equal(splits.test.labels, resolve_data("digits", seed=2).test.labels)
    assert not splits.mirror_safe and splits.small_images


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (CI installs it)")
def test_fashion_mnist_from_debian_package():
    images = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    splits = resolve_data("fashion-mnist", val_fraction=0.1)
    assert len(splits.train) == 54000 and len(splits.val) == 6000 and len(splits.test) == 10000
    assert splits.classes[9] == "ankle-boot"


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_reads_the_file_it_is_given(tmp_path, gzipped):
    """IDX as MNIST writes it: zero bytes, type 0x08 (uint8), the number of dimensions, big-endian sizes, data."""
    import gzip

    images = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    raw = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape) + images.tobytes()
    path = tmp_path / ("x-idx3-ubyte.gz" if gzipped else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    read = read_idx(path)
    assert read.shape == (5, 7, 3) and np.array_equal(read, images)


def test_oxford_pets_layout(tmp_path, chelsea_jpg):
    """torchvision's Oxford-IIIT Pet layout, written small: species 1 = cat, 2 = dog."""
    base = tmp_path / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    lines = []
    for i in range(6):
        breed, species = ("Bengal", 1) if i % 2 == 0 else ("beagle", 2)
        name = f"{breed}_{i}"
        shutil.copy(chelsea_jpg, base / "images" / f"{name}.jpg")
        lines.append(f"{name} {1 if species == 1 else 2} {species} 1")
    (base / "annotations" / "trainval.txt").write_text("\n".join(lines[:4]) + "\n")
    (base / "annotations" / "test.txt").write_text("\n".join(lines[4:]) + "\n")
    splits = resolve_data(f"oxford-pets:{tmp_path}", val_fraction=0.5)
    assert splits.classes == ["cat", "dog"]
    assert len(splits.train) + len(splits.val) == 4 and splits.test.labels.tolist() == [0, 1]


def test_tensor_batches_match_the_per_image_pipeline():
    """Fashion-MNIST-shaped arrays: whole-batch preprocessing equals the per-image transform; augmented
    batches are crops of the reflect-padded image, flipped or not."""
    import torch

    from deepcat.data.loader import BadInputLog, batches, make_loader
    from deepcat.data.order import Order
    from deepcat.data.sources import Samples
    from deepcat.data.tensor_batches import TensorBatches, fits
    from deepcat.inputs import input_kind
    from deepcat.inputs.image import Preprocess
    from deepcat.inputs.image_tensors import eval_transform

    rng = np.random.default_rng(0)
    samples = Samples(rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10) % 3)
    pre = Preprocess(28, 28, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert fits(samples, pre, "light") and not fits(samples, pre, "strong")
    fast = next(iter(TensorBatches(samples, pre, Order(10))))[0]
    slow = next(batches(make_loader(samples, eval_transform(pre), input_kind(), Order(10)), BadInputLog()))[0]
    assert torch.allclose(fast, slow, atol=1e-6)

    torch.manual_seed(0)
    x, y, _ = next(iter(TensorBatches(samples, pre, Order(10), augment="light", hflip=True)))
    padded = torch.nn.functional.pad(torch.from_numpy(samples.items).float()[:, None], (3, 3, 3, 3), mode="reflect")
    for i in range(10):
        image = x[i, 0] * 127.5 + 127.5
        crops = [padded[i, 0, dy : dy + 28, dx : dx + 28] for dy in range(7) for dx in range(7)]
        assert any(torch.allclose(image, c, atol=1e-3) or torch.allclose(image, c.flip(-1), atol=1e-3) for c in crops)


def test_training_works_where_processes_start_by_spawning(digits_folder, tmp_path):
    """macOS and Windows start a data loader's workers by spawning, and so does any process a spawned one starts:
    what the workers receive must pickle (a lambda in the input kind once failed there)."""
    code = (
        "import multiprocessing, sys; multiprocessing.set_start_method('spawn'); import deepcat; "
        "deepcat.train(data=sys.argv[1], output=sys.argv[2], name='spawned', epochs=1, workers=2, audit=False, "
        "progress=False)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(digits_folder), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "spawned" / "best.safetensors").is_file()
