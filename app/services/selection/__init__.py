"""Selection of what raters label: the learning curve of a reward model against the human labels
it was given (learning_curve.py), measured through the project's own claim order."""
