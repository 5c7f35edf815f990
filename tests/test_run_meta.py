"""model.json and the export metadata, typed (deepcat.run_meta): what a real run and its ONNX file hold comes back
unchanged, key for key and in order; older layouts read as those runs behaved; a newer deepcat's file is refused
with the fix; and nothing outside run_meta reads the metadata by its keys."""

import json
import re
from pathlib import Path

import pytest

import deepcat
from deepcat.errors import DeepcatError
from deepcat.inputs.audio import AudioPreprocess
from deepcat.inputs.image import Preprocess
from deepcat.run_folder import read_model_json
from deepcat.run_meta import (
    MODEL_JSON_VERSION,
    UPGRADES,
    Calibration,
    ExportMeta,
    ModelSpec,
    RunMeta,
    migrate_run,
)

SRC = Path(__file__).parent.parent / "src" / "deepcat"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    return deepcat.train(data="digits", output=str(out), name="digits", epochs=1, progress=False)


def test_a_real_runs_model_json_and_its_onnx_metadata_come_back_unchanged(digits_run):
    import onnx

    text = (digits_run / "model.json").read_text()
    raw = json.loads(text)
    meta = RunMeta.from_dict(raw)
    assert meta.to_dict() == raw and list(meta.to_dict()) == list(raw)  # the same keys, in the same order
    assert meta.to_json() == text
    assert read_model_json(digits_run) == meta and meta.calibration is not None
    assert meta.classes == tuple(str(d) for d in range(10)) and meta.kind.name == "image"

    path = deepcat.export(digits_run, format="onnx", progress=False).path
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    stored = json.loads(props["deepcat"])
    exported = ExportMeta.from_json(props["deepcat"], where=path)
    assert exported.to_dict() == stored and list(exported.to_dict()) == list(stored)
    assert exported.calibration == meta.calibration and exported.preprocess == meta.preprocess
    assert stored["resize"] == meta.preprocess.resize  # the preprocessing sits at the top, where the page reads it
    assert exported.input_name == "pixels"


def test_sound_metadata_round_trips_too():
    from deepcat.exporting.graph import metadata

    pre = AudioPreprocess(clip_seconds=0.5, n_mels=32)
    run = RunMeta(model=ModelSpec("dscnn", 3, kwargs={"in_chans": 1}), classes=("a", "b", "c"), preprocess=pre)
    assert RunMeta.from_dict(run.to_dict()) == run and "calibration" not in run.to_dict()  # none fitted yet
    exported = metadata(name="s", classes=["a", "b", "c"], pre=pre, version="v", source="dscnn")
    back = ExportMeta.from_dict(json.loads(exported.to_json()))
    assert back == exported and back.kind.name == "audio" and back.input["samples"] == 8000
    assert back.to_dict()["calibration"] is None  # the key is there, null, as consumers expect


def test_the_oldest_model_json_reads_as_those_runs_behaved(tmp_path):
    """The first layout (no format_version, no input_kind; a spec without layers or kwargs; a calibration from
    before the score, the sets and the image count were saved)."""
    oldest = {
        "model": {"name": "smallcnn", "num_classes": 2},
        "classes": ["cat", "dog"],
        "preprocess": {
            "input_size": 16,
            "resize": 16,
            "interpolation": "bilinear",
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
        },
        "calibration": {"temperature": 1.3, "threshold": 0.2, "target_accept": 0.9},
    }
    (tmp_path / "model.json").write_text(json.dumps(oldest))
    meta = read_model_json(tmp_path)
    assert meta.model == ModelSpec("smallcnn", 2, None, {}) and meta.kind.name == "image"
    assert meta.preprocess == Preprocess(16, 16, "bilinear", (0.5,) * 3, (0.5,) * 3)
    assert meta.calibration == Calibration(temperature=1.3, threshold=0.2, target_accept=0.9, score="energy")
    saved = meta.to_dict()
    assert saved["format_version"] == MODEL_JSON_VERSION and saved["input_kind"] == "image"
    assert RunMeta.from_dict(saved) == meta


def test_a_format_step_runs_from_the_stored_version(monkeypatch):
    """`UPGRADES[v]` takes a version-v model.json to v + 1; `migrate_run` chains them from the stored version."""
    import deepcat.run_meta as run_meta

    monkeypatch.setattr(run_meta, "MODEL_JSON_VERSION", 2)
    monkeypatch.setitem(UPGRADES, 1, lambda meta: {**meta, "classes": [c.upper() for c in meta["classes"]]})
    old = {"format_version": 1, "model": {"name": "smallcnn", "num_classes": 1}, "classes": ["a"], "preprocess": {}}
    assert migrate_run(old)["classes"] == ["A"] and migrate_run(old)["format_version"] == 2
    assert migrate_run({**old, "format_version": 2})["classes"] == ["a"]  # already current: untouched


