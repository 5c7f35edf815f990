import deepcat

run = deepcat.train("digits", epochs=3)
classifier = deepcat.load(run)

answer = classifier.predict("examples/digits/digit-3.png", coverage=0.9)
print(answer.label, f"{answer.probability:.2f}")  # a calibrated probability
print(answer.set)  # the classes that hold the true one 90% of the time, e.g. ['3']
print(answer.score, answer.threshold)  # below the threshold the answer would be `unknown`

for explanation in deepcat.explain(run, ["examples/digits/digit-3.png"]):  # Grad-CAM
    print(explanation.label)
