"""The runtime that runs an exported file, chosen by the file's suffix (`RUNTIMES`).

Each runtime's opener returns a session that answers ONNX Runtime's two calls, `run(output names or None, {input
name: batch})` and `get_inputs()`, and the deepcat metadata stored in the file, so one classifier
(`deepcat.inference.exported`) answers for every format. Runtimes other than ONNX Runtime are optional extras;
without one, the error names the extra to install.

Devices: every runtime runs on the CPU; ONNX files also run on a CUDA GPU through ONNX Runtime's CUDA provider
(TensorRT's first, where its libraries are installed), which needs the `onnxruntime-gpu` package in place of
`onnxruntime`. `auto` is the GPU where ONNX Runtime has that provider and the machine has an NVIDIA device.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deepcat.errors import DeepcatError
from deepcat.inference.signal_stack import own_signal_stack
from deepcat.run_meta import ExportMeta

__all__ = [
    "DEVICES",
    "OUTPUTS",
    "RUNTIMES",
    "SPIN_US",
    "ExecuTorchSession",
    "LiteRtSession",
    "OpenVinoSession",
    "Port",
    "Runtime",
    "device_for",
    "need",
    "onnx_providers",
    "open_file",
    "resolve_device",
    "runtime_for",
]

DEVICES = ("auto", "cpu", "cuda")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")  # ONNX Runtime's, in order of preference
Opener = Callable[[Path, "int | None", str], tuple[Any, ExportMeta]]


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional toolchain, or say in one line which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise DeepcatError(f"{purpose} needs {module}, not installed here: pip install 'deepcat[{extra}]'") from error


def _no_metadata(path: Path) -> DeepcatError:
    return DeepcatError(f"{path} has no deepcat metadata; export a run with `deepcat export RUN`")


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` where ONNX Runtime has its CUDA provider and the machine an NVIDIA device, else `cpu`."""
    if device not in DEVICES:
        raise DeepcatError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    if device != "auto":
        return device
    import onnxruntime as ort

    gpu = "CUDAExecutionProvider" in ort.get_available_providers() and os.path.exists("/dev/nvidiactl")
    return "cuda" if gpu else "cpu"


def onnx_providers(device: str, cache: Path) -> list[Any]:
    """ONNX Runtime's providers for `device`: TensorRT (its engines cached in `cache`) where its libraries are
    installed, then CUDA, then the CPU for any operator they lack."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeepcatError(
            f"--device {device}: this ONNX Runtime has no CUDA provider ({', '.join(available)}): "
            "pip uninstall onnxruntime && pip install onnxruntime-gpu, or serve with --device cpu"
        )
    if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from their pip packages (nvidia-*), as torch would load them
        ort.preload_dlls()
    providers: list[Any] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" in available and importlib.util.find_spec("tensorrt") is not None:
        options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
        providers.insert(0, ("TensorrtExecutionProvider", options))
    return providers


# ONNX Runtime's pool threads spin after a run (by default about 40 ms, a core's worth of CPU between a server's
# requests); past this many microseconds they sleep. Long enough for a lone client's next request, which arrives
# about 3 ms after the last run (a waking thread made it slower at 1 ms); docs/design-notes.md has the trials.
SPIN_US = 5000


def open_onnx(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta]:
    """ONNX Runtime for .onnx and .ort files (metadata under the key `deepcat`), on the CPU or a CUDA GPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_US))
    providers = onnx_providers(device, Path.home() / ".cache" / "deepcat" / "tensorrt")
    session = ort.InferenceSession(str(path), options, providers=providers)
    if device != "cpu" and session.get_providers()[0] not in GPU_PROVIDERS:  # ONNX Runtime fell back, warning
        raise DeepcatError(
            f"--device {device}: ONNX Runtime could not start CUDA here (no NVIDIA GPU, or CUDA and cuDNN "
            "libraries it cannot load: see its warning above); serve with --device cpu"
        )
    props = session.get_modelmeta().custom_metadata_map
    if "deepcat" not in props:
        raise _no_metadata(path)
    return session, ExportMeta.from_json(props["deepcat"], where=str(path))


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


def open_openvino(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta]:
    """OpenVINO Runtime on the CPU, for IR files (.xml beside its .bin; metadata in the rt_info key `deepcat`).
    Float layers run in fp32: by default OpenVINO runs them in bf16 on CPUs that have it, so the same file would
    answer differently on an AVX-512 BF16 or AMX CPU than on an AVX2 one."""
    ov = need("openvino", "openvino", f"running {path.name}")
    core = ov.Core()
    model = core.read_model(str(path))
    if not model.has_rt_info(["deepcat"]):
        raise _no_metadata(path)
    meta = ExportMeta.from_json(model.get_rt_info(["deepcat"]).astype(str), where=str(path))
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    with own_signal_stack():  # compiling loads the CPU plugin, which swaps this thread's signal stack
        compiled = core.compile_model(model, "CPU", config)
    return OpenVinoSession(compiled), meta


def open_openvino_weights(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta]:
    """An OpenVINO IR named by its weights (`X.bin`): the graph `X.xml` beside it, which OpenVINO reads first."""
    from deepcat.run_folder import openvino_ir

    return open_openvino(openvino_ir(path), threads, device)


OUTPUTS = ["probabilities", "unknown_score", "logits"]  # the deployable graph's outputs, in order


