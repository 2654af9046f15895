"""MLServer side of the comparison: the sum model as an MLServer runtime (runs in the MLServer venv).

With adaptive batching MLServer concatenates the queued requests' ``input`` tensors along the
first axis, so ``predict`` sees shape [batch, 4] and answers one sum per row.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class SumModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
        sums = x.sum(axis=1, dtype=np.float64).reshape(-1, 1)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name="output", payload=sums)],
        )
