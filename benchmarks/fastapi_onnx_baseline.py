"""The serving benchmark's middle contestant: FastAPI running the same ONNX file as `deepcat serve`, once per
request, as the FastAPI and ONNX Runtime tutorials write it (decoding and inference in FastAPI's thread pool,
so the event loop stays free; the same decoding code as deepcat). Against `deepcat serve` it isolates what
micro-batching and load shedding add; against Flask + PyTorch, what ONNX Runtime adds.

    python benchmarks/fastapi_onnx_baseline.py MODEL.onnx PORT
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from deepcat.inputs.image import Preprocess, decode_bytes, pixels

options = ort.SessionOptions()
options.intra_op_num_threads = len(os.sched_getaffinity(0))  # one per core, as every other contestant
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["deepcat"])
pre = Preprocess.from_dict(meta)
app = FastAPI()


def classify(body: bytes) -> dict:
    batch = pixels(decode_bytes(body, "upload", 40_000_000, pre), pre)[None]
    probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    best = int(np.argmax(probabilities))
    return {"label": meta["classes"][best], "probability": float(probabilities[best])}


@app.post("/v1/predict")
async def predict(request: Request) -> dict:
    return await run_in_threadpool(classify, await request.body())


@app.get("/ready")
async def ready() -> dict:
    return {"ready": True}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
