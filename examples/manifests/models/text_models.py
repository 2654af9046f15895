"""String models for the multi example (strings arrive as bytes or str)."""


def length(inputs):
    return [str(len(x)) for x in inputs]
