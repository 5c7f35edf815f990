"""The runtime that runs an exported file, chosen by the file's suffix (`RUNTIMES`).

Each opener returns a session that answers ONNX Runtime's two calls, `run(output names or None, {input name:
batch})` and `get_inputs()`, and the deepcat metadata stored in the file, so one classifier
(`deepcat.inference.exported`) answers for every format. Runtimes other than ONNX Runtime are optional extras;
without one, the error names the extra to install.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deepcat.errors import DeepcatError

__all__ = [
    "EXECUTORCH_BATCH",
    "OUTPUTS",
    "RUNTIMES",
    "ExecuTorchSession",
    "OpenVinoSession",
    "Port",
    "need",
    "open_file",
]

Opener = Callable[[Path, "int | None"], tuple[Any, dict[str, Any]]]


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional toolchain, or say in one line which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise DeepcatError(f"{purpose} needs {module}, not installed here: pip install 'deepcat[{extra}]'") from error


def _no_metadata(path: Path) -> DeepcatError:
    return DeepcatError(f"{path} has no deepcat metadata; export a run with `deepcat export RUN`")


def open_onnx(path: Path, threads: int | None) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime on the CPU, for .onnx and .ort files (metadata under the key `deepcat`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if "deepcat" not in props:
        raise _no_metadata(path)
    return session, json.loads(props["deepcat"])


@dataclass(frozen=True)
class Port:
    """An input as ONNX Runtime describes it: its name and shape (a dynamic axis as a string)."""

    name: str
    shape: list[int | str]


class OpenVinoSession:
    """An OpenVINO compiled model behind ONNX Runtime's calls. One infer request per thread: a request is not
    thread-safe, and the server runs several workers on one model."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.output_names = [output.get_any_name() for output in compiled.outputs]
        self._local = threading.local()

    def get_inputs(self) -> list[Port]:
        return [
            Port(port.get_any_name(), [str(d) if d.is_dynamic else d.get_length() for d in port.get_partial_shape()])
            for port in self.compiled.inputs
        ]

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)  # copies the outputs out of the request's tensors
        return [result[name] for name in (names or self.output_names)]


def open_openvino(path: Path, threads: int | None) -> tuple[Any, dict[str, Any]]:
    """OpenVINO Runtime on the CPU, for IR files (.xml beside its .bin; metadata in the rt_info key `deepcat`).
    Float layers run in fp32: by default OpenVINO runs them in bf16 on CPUs that have it, so the same file would
    answer differently on an AVX-512 BF16 or AMX CPU than on an AVX2 one."""
    ov = need("openvino", "openvino", f"running {path.name}")
    core = ov.Core()
    model = core.read_model(str(path))
    if not model.has_rt_info(["deepcat"]):
        raise _no_metadata(path)
    meta = json.loads(model.get_rt_info(["deepcat"]).astype(str))
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return OpenVinoSession(core.compile_model(model, "CPU", config)), meta


# ExecuTorch programs take one input at a time, as an app runs them. With a dynamic batch axis, ExecuTorch 1.5.1
# (torch 2.14) planned memory for 15 inputs when asked for up to 64 and refused the 16th, and the log-mel front end
# came out with a static batch of 2; a fixed batch of 1 runs every model.
EXECUTORCH_BATCH = 1
OUTPUTS = ["probabilities", "unknown_score", "logits"]  # the deployable graph's outputs, in order


class ExecuTorchSession:
    """An ExecuTorch program's `forward` behind ONNX Runtime's calls. One call at a time: ExecuTorch's methods are
    not thread-safe (two server workers executing at once crashed the process), and an app runs one anyway."""

    def __init__(self, program: Any, meta: dict[str, Any]):
        self.meta = meta
        self.method = program.load_method("forward")
        self.planned = tuple(self.method.metadata.input_tensor_meta(0).sizes())
        self._lock = threading.Lock()

    def get_inputs(self) -> list[Port]:
        return [Port(self.meta["input"]["name"], ["batch", *self.planned[1:]])]

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        import numpy as np
        import torch

        [batch] = feeds.values()
        with self._lock:
            chunks = [
                [
                    out.detach().numpy().copy()
                    for out in self.method.execute([torch.from_numpy(np.ascontiguousarray(part))])
                ]
                for part in np.array_split(batch, -(-len(batch) // self.planned[0]))  # in batches the plan holds
            ]
        outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        return [outputs[OUTPUTS.index(name)] for name in (names or OUTPUTS)]


def open_executorch(path: Path, threads: int | None) -> tuple[Any, dict[str, Any]]:
    """ExecuTorch's runtime (its Python bindings, XNNPACK on the CPU) for .pte programs; metadata from the
    program's constant method `deepcat`."""
    runtime = need("executorch.runtime", "executorch", f"running {path.name}").Runtime.get()
    if threads:  # XNNPACK's one thread pool, shared by every program in the process
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    program = runtime.load_program(str(path))
    if "deepcat" not in program.method_names:
        raise _no_metadata(path)
    [meta] = program.load_method("deepcat").execute([])
    return ExecuTorchSession(program, json.loads(meta)), json.loads(meta)


RUNTIMES: dict[str, Opener] = {
    ".onnx": open_onnx,
    ".ort": open_onnx,
    ".xml": open_openvino,
    ".pte": open_executorch,
}


def open_file(path: Path, threads: int | None) -> tuple[Any, dict[str, Any]]:
    """The session and metadata for an exported file, by its suffix."""
    opener = RUNTIMES.get(path.suffix)
    if opener is None:
        raise DeepcatError(f"{path}: deepcat runs {', '.join(RUNTIMES)} files; export a run with `deepcat export RUN`")
    if not path.is_file():
        raise DeepcatError(f"{path} does not exist; export a run with `deepcat export RUN`")
    return opener(path, threads)
