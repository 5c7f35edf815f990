"""A deepcat model inside an existing Flask app: `POST /v1/predict` answers the same JSON as `deepcat serve`,
from the exported ONNX model alone (ONNX Runtime; torch is not imported).

    pip install flask deepcat
    deepcat export runs/pets                                    # runs/pets/export/model.onnx
    flask --app 'examples.flask_app:create_app("runs/pets/export/model.onnx")' run
    curl -F file=@photo.jpg http://127.0.0.1:5000/v1/predict
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from deepcat.inference.exported import load_exported
from deepcat.inputs import BadInput


def create_app(model_path: str) -> Flask:
    app = Flask(__name__)
    model = load_exported(model_path)  # once, at start-up

    @app.post("/v1/predict")
    def predict():
        upload = request.files.get("file")
        data = upload.read() if upload else request.get_data()
        try:
            return jsonify(model.answer(data, name=upload.filename if upload else "body",
                                        top_k=request.args.get("top_k", 5, type=int)))
        except BadInput as e:  # not an image, truncated, too many pixels: the client's error
            return jsonify(error=e.reason, detail=str(e)), e.status

    return app
