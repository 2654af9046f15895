"""The model of clipper/noop-container: the original's no-op container answers "1.0" for every input.

Pickled by reference at image build time; the runtime finds this module in /model/modules.
"""

PREDICTION = "1.0"


def predict(inputs):
    return [PREDICTION] * len(inputs)
