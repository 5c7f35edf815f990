"""Flask as people deploy it, for the serving benchmark: gunicorn's threaded workers (`-k gthread`; Flask's own
Werkzeug server is for development), decoding the upload and running the model once per request.

- `create("onnx", MODEL.onnx)`: ONNX Runtime on the same file `deepcat serve` runs, decoded by deepcat's own code;
- `create("torch")`: the pretrained EfficientNet-Lite0 cat / dog / neither classifier in PyTorch, as most
  tutorials deploy a model (`deepcat serve` serves it as ONNX).

Inference uses one thread per core the process may run on (ONNX Runtime's intra-op threads, torch's threads).

    gunicorn -k gthread --workers 1 --threads 8 -b 127.0.0.1:PORT 'flask_baseline:create("onnx", "MODEL.onnx")'
"""

from __future__ import annotations

import io
import json
import os

from flask import Flask, jsonify, request


def create(runtime: str, model: str | None = None) -> Flask:
    cores = len(os.sched_getaffinity(0))
    if runtime == "onnx":
        import numpy as np
        import onnxruntime as ort

        from deepcat.inputs.image import Preprocess, decode_bytes, pixels

        options = ort.SessionOptions()
        options.intra_op_num_threads = cores
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map["deepcat"])
        classes, name, pre = meta["classes"], session.get_inputs()[0].name, Preprocess.from_dict(meta)

        def classify(body: bytes) -> tuple[str, float]:
            batch = pixels(decode_bytes(body, "upload", 40_000_000, pre), pre)[None]
            probabilities = session.run(None, {name: batch})[0][0]
            best = int(np.argmax(probabilities))
            return classes[best], float(probabilities[best])

    else:
        import torch
        from PIL import Image

        from deepcat.inference.torch_model import pretrained_cat_dog

        torch.set_num_threads(cores)
        clf = pretrained_cat_dog()

        def classify(body: bytes) -> tuple[str, float]:
            image = Image.open(io.BytesIO(body)).convert("RGB")
            with torch.no_grad():
                probs = clf.probabilities(clf.transform(image)[None])[0]
            best = int(probs.argmax())
            return clf.classes[best], float(probs[best])

    app = Flask(__name__)

    @app.post("/v1/predict")
    def predict():  # type: ignore[no-untyped-def]
        label, probability = classify(request.get_data())
        return jsonify({"label": label, "probability": probability})

    @app.get("/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"ready": True})

    return app
