"""Export a trained run: ONNX (fp32, int8), ONNX Runtime Mobile (.ort), TorchScript.

Every export puts preprocessing into the model (normalisation and softmax in the graph,
sizes and classes in the metadata) and checks itself against PyTorch before it returns.
The public function is `deepcat.export`; formats are registered in `formats.py`.
"""

__all__ = []
