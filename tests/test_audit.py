"""Data audit on real digits and Fashion-MNIST: made leaks, conflicts, duplicates and a truncated JPEG."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_digits
from PIL import Image

from deepcat.cli import main
from deepcat.data.audit import audit, fix_split, near_pairs
from deepcat.data.builtin import DEBIAN_FASHION_MNIST
from deepcat.data.resolve import resolve_data
from deepcat.data.sources import Samples


@pytest.fixture
def flawed(tmp_path: Path, truncated_jpg: Path) -> Path:
    """train/ and val/ folders of real digits, with one flaw of each kind planted."""
    root = tmp_path / "flawed"
    write_digits(root / "train", classes=(0, 1, 7), per_class=20, size=32)
    val = root / "val"
    for c in (0, 1, 7):  # val images are different digits: the 21st onwards
        (val / f"digit{c}").mkdir(parents=True)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for c in (0, 1, 7):
        for i, img in enumerate(bunch.images[bunch.target == c][20:26]):
            pixels = np.clip(img * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").resize((32, 32), Image.BILINEAR).save(val / f"digit{c}" / f"v{i}.png")
    shutil.copy(root / "train/digit0/000.png", val / "digit0/leaked.png")  # leak: same bytes
    shutil.copy(root / "train/digit1/000.png", root / "train/digit7/conflict.png")  # same image, two labels
    shutil.copy(root / "train/digit7/003.png", root / "train/digit7/copy.png")  # duplicate within class
    Image.open(root / "train/digit0/005.png").convert("RGB").save(root / "train/digit0/near.jpg", quality=90)
    shutil.copy(truncated_jpg, root / "train/digit1/truncated.jpg")
    return root


def test_audit_reports_each_planted_flaw(flawed):
    found = audit(resolve_data(str(flawed)), progress=False, workers=1)
    assert [u["item"].endswith("truncated.jpg") for u in found.unreadable] == [True]
    kinds = {g["kind"]: g for g in found.duplicates}
    names = {kind: sorted(Path(m["item"]).name for m in g["members"]) for kind, g in kinds.items()}
    assert {m["split"] for m in kinds["leak"]["members"]} == {"train", "val"}
    assert names["leak"] == ["000.png", "leaked.png"]
    assert names["label_conflict"] == ["000.png", "conflict.png"]
    assert ["003.png", "copy.png"] in [
        sorted(Path(m["item"]).name for m in g["members"]) for g in found.duplicates if g["kind"] == "duplicate"
    ]
    near = [g for g in found.duplicates if "near.jpg" in str(g["members"])]
    assert len(near) == 1 and not near[0]["exact"]  # re-encoded as JPEG: found by the perceptual hash
    assert found.classes == {"digit0": 28, "digit1": 27, "digit7": 28}
    assert len(found.flags["grayscale"]) == found.images - 1  # all readable ones, the RGB JPEG of gray pixels too


def test_fix_writes_a_clean_split_that_trains(flawed, tmp_path):
    splits = resolve_data(str(flawed))
    clean_split = fix_split(splits, audit(splits, progress=False, workers=1), tmp_path / "clean.csv")
    counts = clean_split.reasons
    assert counts["unreadable"] == 1 and counts["label_conflict"] == 2 and counts["leak"] == 1
    rows = list(csv.DictReader((tmp_path / "clean.csv").open()))
    kept = {Path(r["path"]).name + "/" + r["split"] for r in rows}
    assert "leaked.png/val" in kept and not any(k.startswith(("conflict.png", "truncated.jpg")) for k in kept)
    assert "000.png/train" in kept  # digit7's and digit0's 000.png: only digit1's (the conflict) is gone
    clean = resolve_data(str(tmp_path / "clean.csv"))
    assert len(clean.train) + len(clean.val) == clean_split.kept
    assert audit(clean, progress=False, workers=1).count("leak") == 0


def test_check_cli_writes_json_and_clean_csv(flawed, tmp_path, capsys):
    assert main(["check", str(flawed), "--out", str(tmp_path / "out"), "--fix", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "leak across train/val/test" in out and "clean.csv" in out
    assert (tmp_path / "out" / "audit.json").is_file() and (tmp_path / "out" / "clean.csv").is_file()


def every_near_pair(hashes: np.ndarray, max_bits: int) -> list[list[int]]:
    """The reference: every pair compared."""
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    return np.argwhere(np.triu(distance <= max_bits, 1)).tolist()


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 700, dtype=np.int64).astype(np.uint64)
    hashes[100] = hashes[5] ^ np.uint64(0b1011)  # 3 bits apart
    hashes[600] = hashes[7] ^ np.uint64(1 << 60 | 1 << 3 | 1 << 30 | 1 << 15)  # 4 bits, spread out
    hashes[300] = hashes[9] ^ np.uint64(0b11111)  # 5 bits: not near
    assert near_pairs(hashes, 4).tolist() == every_near_pair(hashes, 4) == [[5, 100], [7, 600]]


@pytest.mark.parametrize("max_bits", [0, 2, 4, 7])
def test_near_pairs_on_clustered_hashes_finds_what_comparing_every_pair_finds(max_bits):
    """Hashes that share most of their bits (as plain images' do): buckets larger than BIG_BUCKET, searched
    all-pairs, beside small ones searched offset by offset, and identical copies."""
    from deepcat.data.audit.duplicates import BIG_BUCKET

    rng = np.random.default_rng(1)
    shared = rng.integers(0, 2**63, 6, dtype=np.int64).astype(np.uint64)[rng.integers(0, 6, 3000)]
    flips = (rng.random((3000, 64)) < 0.04).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    hashes = shared ^ np.bitwise_or.reduce(flips, axis=1)
    hashes[2000:2300] = hashes[5]  # 300 identical copies
    assert np.bincount(np.unique(hashes & np.uint64(0xFFF), return_inverse=True)[1]).max() > BIG_BUCKET
    expected = every_near_pair(hashes, max_bits)
    assert near_pairs(hashes, max_bits).tolist() == expected and len(expected) > 300 * 299 // 2


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_near_pairs_on_fashion_mnist_hashes_finds_what_comparing_every_pair_finds(monkeypatch):
    import deepcat.data.audit as audit_module

    seen = []

    def spy(hashes, max_bits):
        seen.append(hashes)
        return near_pairs(hashes, max_bits)

    monkeypatch.setattr(audit_module, "near_pairs", spy)
    splits = resolve_data("fashion-mnist")
    splits.train, splits.val, splits.test = splits.train.subset(np.arange(4000)), None, None
    audit(splits, progress=False, workers=1)
    [hashes] = seen
    assert near_pairs(hashes, 4).tolist() == every_near_pair(hashes, 4) and len(near_pairs(hashes, 4)) > 10


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_subset_leak_of_a_slightly_changed_copy():
    splits = resolve_data("fashion-mnist")
    train, test = splits.train.subset(np.arange(1500)), splits.test.subset(np.arange(500))
    copy = np.clip(train.items[3].astype(int) + 4, 0, 255).astype(np.uint8)  # brighter: not the same bytes
    test = Samples(
        np.concatenate([test.items, copy[None]]), np.r_[test.labels, train.labels[3]], np.r_[test.ids, 99999]
    )
    splits.train, splits.val, splits.test = train, None, test
    found = audit(splits, progress=False, workers=1)
    leak = [g for g in found.duplicates if g["kind"] == "leak" and "fashion-mnist[99999]" in str(g["members"])]
    assert len(leak) == 1 and not leak[0]["exact"]
    assert found.unreadable == [] and len(found.flags["grayscale"]) == found.images


def test_a_group_can_be_a_leak_and_a_label_conflict_at_once(tmp_path):
    """A training image, its byte copy in val under the same label, and a resized copy in val under another:
    one group, counted as a leak and as a label conflict; the two identical files are marked exact; --fix keeps
    no copy of the image in two splits."""
    write_digits(tmp_path / "imgs", classes=(0, 1), per_class=12, size=32)
    original = tmp_path / "imgs/digit0/000.png"
    shutil.copy(original, tmp_path / "imgs/copy.png")
    Image.open(original).resize((40, 40), Image.BILINEAR).save(tmp_path / "imgs/resized.png")
    rows = [[str(p), p.parent.name, "train"] for p in sorted((tmp_path / "imgs").glob("digit*/*.png"))]
    rows += [
        [str(p), "digit1" if p.parent.name == "digit0" else "digit0", "val"]
        for p in sorted((tmp_path / "imgs").glob("digit*/01*.png"))
    ]  # other images, so val has both labels
    rows += [[str(tmp_path / "imgs/copy.png"), "digit0", "val"], [str(tmp_path / "imgs/resized.png"), "digit1", "val"]]
    with (tmp_path / "data.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *rows])
    splits = resolve_data(str(tmp_path / "data.csv"))
    found = audit(splits, progress=False, workers=1)
    [group] = [g for g in found.duplicates if any(m["item"].endswith("resized.png") for m in g["members"])]
    assert group["kinds"] == ["leak", "label_conflict"] and found.count("leak") >= 1
    assert found.count("label_conflict") >= 1
    exact = {Path(m["item"]).name: m["exact"] for m in group["members"]}
    assert exact == {"000.png": True, "copy.png": True, "resized.png": False}
    summary = "\n".join(found.summary_lines())
    assert "leak across train/val/test: " in summary and "leak across train/val/test: 0" not in summary
    leak_line = next(line for line in summary.splitlines() if "leak across" in line)
    for name, is_exact in exact.items():  # every member shown, the byte-identical ones marked
        assert (
            f"{name} (" in leak_line
            and (f"{name} (digit0, train, exact copy)" in leak_line or f"{name} (digit0, val, exact copy)" in leak_line)
            == is_exact
        )
    fix_split(splits, found, tmp_path / "clean.csv")
    with (tmp_path / "clean.csv").open() as f:
        kept = [(Path(r["path"]).name, r["split"]) for r in csv.DictReader(f)]
    members = {"000.png", "copy.png", "resized.png"}
    assert len({split for name, split in kept if name in members}) <= 1  # no copy in two splits


def test_a_large_group_shows_its_first_members_and_how_many_more():
    from deepcat.data.audit.findings import MAX_SHOWN, group_line

    members = [{"item": f"{i}.jpg", "label": "cat", "split": "train", "exact": i < 2} for i in range(6)]
    members[3]["split"] = "val"  # the member that makes the leak is shown right after the first
    line = group_line(members, "split")
    assert line.startswith("0.jpg (cat, train, exact copy) = 3.jpg (cat, val) = 1.jpg (cat, train, exact copy)")
    assert line.count(" = ") == MAX_SHOWN - 1 and line.endswith(f" and {6 - MAX_SHOWN} more")
