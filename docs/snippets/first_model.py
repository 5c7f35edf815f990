import deepcat

run = deepcat.train("digits", epochs=3)  # the run folder: runs/smallcnn-digits-...
evaluation = deepcat.evaluate(run)
print(f"test accuracy {evaluation.accuracy:.1%}")

for prediction in deepcat.predict(run, ["examples/digits"]):  # files, folders or globs
    print(prediction.source, prediction.label, f"{prediction.probability:.2f}")

onnx = deepcat.export(run, format="onnx").path  # RUN/export/model.onnx, checked against PyTorch
exported = deepcat.load(onnx)  # ONNX Runtime alone: torch is not imported
print(exported.predict("examples/digits/digit-7.png").label)  # 7
