"""The hello-world model of the original Clipper quickstart: the sum of each input vector."""


def predict(inputs):
    return [str(sum(x)) for x in inputs]