def test_a_newer_deepcats_files_are_refused_with_the_fix(digits_run):
    raw = json.loads((digits_run / "model.json").read_text())
    with pytest.raises(DeepcatError, match=r"format version 2, newer than this deepcat reads \(1\): upgrade deepcat"):
        RunMeta.from_dict({**raw, "format_version": MODEL_JSON_VERSION + 1})
    with pytest.raises(DeepcatError, match=r"holds 'labels', which this deepcat does not know.*upgrade deepcat"):
        RunMeta.from_dict({**raw, "labels": ["x"]})
    with pytest.raises(DeepcatError, match=r"model.json \(calibration\) holds 'temprature'.*Did you mean: temperature"):
        RunMeta.from_dict({**raw, "calibration": {"temprature": 2.0}})
    with pytest.raises(DeepcatError, match="format version 'one'"):
        RunMeta.from_dict({**raw, "format_version": "one"})

    exported = json.loads(ExportMeta.from_dict({**raw["preprocess"], "classes": ["a"]}).to_json())
    with pytest.raises(DeepcatError, match=r"m.onnx holds 'crop'.*newer deepcat \(deepcat 9.0\).*upgrade deepcat"):
        ExportMeta.from_dict({**exported, "crop": 12, "deepcat_version": "9.0"}, where="m.onnx")


def test_an_old_export_without_the_later_keys_reads_as_it_behaved():
    """An ONNX file from before input kinds, the `unknown` score and the logits output: images, the kind's input,
    no calibration (never `unknown`), no score or logits output named."""
    old = {"name": "m", "version": "abc", "source": "smallcnn", "classes": ["a", "b"], **Preprocess(16, 16).to_dict()}
    meta = ExportMeta.from_dict(old)
    assert meta.kind.name == "image" and meta.input_name == "pixels" and meta.calibration is None
    assert meta.calibration_or_default.threshold is None and (meta.score_output, meta.logits_output) == (None, None)
    with pytest.raises(DeepcatError, match="no classes"):
        ExportMeta.from_dict({"name": "m"})
    with pytest.raises(DeepcatError, match=r"m.onnx lacks the image preprocessing's 'input_size'.*deepcat export"):
        ExportMeta.from_dict({"classes": ["a", "b"]}, where="m.onnx")


def test_nothing_outside_run_meta_reads_the_metadata_by_its_keys():
    """`meta["classes"]`, `meta.get("calibration")` and the like live in run_meta.py alone (torch.fx's `node.meta`
    is another thing)."""
    reads = re.compile(r"""(?<![\w.])(?:self\.|served\.|classifier\.)?meta(?:\[['"]|\.get\()""")
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        if path.name != "run_meta.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line)
    ]
    assert found == []


def test_a_sound_run_from_before_mean_normalisation_reads_as_it_computed():
    saved = {
        "model": {"name": "dscnn", "num_classes": 2},
        "classes": ["no", "yes"],
        "input_kind": "audio",
        "preprocess": {"sample_rate": 16000, "clip_seconds": 1.0},
    }
    assert RunMeta.from_dict(saved).preprocess.mean_normalise is False
    assert RunMeta.from_dict(
        {**saved, "preprocess": {**saved["preprocess"], "mean_normalise": True}}
    ).preprocess.mean_normalise


def test_a_model_spec_without_its_size_is_one_line():
    with pytest.raises(DeepcatError, match="lacks num_classes"):
        RunMeta.from_dict(
            {"model": {"name": "smallcnn"}, "classes": ["a", "b"], "preprocess": Preprocess(32, 36).to_dict()}
        )


def test_code_that_read_the_metadata_as_a_dict_still_works_and_is_told_the_field():
    meta = RunMeta.from_dict(
        {
            "model": {"name": "smallcnn", "num_classes": 2},
            "classes": ["a", "b"],
            "preprocess": Preprocess(32, 36).to_dict(),
        }
    )
    with pytest.warns(DeprecationWarning, match="meta.classes"):
        assert meta["classes"] == ["a", "b"]
    with pytest.warns(DeprecationWarning):
        assert meta.get("calibration") is None and meta.get("nothing", 3) == 3
