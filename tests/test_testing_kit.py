"""deepcat.testing, the public conformance kit: every built-in kind (tests/test_input_kinds.py), every registered
model builder and every export format whose toolchain is installed passes it, as a kind, model or format written
elsewhere must; one that breaks a promise is refused with a message naming what was received and what is
expected."""

from dataclasses import replace

import numpy as np
import pytest
import torch.nn as nn
from conftest import TOOLCHAIN_RUNTIMES

import deepcat
from deepcat.exporting.formats import FORMATS, ExportFormat
from deepcat.inputs import input_kind
from deepcat.models.create import create_model  # noqa: F401 - registers deepcat's own models
from deepcat.models.registry import MODELS, register_model
from deepcat.testing import ContractError, check_export_format, check_input_kind, check_model_builder


@pytest.mark.parametrize("kind", ["image", "audio"])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_builder_meets_the_contract(name, kind):
    model = check_model_builder(name, kind=kind, num_classes=4, image_size=16)
    assert not model.training


def test_a_kind_that_breaks_the_contract_is_named_with_what_it_broke():
    """Every registered kind passes the kit in test_input_kinds.py (with the toy kind); here one that fails."""
    unnamed = replace(input_kind("image"), words=replace(input_kind("image").words, sizes=""))
    with pytest.raises(ContractError, match=r"input kind 'image': words: received .*\(empty: sizes\)"):
        check_input_kind(unnamed, item=np.zeros((16, 16, 3), np.uint8))


class NoHead(nn.Module):
    """Ignores `num_classes`: always 10 outputs."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.body = nn.Conv2d(in_chans, 10, 3)

    def forward(self, x):
        return self.body(x).mean((2, 3))


@pytest.fixture
def registered():
    """Register builders for one test and take them out again."""
    names = []

    def add(name, builder):
        register_model(name)(builder)
        names.append(name)

    yield add
    for name in names:
        MODELS._entries.pop(name)


def test_a_builder_that_breaks_the_contract_is_refused_with_what_it_gave(registered):
    registered("tenway", lambda num_classes, image_size, in_chans=3, **_: NoHead(in_chans))
    with pytest.raises(ContractError, match=r"model 'tenway' on image input: .*received \(2, 10\); expected .*\(2, 3"):
        check_model_builder("tenway", num_classes=3)
    registered("strict", lambda num_classes, image_size, in_chans=3: NoHead(in_chans))
    with pytest.raises(ContractError, match=r"ignores keywords it does not use"):
        check_model_builder("strict")
    with pytest.raises(ContractError, match=r"model 'smalcnn' is not registered\. Did you mean: smallcnn"):
        check_model_builder("smalcnn")


def formats() -> list:
    """Every registered format; the optional toolchains' marked as test_export.py marks them, and slow."""
    marks = (pytest.mark.toolchain, pytest.mark.slow)
    return [
        pytest.param(name, marks=marks) if name.removesuffix("-int8") in TOOLCHAIN_RUNTIMES else name
        for name in FORMATS.names()
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return deepcat.train(
        data="digits",
        classes="0,1,2",
        output=str(tmp_path_factory.mktemp("runs")),
        name="kit",
        epochs=2,
        progress=False,
    )


@pytest.mark.parametrize("name", formats())
def test_every_export_format_meets_the_contract(tiny_run, tmp_path, name):
    runtime = TOOLCHAIN_RUNTIMES.get(name.removesuffix("-int8"))
    if runtime:
        pytest.importorskip(runtime)
    result = check_export_format(name, run=tiny_run, folder=tmp_path)
    assert result.check.passed and result.path == str(tmp_path / FORMATS.get(name).filename)


def test_a_format_whose_file_hides_its_metadata_is_refused(tiny_run, tmp_path):
    from deepcat.exporting.formats import write_torchscript

    FORMATS.add("bare-torchscript", ExportFormat("model.bare.pt", "fp32", write_torchscript))
    try:
        with pytest.raises(ContractError, match=r"'bare-torchscript': its files end in '\.pt', which no runtime"):
            check_export_format("bare-torchscript", run=tiny_run, folder=tmp_path)
    finally:
        FORMATS._entries.pop("bare-torchscript")
    with pytest.raises(ContractError, match=r"export format 'onx' is not registered\. Did you mean: onnx"):
        check_export_format("onx", run=tiny_run, folder=tmp_path)
