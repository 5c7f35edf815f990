import deepcat

classifier = deepcat.load()  # no run: ImageNet EfficientNet-Lite0, answering cat, dog or neither
prediction = classifier.predict("examples/chelsea.jpg")
print(prediction.label, f"{prediction.probability:.2f}")  # cat 0.9...
