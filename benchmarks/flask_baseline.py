"""The way most tutorials deploy a model, as the serving benchmark's baseline: a Flask app that decodes the
upload and runs the PyTorch model once per request (the same pretrained EfficientNet-Lite0 cat / dog /
neither classifier that `deepcat serve` serves as ONNX).

    python benchmarks/flask_baseline.py PORT
"""

from __future__ import annotations

import io
import sys

import torch
from flask import Flask, jsonify, request
from PIL import Image

from deepcat.inference.torch_model import pretrained_cat_dog

torch.set_num_threads(2)
clf = pretrained_cat_dog()
app = Flask(__name__)


@app.post("/v1/predict")
def predict():
    image = Image.open(io.BytesIO(request.get_data())).convert("RGB")
    with torch.no_grad():
        probs = clf.probabilities(clf.transform(image)[None])[0]
    best = int(probs.argmax())
    return jsonify({"label": clf.classes[best], "probability": float(probs[best])})


@app.get("/ready")
def ready():
    return jsonify({"ready": True})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