class ExecuTorchSession:
    """An ExecuTorch program's `forward` behind ONNX Runtime's calls. One call at a time: ExecuTorch's methods are
    not thread-safe (two server workers executing at once crashed the process), and an app runs one anyway."""

    def __init__(self, program: Any, meta: ExportMeta):
        self.meta = meta
        self.method = program.load_method("forward")
        self.planned = tuple(self.method.metadata.input_tensor_meta(0).sizes())
        self._lock = threading.Lock()

    def get_inputs(self) -> list[Port]:
        return [Port(self.meta.input_name, ["batch", *self.planned[1:]])]

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


def open_executorch(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta]:
    """ExecuTorch's runtime (its Python bindings, XNNPACK on the CPU) for .pte programs; metadata from the
    program's constant method `deepcat`."""
    runtime = need("executorch.runtime", "executorch", f"running {path.name}").Runtime.get()
    if threads:  # XNNPACK's one thread pool, shared by every program in the process
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    program = runtime.load_program(str(path))
    if "deepcat" not in program.method_names:
        raise _no_metadata(path)
    [text] = program.load_method("deepcat").execute([])
    meta = ExportMeta.from_json(text, where=str(path))
    return ExecuTorchSession(program, meta), meta


class LiteRtSession:
    """A LiteRT interpreter behind ONNX Runtime's calls, one input at a time (the file's static batch of 1, as an
    app runs it) and one call at a time (an interpreter is not thread-safe)."""

    def __init__(self, interpreter: Any, meta: ExportMeta):
        self.meta, self.interpreter = meta, interpreter
        interpreter.allocate_tensors()
        [self.input] = interpreter.get_input_details()
        # the outputs in the graph's order (named output_0, output_1, ...): probabilities, score, logits
        self.outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])
        self._lock = threading.Lock()

    def get_inputs(self) -> list[Port]:
        return [Port(self.meta.input_name, ["batch", *map(int, self.input["shape"][1:])])]

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        import numpy as np

        [batch] = feeds.values()
        rows = []
        with self._lock:
            for one in batch:
                self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(one[None], np.float32))
                self.interpreter.invoke()
                rows.append([self.interpreter.get_tensor(out["index"]).copy() for out in self.outputs])
        outputs = [np.concatenate(parts) for parts in zip(*rows)]
        return [outputs[OUTPUTS.index(name)] for name in (names or OUTPUTS)]


def litert_metadata(path: Path) -> ExportMeta | None:
    """The `deepcat` metadata entry of a LiteRT flatbuffer (None: it has none)."""
    schema = need("ai_edge_litert.schema_py_generated", "litert", f"reading {path.name}")
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"deepcat":
            return ExportMeta.from_json(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes(), where=str(path))
    return None


def open_litert(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta]:
    """LiteRT's interpreter (ai-edge-litert, XNNPACK on the CPU) for .tflite files; metadata from the flatbuffer's
    metadata entry `deepcat`."""
    interpreter = need("ai_edge_litert.interpreter", "litert", f"running {path.name}")
    meta = litert_metadata(path)
    if meta is None:
        raise _no_metadata(path)
    return LiteRtSession(interpreter.Interpreter(model_path=str(path), num_threads=threads or None), meta), meta


@dataclass(frozen=True)
class Runtime:
    """The runtime deepcat runs a kind of exported file with, and where it may run it."""

    name: str
    open: Opener
    devices: tuple[str, ...]  # besides `auto`
    serves: bool  # `deepcat serve` may run it in its worker threads


RUNTIMES: dict[str, Runtime] = {
    ".onnx": Runtime("ONNX Runtime", open_onnx, ("cpu", "cuda"), serves=True),
    ".ort": Runtime("ONNX Runtime", open_onnx, ("cpu", "cuda"), serves=True),
    ".xml": Runtime("OpenVINO Runtime", open_openvino, ("cpu",), serves=True),
    ".bin": Runtime("OpenVINO Runtime", open_openvino_weights, ("cpu",), serves=True),  # the IR's weights
    # ExecuTorch's Python runtime crashed the process (segfault) in the server's worker threads, even one call at
    # a time; its files are for apps, and `deepcat predict` checks them in the main thread.
    ".pte": Runtime("ExecuTorch", open_executorch, ("cpu",), serves=False),
    ".tflite": Runtime("LiteRT", open_litert, ("cpu",), serves=False),  # for apps, one input at a time
}


def runtime_for(path: Path) -> Runtime:
    """The runtime for an exported file, by its suffix."""
    runtime = RUNTIMES.get(path.suffix)
    if runtime is None:
        raise DeepcatError(f"{path}: deepcat runs {', '.join(RUNTIMES)} files; export a run with `deepcat export RUN`")
    return runtime


def device_for(path: Path, device: str) -> str:
    """`device` (cpu, cuda or auto) made definite for an exported file: `auto` is the CPU for a runtime that runs
    nowhere else."""
    return resolve_device(device) if device != "auto" or "cuda" in runtime_for(path).devices else "cpu"


def open_file(path: Path, threads: int | None, device: str = "cpu") -> tuple[Any, ExportMeta, str]:
    """The session, metadata and device (cpu or cuda) for an exported file, by its suffix, on `device`."""
    runtime, device = runtime_for(path), device_for(path, device)
    if device not in runtime.devices:
        raise DeepcatError(f"{path.name}: {runtime.name} runs here on {', '.join(runtime.devices)}, not {device}")
    if not path.is_file():
        raise DeepcatError(f"{path} does not exist; export a run with `deepcat export RUN`")
    return (*runtime.open(path, threads, device), device)
