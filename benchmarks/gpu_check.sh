#!/usr/bin/env bash
# Every deepcat command once through CUDA on small data, then benchmarks/gpu.py: the one prepared script for a
# lent GPU machine, whose python3 already has torch, timm, onnx and onnxruntime. What it lacks travels beside the
# checkout: .whl/ (the other dependencies as wheels for its Python) and .gpu/ (Debian's Fashion-MNIST IDX files).
# Each step runs even when one before it failed; the summary at the end names the failures. The wheels are the
# dependencies that machine's image lacks (fastapi and its pydantic, starlette and opentelemetry-api; uvicorn,
# httptools, python-multipart, imagehash, PyWavelets, cleanlab, termcolor, optuna, SQLAlchemy, alembic, Mako,
# colorlog, soundfile, cffi, pycparser, soxr), fetched here with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_28_x86_64 ... -d .whl NAME==VERSION`.
#
# Serving on the GPU needs onnxruntime-gpu (its image has the CPU build). Its wheel (256 MB, CUDA 13) is over a
# call's carry, so it travels in parts, one call each while the machine stays warm, each moved to /tmp/ortparts:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#         -d /tmp onnxruntime-gpu==1.31.1 && mkdir -p .ortgpu && split -b 50M /tmp/onnxruntime_gpu-*.whl .ortgpu/part.
#     echo /.ortgpu/ >> .git/info/exclude      # then per part: carry .ortgpu/part.aa, `mkdir -p /tmp/ortparts && mv .ortgpu/* /tmp/ortparts/`
#
#     OUT=/tmp/gpu-out bash benchmarks/gpu_check.sh      # ~8 min on one H100/H200
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if [ -d .gpu ] && [ ! -e /usr/share/datasets/fashion-mnist ]; then
    mkdir -p /usr/share/datasets && ln -s "$PWD/.gpu" /usr/share/datasets/fashion-mnist
fi
W=$(mktemp -d)
failed=()
step() {
    local name=$1 started=$SECONDS
    shift
    echo "=== $name: $*"
    if "$@"; then echo "--- $name: ok in $((SECONDS - started)) s"; else echo "--- $name: FAILED"; failed+=("$name"); fi
}
deepcat() { python3 -m deepcat "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, timm, onnxruntime; print('torch', torch.__version__, 'timm', timm.__version__,
'onnxruntime', onnxruntime.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name())"

# A stand-in for ImageNet weights (nothing can be downloaded there): the --weights path is what is tested.
python3 -c "import timm, torch; torch.save(timm.create_model('resnet18').state_dict(), '$W/resnet18.pth')"
python3 -c "from sklearn.datasets import load_digits; from PIL import Image; d = load_digits()
[Image.fromarray((d.images[i] * 15).astype('uint8')).save(f'$W/digit{d.target[i]}.png') for i in range(3)]"

step train-smallcnn deepcat train digits --epochs 3 --output "$W" --name small
step train-resnet18 python3 - "$W" <<'EOF'
import sys, time
import deepcat

class Where:
    """Proves the model trains on the GPU (and in which dtype) and times each epoch."""
    def __init__(self):
        self.t = time.perf_counter()
    def on_epoch_end(self, *, model, **_):
        p = next(model.parameters())
        print(f"  epoch on {p.device}, params {p.dtype}, {time.perf_counter() - self.t:.1f} s", flush=True)
        assert p.device.type == "cuda", "the model did not train on the GPU"
        self.t = time.perf_counter()

run = deepcat.train(data="digits", model="resnet18", weights=f"{sys.argv[1]}/resnet18.pth", epochs=4,
                    image_size=64, progressive=0.5, output=sys.argv[1], name="r18", callbacks=[Where()])
print(run)
EOF
R=$W/r18
step evaluate deepcat evaluate "$R"
step predict deepcat predict "$R" "$W"/digit*.png
step explain deepcat explain "$R" "$W/digit0.png" --output "$W/cam"
step lr-find deepcat lr-find digits --steps 30 --plot "$W/lr.png"
step export-onnx deepcat export "$R"
step export-int8 deepcat export "$R" --format onnx-int8
step serve bash -c "
    python3 -m deepcat serve '$R' --port 8765 & pid=\$!
    for i in \$(seq 60); do curl -sf http://127.0.0.1:8765/health >/dev/null && break; sleep 1; done
    curl -sf -F file=@$W/digit0.png http://127.0.0.1:8765/v1/predict; ok=\$?; echo
    kill \$pid; exit \$ok"
step torchrun python3 -m torch.distributed.run --nproc-per-node "$(nvidia-smi -L | wc -l | awk '{print ($1 >= 2) ? 2 : 1}')" \
    -m deepcat train digits --epochs 2 --output "$W" --name ddp
step tune deepcat tune digits --trials 3 --epochs 2 --output "$W/tune"
step gpu-benchmark python3 benchmarks/gpu.py --out "$OUT/gpu.json"
# `deepcat serve --device cuda` against the same server on the CPU (1, 32 and 128 clients: requests/s and p99)
serve_gpu() {
    if ! python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
        if ! ls /tmp/ortparts/part.* >/dev/null 2>&1; then
            echo "onnxruntime-gpu is not installed and its wheel's parts are not in /tmp/ortparts (see the header)"
            return 1
        fi
        cat /tmp/ortparts/part.* > /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
        python3 -m pip install -q --no-index --no-deps --target /tmp/ortgpu /tmp/onnxruntime_gpu-*.whl || return 1
    fi
    PYTHONPATH=/tmp/ortgpu:$PYTHONPATH python3 benchmarks/serve.py --servers deepcat-cuda,deepcat-fp32 \
        --levels 1,32,128 --rounds 2 --seconds 4 --open-trials 0 --out "$OUT/serve_gpu.json"
}
step serve-gpu serve_gpu

echo "failed steps: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
